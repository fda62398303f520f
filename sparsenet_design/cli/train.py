"""``sdesign train`` (the compact model, from scratch or from weights) and ``sdesign evaluate``."""
from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import click
import torch
from torch import nn

from ..training.checkpoint import load_weights, save_weights
from ..training.distributed import on_main
from ..modelfile import ModelFile, load_model_file
from ..report.summary import ModelSummary, count_params, summarize
from .app import common_training_options, err, main, model_settings_option, out
from .common import compact_model, metrics_table, open_run, pick, pick_device, relaunch, training_config


def with_learning_rate(make_optimizer, lr: float):
    """The model file's optimizer (and schedule) at learning rate ``lr``: passed as
    ``lr=`` when ``make_optimizer`` takes it, else set on every param group (and as the
    schedule's base rate); Adam when the file has none."""
    import inspect

    if make_optimizer is None:
        return lambda params: torch.optim.Adam(params, lr=lr)
    try:
        takes_lr = "lr" in inspect.signature(make_optimizer).parameters
    except (TypeError, ValueError):
        takes_lr = False
    if takes_lr:
        return lambda params: make_optimizer(params, lr=lr)

    def made(params):
        result = make_optimizer(params)
        optimizer, scheduler = result if isinstance(result, tuple) else (result, None)
        for group in optimizer.param_groups:
            group["lr"] = lr
            if "initial_lr" in group:
                group["initial_lr"] = lr
        if scheduler is not None and hasattr(scheduler, "base_lrs"):
            scheduler.base_lrs = [lr] * len(scheduler.base_lrs)
        return result

    return made


def run_train(mf: ModelFile, out_dir: Path, *, specs: Sequence[Path] = (), epochs=None, init=None, lr=None,
              seed=None, device=None, amp=False, accumulation=None, resume=False, checkpoint_every=None,
              description="train", command="train") -> tuple[nn.Module, list[dict]]:
    from ..api import train

    args = {"specs": [str(s) for s in specs], "epochs": pick(epochs, mf, "train_epochs", 10),
            "init": str(init) if init else None, "lr": lr, "seed": pick(seed, mf, "seed", 0),
            "amp": amp, "accumulation": pick(accumulation, mf, "accumulation", 1),
            "checkpoint_every": checkpoint_every}
    device = pick_device(device)
    run, args = open_run(out_dir, command, args, mf, resume)
    model = compact_model(mf, args["specs"], args["seed"])
    if args["init"]:
        load_weights(model, args["init"])

    def copy_specs():
        for i, spec in enumerate(args["specs"], 1):
            shutil.copyfile(spec, run.root / ("spec.json" if len(args["specs"]) == 1 else f"spec-{i}.json"))

    on_main(copy_specs)
    make_optimizer = mf.make_optimizer if args["lr"] is None else with_learning_rate(mf.make_optimizer, args["lr"])
    err.print(f"[bold]{description}[/] {mf.path.name}{' (compact)' if args['specs'] else ''}: "
              f"{count_params(model):,} params, {args['epochs']} epochs → {run.root}")
    result = train(model, mf.train_data(), mf.loss, epochs=args["epochs"], make_optimizer=make_optimizer,
                   evaluate=mf.evaluate if mf.has_evaluate else None, description=description,
                   training=training_config(args, run.root, resume, device))
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
@click.option("--lr", type=float, default=None, help="Learning rate for the model file's optimizer and schedule (default: theirs; Adam 1e-3 without one).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder (default: SPEC's folder/train, or runs/train).")
@common_training_options
@model_settings_option
def train_cmd(model_file, specs, out_dir, settings, nproc=None, **kwargs):
    """Train MODEL_FILE's model, compact if --spec is given (from scratch by default, as the paper)."""
    relaunch(nproc)
    mf = load_model_file(model_file, settings)
    if out_dir is None:
        out_dir = Path(specs[-1]).parent / "train" if specs else Path("runs/train")
    run_train(mf, out_dir, specs=specs, **kwargs)


def run_evaluate(mf: ModelFile, specs: Sequence[Path] = (), weights: Path | None = None,
                 latency: bool = True, device=None) -> ModelSummary:
    model = compact_model(mf, specs, 0)
    if weights is not None:
        load_weights(model, weights)
    else:
        err.print("[yellow]no --weights: evaluating the model's initial weights")
    inputs = mf.example_inputs()
    metrics = mf.evaluate(model.to(pick_device(device))) if mf.has_evaluate else {}
    return summarize(model.cpu(), inputs, latency=latency, metrics=metrics)


@main.command(name="evaluate")
@click.argument("model_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--spec", "specs", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Design spec(s) the weights belong to.")
@click.option("--weights", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Weights (.safetensors).")
@click.option("--latency/--no-latency", default=True, help="Measure CPU latency.")
@click.option("--json", "as_json", is_flag=True, help="Print the numbers as JSON.")
@click.option("--device", default=None, help="Device for evaluate() (default: cuda if available).")
@model_settings_option
def evaluate_cmd(model_file, specs, weights, latency, as_json, device, settings):
    """Parameters, size, MACs, CPU latency and the model file's metrics."""
    mf = load_model_file(model_file, settings)
    summary = run_evaluate(mf, specs, weights, latency, device)
    if as_json:
        click.echo(json.dumps(summary.as_dict(), indent=2))
    else:
        out.print(metrics_table(f"{mf.path.name}{' (compact)' if specs else ''}", summary))
