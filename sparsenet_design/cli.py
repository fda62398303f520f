"""``sdesign``: the command line.

    sdesign prune model.py --lr 0.1 --lam 1e-5 --epochs 10 --out RUN/
    sdesign report RUN/
    sdesign reconstruct RUN/ --strategy min --out DESIGN/
    sdesign train model.py --spec DESIGN/spec.json --epochs 20 --out TRAINED/
    sdesign evaluate model.py --spec DESIGN/spec.json --weights TRAINED/weights.safetensors
    sdesign design model.py --out RUN/          # all of the above in one go
    sdesign prune model.py --nproc 4 ...        # on 4 processes (torchrun; docs/distributed.md)

Every failure the toolkit anticipates is an ``SdesignError``: printed as one
paragraph, no traceback, exit code 1 (usage errors: 2).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
import torch
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from torch import nn

from .training import distributed
from .training.checkpoint import atomic_write_json, load_checkpoint, load_weights, save_weights
from .training.distributed import on_main
from .design.density import density_report
from .errors import SdesignError
from .modelfile import ModelFile, load_model_file
from .training.runs import RunFolder, prepare_run, read_jsonl
from .report.summary import ModelSummary, comparison_table, count_params, summarize

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

STRATEGIES = ("min", "max", "mean")


# ---- shared helpers -------------------------------------------------------------

def _pick(value: Any, mf: ModelFile, name: str, fallback: Any) -> Any:
    """CLI value, else the model file's DEFAULTS, else the built-in default."""
    return value if value is not None else mf.default(name, fallback)


def _seeded_model(mf: ModelFile, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return mf.build_model()


def _apply_specs(model: nn.Module, spec_paths: Sequence[str | Path]) -> nn.Module:
    if not spec_paths:
        return model
    from .rebuild.build import apply_spec
    from .design.spec import DesignSpec

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


def _compact_model(mf: ModelFile, specs: Sequence[str | Path], seed: int) -> nn.Module:
    return _apply_specs(_seeded_model(mf, seed), specs)


def _check_runs(model: nn.Module, mf: ModelFile, reference: nn.Module | None = None) -> None:
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


def _check_traceable(model: nn.Module, mf: ModelFile) -> None:
    """Trace the model on the example inputs before any training: inputs that do not
    fit, or a model no tracer handles, fail now instead of after the epochs."""
    from .api import check_traceable

    with err.status("tracing the model on the example inputs"):
        check_traceable(model, mf.example_inputs(), mf.leaf_modules)


def _device(device: str | None) -> torch.device:
    """The device of this process (``cuda:LOCAL_RANK`` under torchrun, which
    also starts the process group here)."""
    try:
        torch.device(device) if device else None
    except RuntimeError as exc:
        raise click.BadParameter(str(exc), param_hint="--device") from exc
    return distributed.setup(device)


#: The arguments this invocation of ``sdesign`` got (for ``--nproc`` to re-launch them).
_INVOCATION: dict[str, list[str]] = {"args": []}


def _relaunch(nproc: int | None) -> None:
    """With ``--nproc N`` (N > 1) outside torchrun, run this same command as N
    processes through ``torch.distributed.run --standalone`` and exit with its code."""
    if not nproc or nproc < 2 or distributed.launched_by_torchrun():
        return
    command = distributed.torchrun_command(nproc, _without_nproc(_INVOCATION["args"]))
    err.print(f"[dim]starting {nproc} processes: {' '.join(command[1:])}", highlight=False)
    try:
        code = subprocess.run(command).returncode
    except KeyboardInterrupt:
        code = 130
    click.get_current_context().exit(code)


def _without_nproc(args: Sequence[str]) -> list[str]:
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


def _open_run(out_dir: Path, command: str, args: dict, mf: ModelFile, resume: bool) -> tuple[RunFolder, dict]:
    """Create or reopen the run folder (rank 0 writes config.json) and return the
    arguments the run goes by (on --resume, the recorded ones)."""
    def open_it():
        run = prepare_run(out_dir, command, args, mf, resume=resume)
        return run, ({**args, **run.config()["args"]} if resume else args)

    return on_main(open_it)


def _metrics_table(title: str, summary: ModelSummary) -> Table:
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


def _widths_text(entry: dict | None) -> str:
    if not entry:
        return "="
    return "×".join(str(v) for v in entry.get("widths", {}).values())


def _run_model_file(run: RunFolder) -> ModelFile:
    if not run.config_path.is_file():
        raise SdesignError(
            f"{run.root} is not a run folder (it has no config.json); pass the --out folder of `sdesign prune`."
        )
    config = run.config()
    path = config.get("model_file", {}).get("path")
    if not path:
        raise SdesignError(f"{run.config_path} does not record a model file; is {run.root} a prune run?")
    return load_model_file(path)


def _sparse_weights_of(run: RunFolder) -> tuple[dict, str]:
    if run.sparse_weights.is_file():
        from .training.checkpoint import read_weights

        return read_weights(run.sparse_weights), "final"
    if run.checkpoint.is_file():
        state, train_state = load_checkpoint(run.checkpoint)
        return state, f"checkpoint after epoch {train_state.get('epoch')} (run not finished)"
    raise SdesignError(f"{run.root} has neither sparse.safetensors nor a checkpoint; run `sdesign prune` first.")


def _load_state(model: nn.Module, state: dict, source: str) -> None:
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise SdesignError(
            f"The weights in {source} do not fit the model built by the model file "
            f"({str(exc).splitlines()[0]}); did the model file change since the run?"
        ) from exc


# ---- the group ------------------------------------------------------------------

class SdesignGroup(click.Group):
    """Prints :class:`SdesignError` as a message, not a traceback (under torchrun:
    once, by rank 0, unless the error is another rank's own)."""

    def main(self, args=None, *rest, **kwargs):
        _INVOCATION["args"] = list(args) if args is not None else sys.argv[1:]
        return super().main(args, *rest, **kwargs)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except SdesignError as exc:
            if distributed.is_main_process():
                err.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True, soft_wrap=True)
            elif not getattr(exc, "from_rank0", False):
                Console(stderr=True, soft_wrap=True).print(
                    f"[bold red]error (rank {distributed.rank()}):[/] {exc}", highlight=False)
            ctx.exit(1)


