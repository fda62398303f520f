"""Helpers the commands share: model files, specs and weights, devices, run folders, tables."""
from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
import torch
from rich.table import Table
from torch import nn

from ..training import distributed
from ..training.checkpoint import load_checkpoint
from ..training.distributed import on_main
from ..errors import SdesignError
from ..modelfile import ModelFile, load_model_file
from ..training.runs import RunFolder, prepare_run
from ..report.summary import ModelSummary
from .app import INVOCATION, err


def pick(value: Any, mf: ModelFile, name: str, fallback: Any) -> Any:
    """CLI value, else the model file's DEFAULTS, else the built-in default."""
    return value if value is not None else mf.default(name, fallback)


def seeded_model(mf: ModelFile, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return mf.build_model()


def apply_specs(model: nn.Module, spec_paths: Sequence[str | Path]) -> nn.Module:
    if not spec_paths:
        return model
    from ..rebuild.build import apply_spec
    from ..design.spec import DesignSpec

    for path in spec_paths:
        path = Path(path)
        if not path.is_file():
            raise SdesignError(f"Spec file {path} does not exist.")
        try:
            spec = DesignSpec.load(path)
        except SdesignError:
            raise
        except Exception as exc:
            raise SdesignError(f"Spec file {path} cannot be read ({type(exc).__name__}: {exc}).") from exc
        model = apply_spec(model, spec)
    return model


def compact_model(mf: ModelFile, specs: Sequence[str | Path], seed: int) -> nn.Module:
    return apply_specs(seeded_model(mf, seed), specs)


def check_runs(model: nn.Module, mf: ModelFile, reference: nn.Module | None = None) -> None:
    """Run one forward pass on the example inputs; with ``reference``, the output
    shapes must match (the compact model is a drop-in replacement)."""
    inputs = mf.example_inputs()

    def shapes(m):
        m.eval()
        with torch.no_grad():
            y = m(*inputs)
        flat = y if isinstance(y, (tuple, list)) else [y]
        return [tuple(t.shape) for t in flat if isinstance(t, torch.Tensor)]

    try:
        got = shapes(model)
    except Exception as exc:
        raise SdesignError(
            f"The compact model fails on the example inputs ({type(exc).__name__}: {exc}). "
            "This is a bug in the rebuild or a missing channel rule; please report it with your model file."
        ) from exc
    if reference is not None:
        want = shapes(reference)
        if got != want:
            raise SdesignError(f"The compact model's outputs have shapes {got}, the original's {want}.")


def check_traceable(model: nn.Module, mf: ModelFile) -> None:
    """Trace the model on the example inputs before any training: inputs that do not
    fit, or a model no tracer handles, fail now instead of after the epochs."""
    from ..api import check_traceable

    with err.status("tracing the model on the example inputs"):
        check_traceable(model, mf.example_inputs(), mf.leaf_modules)


def pick_device(device: str | None) -> torch.device:
    """The device of this process (``cuda:LOCAL_RANK`` under torchrun, which
    also starts the process group here)."""
    try:
        torch.device(device) if device else None
    except RuntimeError as exc:
        raise click.BadParameter(str(exc), param_hint="--device") from exc
    return distributed.setup(device)


def relaunch(nproc: int | None) -> None:
    """With ``--nproc N`` (N > 1) outside torchrun, run this same command as N
    processes through ``torch.distributed.run --standalone`` and exit with its code."""
    if not nproc or nproc < 2 or distributed.launched_by_torchrun():
        return
    command = distributed.torchrun_command(nproc, without_nproc(INVOCATION["args"]))
    err.print(f"[dim]starting {nproc} processes: {' '.join(command[1:])}", highlight=False)
    try:
        code = subprocess.run(command).returncode
    except KeyboardInterrupt:
        code = 130
    click.get_current_context().exit(code)


def without_nproc(args: Sequence[str]) -> list[str]:
    # torchrun's own parser would take "--nproc" for an ambiguous --nproc-per-node
    kept, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            kept.append(arg)
    return kept


def open_run(out_dir: Path, command: str, args: dict, mf: ModelFile, resume: bool) -> tuple[RunFolder, dict]:
    """Create or reopen the run folder (rank 0 writes config.json) and return the
    arguments the run goes by (on --resume, the recorded ones)."""
    if mf.settings:
        args = {**args, "settings": mf.settings}

    def open_it():
        run = prepare_run(out_dir, command, args, mf, resume=resume)
        recorded = run.config().get("args", {}) if resume else args
        if resume and recorded.get("settings", {}) != args.get("settings", {}):
            given = " ".join(f"--set {k}={v}" for k, v in recorded.get("settings", {}).items())
            raise SdesignError(
                f"--resume: {run.root} was started with other model-file settings; resuming with these "
                f"would mix two setups. Resume with the recorded ones ({given or 'no --set'})."
            )
        return run, ({**args, **recorded} if resume else args)

    return on_main(open_it)


def metrics_table(title: str, summary: ModelSummary) -> Table:
    table = Table(title=title)
    table.add_column("")
    table.add_column("value", justify="right")
    table.add_row("parameters", f"{summary.params:,}")
    table.add_row("size (MB)", f"{summary.size_mb:.3f}")
    table.add_row("MACs", "–" if summary.macs is None else f"{summary.macs:,}")
    if summary.latency_ms is not None:
        table.add_row("CPU latency (ms)", f"{summary.latency_ms:.3f}")
    for k, v in summary.metrics.items():
        table.add_row(k, f"{v:.4g}")
    return table


def widths_text(entry: dict | None) -> str:
    if not entry:
        return "="
    return "×".join(str(v) for v in entry.get("widths", {}).values())


def run_model_file(run: RunFolder) -> ModelFile:
    if not run.config_path.is_file():
        raise SdesignError(
            f"{run.root} is not a run folder (it has no config.json); pass the --out folder of `sdesign prune`."
        )
    config = run.config()
    path = config.get("model_file", {}).get("path")
    if not path:
        raise SdesignError(f"{run.config_path} does not record a model file; is {run.root} a prune run?")
    return load_model_file(path, config.get("args", {}).get("settings"))


def sparse_weights_of(run: RunFolder) -> tuple[dict, str]:
    if run.sparse_weights.is_file():
        from ..training.checkpoint import read_weights

        return read_weights(run.sparse_weights), "final"
    if run.checkpoint.is_file():
        state, train_state = load_checkpoint(run.checkpoint)
        return state, f"checkpoint after epoch {train_state.get('epoch')} (run not finished)"
    raise SdesignError(f"{run.root} has neither sparse.safetensors nor a checkpoint; run `sdesign prune` first.")


def load_state(model: nn.Module, state: dict, source: str) -> None:
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise SdesignError(
            f"The weights in {source} do not fit the model built by the model file "
            f"({str(exc).splitlines()[0]}); did the model file change since the run?"
        ) from exc


def training_config(args: dict, run_dir: Path, resume: bool, device):
    """The run's recorded options as one training config."""
    from ..training.config import TrainConfig
    from .app import err, progress

    return TrainConfig(seed=args["seed"], accumulation=args["accumulation"], amp=args["amp"], device=device,
                       checkpoint_every_steps=args.get("checkpoint_every"), progress=progress(), console=err,
                       run_dir=run_dir, resume=resume)