@click.group(cls=SdesignGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="sparsenet-design")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or per-epoch lines.")
@click.pass_context
def main(ctx: click.Context, quiet: bool) -> None:
    """Turn sparsity into architecture: sparsify a model with OBProx-SG, read its
    per-layer density, rebuild a compact dense model by the √d rule."""
    ctx.obj = {"progress": not quiet}
    if not distributed.is_main_process():  # under torchrun only rank 0 talks
        out.quiet = err.quiet = True


def _progress() -> bool:
    ctx = click.get_current_context(silent=True)
    return bool(ctx and ctx.find_root().obj and ctx.find_root().obj.get("progress", True))


_nproc_option = click.option(
    "--nproc", type=click.IntRange(1), default=None,
    help="Run on N processes on this machine (one per GPU; gloo on CPU) via torchrun --standalone; "
         "the model file's batch is split across them. Multi-node: see docs/distributed.md.")


def _common_training_options(f):
    for decorator in reversed([
        click.option("--seed", type=int, default=None, help="Seed for init, data order and randomness (default 0)."),
        click.option("--device", default=None, help="torch device (default: cuda if available, else cpu)."),
        click.option("--amp", is_flag=True, help="Mixed precision (bf16 on CPU, fp16 + GradScaler on CUDA)."),
        click.option("--accumulation", type=click.IntRange(1), default=None, help="Gradient accumulation steps."),
        click.option("--resume", is_flag=True, help="Continue the interrupted run in --out exactly."),
        click.option("--checkpoint-every", "checkpoint_every", type=click.IntRange(1), default=None,
                     help="Also checkpoint every N optimizer steps (for long epochs); always at epoch ends."),
        _nproc_option,
    ]):
        f = decorator(f)
    return f


# ---- prune ----------------------------------------------------------------------

def run_prune(mf: ModelFile, out_dir: Path, *, lr=None, lam=None, epochs=None, n_p=None, momentum=None,
              init=None, seed=None, device=None, amp=False, accumulation=None, resume=False,
              every_n_steps=None, checkpoint_every=None, start_model: nn.Module | None = None, command="prune") -> nn.Module:
    from .api import default_n_p, sparsify

    args = {
        "lr": _pick(lr, mf, "lr", 0.1), "lam": _pick(lam, mf, "lam", 1e-5),
        "epochs": _pick(epochs, mf, "epochs", 10), "momentum": _pick(momentum, mf, "momentum", 0.0),
        "seed": _pick(seed, mf, "seed", 0), "accumulation": _pick(accumulation, mf, "accumulation", 1),
        "init": str(init) if init else None, "amp": amp, "every_n_steps": every_n_steps,
        "checkpoint_every": checkpoint_every,
    }
    args["n_p"] = _pick(n_p, mf, "n_p", default_n_p(args["epochs"]))
    device = _device(device)
    run, args = _open_run(out_dir, command, args, mf, resume)
    model = start_model if start_model is not None else _seeded_model(mf, args["seed"])
    if args["init"] and start_model is None:
        load_weights(model, args["init"])
    _check_traceable(model, mf)
    data = mf.train_data()
    err.print(f"[bold]sparsify[/] {mf.path.name}: lr {args['lr']:g}, λ {args['lam']:g}, "
              f"{args['epochs']} epochs ({args['n_p']} of P-steps) → {run.root}")
    sparsify(
        model, data, mf.loss, lr=args["lr"], lam=args["lam"], epochs=args["epochs"], n_p=args["n_p"],
        momentum=args["momentum"], evaluate=mf.evaluate if mf.has_evaluate else None, run_dir=run.root,
        resume=resume, seed=args["seed"], accumulation=args["accumulation"], amp=args["amp"],
        device=device, every_n_steps=args["every_n_steps"],
        checkpoint_every_steps=args.get("checkpoint_every"), progress=_progress(), console=err,
    )
    on_main(lambda: save_weights(model, run.sparse_weights, metadata={"model_file_sha256": mf.sha256}))
    report = density_report(model)
    err.print(f"overall density {report.overall:.4f} ({report.nnz:,} of {report.numel:,} weights); "
              f"sparse weights → {run.sparse_weights}")
    return model


@main.command()
@click.argument("model_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--lr", type=float, default=None, help="Learning rate (default: DEFAULTS['lr'] or 0.1).")
@click.option("--lam", type=float, default=None, help="l1 weight λ (default: DEFAULTS['lam'] or 1e-5).")
@click.option("--epochs", type=click.IntRange(1), default=None, help="Epochs (default: DEFAULTS or 10).")
@click.option("--n-p", "n_p", type=click.IntRange(0), default=None, help="Epochs of P-steps before O-steps (default: half).")
@click.option("--momentum", type=float, default=None, help="Momentum of the O-steps (default 0).")
@click.option("--init", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Start from these weights (.safetensors) instead of the model's initial ones.")
@click.option("--every-n-steps", type=click.IntRange(1), default=None, help="Also log density every N steps.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/prune"),
              show_default=True, help="Run folder.")
@_common_training_options
def prune(model_file, out_dir, nproc=None, **kwargs):
    """Sparsify MODEL_FILE with OBProx-SG, logging density and metrics per epoch."""
    _relaunch(nproc)
    mf = load_model_file(model_file)
    run_prune(mf, out_dir, **kwargs)


# ---- report ---------------------------------------------------------------------

def _proposals(model: nn.Module, mf: ModelFile) -> dict[str, Any]:
    from .rebuild.reconstruct import reconstruct

    found: dict[str, Any] = {}
    for strategy in ("min", "max"):
        compact, spec = reconstruct(model, mf.example_inputs(), strategy=strategy,
                                    pinned=mf.pinned, leaf_modules=mf.leaf_modules)
        found[strategy] = {"spec": spec, "params": count_params(compact)}
    return found


def _make_plots(run: RunFolder, report, mf: ModelFile) -> list[Path]:
    from .report import plots

    made: list[Path] = []

    def attempt(name, fn, *args):
        try:
            fn(*args, run.plots_dir / name)
            made.append(run.plots_dir / f"{name}.png")
        except Exception as exc:  # a plot is a nice-to-have; say why it is missing
            err.print(f"[yellow]plot {name} skipped: {exc}")

    label = run.root.name or str(run.root)
    if read_jsonl(run.density_log):
        attempt("density_curves", plots.plot_density_curves, {label: run.density_log})
    attempt("layer_density", plots.plot_layer_density, report)
    records = read_jsonl(run.metrics_log)
    metric = mf.headline(records[-1]) if records else None
    metric = metric if metric not in (None, "loss", "density") else None
    if metric is None and records:
        metric = next((k for k in records[-1] if k not in ("epoch", "step", "loss", "density")), None)
    if metric:
        points = [(r["density"], r[metric]) for r in records if "density" in r and metric in r]
        attempt("metric_vs_density", lambda pts, stem: plots.plot_metric_vs_density(pts, metric, stem),
                {label: points})
    return made


def _tracing_summary(spec) -> dict[str, Any]:
    """Which tracer made the graph the widths come from, and the spec's notes."""
    return {"tracer": spec.settings.get("tracer"), "notes": list(spec.notes)}


def describe_tracer(method: str | None) -> str:
    from .tracing.trace import describe_tracer as describe

    return describe(method)


def run_report(run_dir: Path, plots: bool = True) -> dict[str, Any]:
    run = RunFolder(run_dir)
    mf = _run_model_file(run)
    model = mf.build_model()
    state, which = _sparse_weights_of(run)
    _load_state(model, state, str(run.root))
    report = density_report(model)
    try:
        with err.status("tracing the model and proposing widths (-min, -max)"):
            proposals = _proposals(model, mf)
    except SdesignError as exc:
        err.print(f"[yellow]proposed widths unavailable: {exc}")
        proposals = {}
    table = Table(title=f"{run.root} — per-layer density ({which})")
    for col, justify in (("layer", "left"), ("shape", "left"), ("params", "right"), ("nnz", "right"),
                         ("density", "right"), ("in×out -min", "right"), ("in×out -max", "right")):
        table.add_column(col, justify=justify)
    layers = []
    for layer in report.layers:
        row = {
            "name": layer.name, "shape": list(layer.shape), "params": layer.numel, "nnz": layer.nnz,
            "density": layer.density,
            "widths_min": (proposals["min"]["spec"].modules.get(layer.name) or {}).get("widths") if proposals else None,
            "widths_max": (proposals["max"]["spec"].modules.get(layer.name) or {}).get("widths") if proposals else None,
        }
        layers.append(row)
        table.add_row(
            layer.name, "×".join(map(str, layer.shape)), f"{layer.numel:,}", f"{layer.nnz:,}", f"{layer.density:.4f}",
            _widths_text(proposals["min"]["spec"].modules.get(layer.name)) if proposals else "–",
            _widths_text(proposals["max"]["spec"].modules.get(layer.name)) if proposals else "–",
        )
    total_params = count_params(model)
    totals = {
        "prunable_params": report.numel, "nnz": report.nnz, "overall_density": report.overall,
        "model_params": total_params,
        "compact_params_min": proposals["min"]["params"] if proposals else None,
        "compact_params_max": proposals["max"]["params"] if proposals else None,
    }
    table.add_section()
    table.add_row("total", "", f"{report.numel:,}", f"{report.nnz:,}", f"{report.overall:.4f}",
                  f"{totals['compact_params_min']:,} params" if proposals else "–",
                  f"{totals['compact_params_max']:,} params" if proposals else "–")
    out.print(table)
    out.print(f"model parameters: {total_params:,} (all, incl. biases and norms)")
    tracing = _tracing_summary(proposals["min"]["spec"]) if proposals else {"tracer": None, "notes": []}
    if proposals:
        out.print(f"graph: {describe_tracer(tracing['tracer'])}")
        for note in tracing["notes"]:
            out.print(f"[dim]note: {escape(note)}")
    made = _make_plots(run, report, mf) if plots else []
    for path in made:
        out.print(f"plot → {path}")
    result = {"weights": which, "layers": layers, "totals": totals, "plots": [str(p) for p in made], **tracing}
    atomic_write_json(run.root / "report.json", result)
    return result


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--plots/--no-plots", default=True, help="Write density plots under RUN/plots.")
@click.option("--html", is_flag=True, help="Also write RUN/report.html: one self-contained page with the plots.")
@click.option("--design", "design_dir", type=click.Path(file_okay=False, exists=True, path_type=Path),
              default=None, help="With --html: a reconstruct folder whose before/after widths to show.")
def report(run_dir, plots, html, design_dir):
    """Per-layer density of a prune run, proposed widths under -min and -max, and plots."""
    run_report(run_dir, plots=plots)
    if html:
        from .report.html import write_html_report

        path = write_html_report(run_dir, design_dir=design_dir)
        click.echo(f"html report → {path}")


@main.command()
@click.option("--all", "show_all", is_flag=True, help="List every target of each kind, not the first few.")
def kinds(show_all):
    """The layer and op kinds the core knows (plugins included): what each covers and provides."""
    from .kinds.listing import kind_rows
    from .plugins import load_plugins

    load_plugins()
    table = Table(title="layer and op kinds (later rows take precedence)")
    for column in ("kind", "", "covers", "provides"):
        table.add_column(column)
    for row in kind_rows():
        shown = row.targets if show_all or len(row.targets) <= 6 else (*row.targets[:6], f"… {len(row.targets)} in all")
        table.add_row(escape(row.name), row.kind, escape(", ".join(shown)), ", ".join(row.facts))
    out.print(table)


# ---- reconstruct ----------------------------------------------------------------

def run_reconstruct(run_dir: Path, out_dir: Path, strategy: str = "min", inherit: bool = False,
                    latency: bool = True, prior_specs: Sequence[Path] = ()) -> tuple[nn.Module, Any]:
    from .rebuild.reconstruct import reconstruct

    run = RunFolder(run_dir)
    mf = _run_model_file(run)
    design = prepare_run(out_dir, "reconstruct", {"run": str(run_dir), "strategy": strategy, "inherit": inherit,
                                                  "prior_specs": [str(p) for p in prior_specs]}, mf)
    model = _apply_specs(mf.build_model(), prior_specs)
    state, which = _sparse_weights_of(run)
    _load_state(model, state, str(run.root))
    inputs = mf.example_inputs()
    with err.status(f"rebuilding ({strategy}) from {which} weights"):
        compact, spec = reconstruct(model, inputs, strategy=strategy, inherit=inherit,
                                    pinned=mf.pinned, leaf_modules=mf.leaf_modules)
    _check_runs(compact, mf, reference=model)
    spec.save(design.spec)
    if inherit:
        save_weights(compact, design.weights)
    with err.status("measuring parameters, MACs and CPU latency"):
        before, after = summarize(model, inputs, latency=latency), summarize(compact, inputs, latency=latency)
    summary = {"strategy": strategy, "inherit": inherit, "source_run": str(run.root), "weights": which,
               "before": before.as_dict(), "after": after.as_dict(),
               "compression": before.params / after.params if after.params else None,
               "tracer": spec.settings.get("tracer"), "notes": list(getattr(spec, "notes", []) or [])}
    atomic_write_json(design.summary, summary)
    out.print(comparison_table(before, after, title=f"reconstruct -{strategy}", labels=("original", "compact")))
    out.print(f"graph: {describe_tracer(spec.settings.get('tracer'))}")
    for note in summary["notes"]:
        out.print(f"[dim]note: {escape(note)}")
    out.print(f"spec → {design.spec}; summary → {design.summary}")
    return compact, spec


@main.command(name="reconstruct")
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--strategy", type=click.Choice(STRATEGIES), default="min", show_default=True,
              help="How a channel group picks one width from its layers' √d proposals.")
@click.option("--inherit", is_flag=True, help="Keep the strongest channels' weights (by l1 norm) instead of fresh init.")
@click.option("--spec", "prior_specs", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Specs the pruned model was built with (for a run on a compact model).")
@click.option("--latency/--no-latency", default=True, help="Measure CPU latency before/after.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/design"),
              show_default=True, help="Design folder (spec.json, summary.json).")
def reconstruct_cmd(run_dir, strategy, inherit, prior_specs, latency, out_dir):
    """Rebuild a compact dense model from the densities of a prune run."""
    run_reconstruct(run_dir, out_dir, strategy, inherit, latency, prior_specs)


# ---- train ----------------------------------------------------------------------

def run_train(mf: ModelFile, out_dir: Path, *, specs: Sequence[Path] = (), epochs=None, init=None, lr=None,
              seed=None, device=None, amp=False, accumulation=None, resume=False, checkpoint_every=None,
              description="train", command="train") -> tuple[nn.Module, list[dict]]:
    from .api import train

    args = {"specs": [str(s) for s in specs], "epochs": _pick(epochs, mf, "train_epochs", 10),
            "init": str(init) if init else None, "lr": lr, "seed": _pick(seed, mf, "seed", 0),
            "amp": amp, "accumulation": _pick(accumulation, mf, "accumulation", 1),
            "checkpoint_every": checkpoint_every}
    device = _device(device)
    run, args = _open_run(out_dir, command, args, mf, resume)
    model = _compact_model(mf, args["specs"], args["seed"])
    if args["init"]:
        load_weights(model, args["init"])

    def copy_specs():
        for i, spec in enumerate(args["specs"], 1):
            shutil.copyfile(spec, run.root / ("spec.json" if len(args["specs"]) == 1 else f"spec-{i}.json"))

    on_main(copy_specs)
    if args["lr"] is not None:
        make_optimizer = lambda params: torch.optim.Adam(params, lr=args["lr"])  # noqa: E731
    else:
        make_optimizer = mf.make_optimizer
    err.print(f"[bold]{description}[/] {mf.path.name}{' (compact)' if args['specs'] else ''}: "
              f"{count_params(model):,} params, {args['epochs']} epochs → {run.root}")
    result = train(model, mf.train_data(), mf.loss, epochs=args["epochs"], make_optimizer=make_optimizer,
                   evaluate=mf.evaluate if mf.has_evaluate else None, run_dir=run.root, resume=resume,
                   seed=args["seed"], accumulation=args["accumulation"], amp=args["amp"], device=device,
                   checkpoint_every_steps=args.get("checkpoint_every"), progress=_progress(), console=err,
                   description=description)
    on_main(lambda: save_weights(model, run.weights, metadata={"model_file_sha256": mf.sha256,
                                                               "specs": json.dumps(args["specs"])}))
    err.print(f"weights → {run.weights}")
    return model, result.history


@main.command(name="train")
@click.argument("model_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--spec", "specs", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Design spec(s) to apply (in order) to build_model(); none trains the original model.")
@click.option("--epochs", type=click.IntRange(1), default=None, help="Epochs (default: DEFAULTS['train_epochs'] or 10).")
@click.option("--init", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Start from these weights instead of from scratch.")
@click.option("--lr", type=float, default=None, help="Adam learning rate (default: the model file's make_optimizer, else Adam 1e-3).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder (default: SPEC's folder/train, or runs/train).")
@_common_training_options
def train_cmd(model_file, specs, out_dir, nproc=None, **kwargs):
    """Train MODEL_FILE's model, compact if --spec is given (from scratch by default, as the paper)."""
    _relaunch(nproc)
    mf = load_model_file(model_file)
    if out_dir is None:
        out_dir = Path(specs[-1]).parent / "train" if specs else Path("runs/train")
    run_train(mf, out_dir, specs=specs, **kwargs)


# ---- evaluate -------------------------------------------------------------------

def run_evaluate(mf: ModelFile, specs: Sequence[Path] = (), weights: Path | None = None,
                 latency: bool = True, device=None) -> ModelSummary:
    model = _compact_model(mf, specs, 0)
    if weights is not None:
        load_weights(model, weights)
    else:
        err.print("[yellow]no --weights: evaluating the model's initial weights")
    inputs = mf.example_inputs()
    metrics = mf.evaluate(model.to(_device(device))) if mf.has_evaluate else {}
    return summarize(model.cpu(), inputs, latency=latency, metrics=metrics)


@main.command(name="evaluate")
@click.argument("model_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--spec", "specs", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Design spec(s) the weights belong to.")
@click.option("--weights", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Weights (.safetensors).")
@click.option("--latency/--no-latency", default=True, help="Measure CPU latency.")
@click.option("--json", "as_json", is_flag=True, help="Print the numbers as JSON.")
@click.option("--device", default=None, help="Device for evaluate() (default: cuda if available).")
def evaluate_cmd(model_file, specs, weights, latency, as_json, device):
    """Parameters, size, MACs, CPU latency and the model file's metrics."""
    mf = load_model_file(model_file)
    summary = run_evaluate(mf, specs, weights, latency, device)
    if as_json:
        click.echo(json.dumps(summary.as_dict(), indent=2))
    else:
        out.print(_metrics_table(f"{mf.path.name}{' (compact)' if specs else ''}", summary))


# ---- design ---------------------------------------------------------------------

@main.command()
@click.argument("model_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--lr", type=float, default=None, help="OBProx-SG learning rate (default: DEFAULTS or 0.1).")
@click.option("--lam", type=float, default=None, help="l1 weight λ (default: DEFAULTS or 1e-5).")
@click.option("--epochs", type=click.IntRange(1), default=None, help="Sparsification epochs per round.")
@click.option("--n-p", "n_p", type=click.IntRange(0), default=None, help="Epochs of P-steps (default: half).")
@click.option("--strategy", type=click.Choice(STRATEGIES), default=None, help="Width strategy (default: DEFAULTS or min).")
@click.option("--inherit", is_flag=True, help="Compact model inherits the strongest channels' weights.")
@click.option("--init", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Trained dense weights to start from (skips training the dense baseline).")
@click.option("--baseline-epochs", type=click.IntRange(0), default=None,
              help="Epochs to train the dense baseline when no --init (default: DEFAULTS['baseline_epochs'] or train_epochs).")
@click.option("--train-epochs", type=click.IntRange(1), default=None, help="Epochs to retrain the compact model.")
@click.option("--rounds", type=click.IntRange(1), default=1, show_default=True,
              help="Repeat sparsify → rebuild on the compact model K times.")
@click.option("--seed", type=int, default=None, help="Seed (default 0).")
@click.option("--device", default=None, help="torch device (default: cuda if available, else cpu).")
@click.option("--latency/--no-latency", default=True, help="Measure CPU latency before/after.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/design"),
              show_default=True, help="Run folder (dense/, prune/, design/, train/ inside).")
@_nproc_option
def design(model_file, lr, lam, epochs, n_p, strategy, inherit, init, baseline_epochs, train_epochs, rounds,
           seed, device, latency, out_dir, nproc=None):
    """The whole loop: dense baseline → sparsify → reconstruct → retrain → evaluate,
    with a before/after table."""
    _relaunch(nproc)
    started = time.perf_counter()
    _device(device)
    mf = load_model_file(model_file)
    seed = _pick(seed, mf, "seed", 0)
    strategy = _pick(strategy, mf, "strategy", "min")
    train_epochs = _pick(train_epochs, mf, "train_epochs", 10)
    baseline_epochs = _pick(baseline_epochs, mf, "baseline_epochs", train_epochs)
    _check_traceable(_seeded_model(mf, seed), mf)
    on_main(lambda: prepare_run(out_dir, "design", {
        "lr": lr, "lam": lam, "epochs": epochs, "n_p": n_p, "strategy": strategy, "inherit": inherit,
        "init": str(init) if init else None, "baseline_epochs": baseline_epochs, "train_epochs": train_epochs,
        "rounds": rounds, "seed": seed}, mf))
    # 1. the dense model ("before")
    if init is not None:
        dense = _seeded_model(mf, seed)
        load_weights(dense, init)
        dense_weights = Path(init)
    elif baseline_epochs > 0:
        dense, _ = run_train(mf, out_dir / "dense", epochs=baseline_epochs, seed=seed, device=device,
                             description="dense baseline", command="design/dense")
        dense_weights = out_dir / "dense" / "weights.safetensors"
    else:
        dense, dense_weights = _seeded_model(mf, seed), None
    dense = dense.cpu()
    inputs = mf.example_inputs()
    with err.status("evaluating and measuring the dense model"):
        before = on_main(lambda: summarize(dense, inputs, latency=latency,
                                           metrics=mf.evaluate(dense) if mf.has_evaluate else {}))

    # 2. rounds of sparsify → rebuild
    specs: list[Path] = []
    current = dense
    for r in range(1, rounds + 1):
        suffix = "" if r == 1 else f"-{r}"
        prune_dir, design_dir = out_dir / f"prune{suffix}", out_dir / f"design{suffix}"
        start = _compact_model(mf, specs, seed)
        start.load_state_dict(current.state_dict())
        run_prune(mf, prune_dir, lr=lr, lam=lam, epochs=epochs, n_p=n_p, seed=seed, device=device,
                  start_model=start, command="design/prune")
        def rebuild():  # rank 0 writes the spec; every rank then builds from it
            run_reconstruct(prune_dir, design_dir, strategy, inherit, latency=False, prior_specs=specs)

        on_main(rebuild)
        specs.append(design_dir / "spec.json")
        if r < rounds:
            current, _ = run_train(mf, out_dir / f"train-{r}", specs=specs, epochs=train_epochs, seed=seed,
                                   device=device, description=f"retrain (round {r})", command="design/train",
                                   init=design_dir / "weights.safetensors" if inherit else None)
            current = current.cpu()

    # 3. the compact model, retrained ("after")
    compact, _ = run_train(mf, out_dir / "train", specs=specs, epochs=train_epochs, seed=seed, device=device,
                           description="retrain compact", command="design/train",
                           init=out_dir / ("design" if rounds == 1 else f"design-{rounds}") / "weights.safetensors"
                           if inherit else None)
    compact = compact.cpu()
    _check_runs(compact, mf, reference=dense)
    with err.status("evaluating and measuring the compact model"):
        after = on_main(lambda: summarize(compact, inputs, latency=latency,
                                          metrics=mf.evaluate(compact) if mf.has_evaluate else {}))
    elapsed = time.perf_counter() - started
    headline = mf.headline(before.metrics)
    summary = {
        "before": before.as_dict(), "after": after.as_dict(),
        "compression": before.params / after.params if after.params else None,
        "headline_metric": headline, "specs": [str(s) for s in specs],
        "dense_weights": str(dense_weights) if dense_weights else None,
        "compact_weights": str(out_dir / "train" / "weights.safetensors"),
        "seconds": elapsed,
    }
    on_main(lambda: atomic_write_json(out_dir / "summary.json", summary))
    out.print(comparison_table(before, after, title=f"{mf.path.name}: dense vs compact (-{strategy})"))
    if headline:
        out.print(f"{headline}: {before.metrics[headline]:.4g} → {after.metrics.get(headline, float('nan')):.4g} "
                  f"at {summary['compression']:.2f}× fewer parameters")
    out.print(f"done in {elapsed:.0f} s; compact model = {' + '.join(str(s) for s in specs)} + "
              f"{summary['compact_weights']}")


def _register_plugins() -> None:
    from .plugins import cli_commands

    for name, command in cli_commands():
        if name not in main.commands:
            main.add_command(command, name)


_register_plugins()

if __name__ == "__main__":
    main()
