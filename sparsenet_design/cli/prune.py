"""``sdesign prune``: sparsify with OBProx-SG."""
from __future__ import annotations

from pathlib import Path

import click
from torch import nn

from ..training.checkpoint import load_weights, save_weights
from ..training.distributed import on_main
from ..design.density import density_report
from ..modelfile import ModelFile, load_model_file
from .app import common_training_options, err, main, model_settings_option
from .common import check_traceable, open_run, pick, pick_device, relaunch, seeded_model, training_config


def run_prune(mf: ModelFile, out_dir: Path, *, lr=None, lam=None, epochs=None, n_p=None, momentum=None,
              init=None, seed=None, device=None, amp=False, accumulation=None, resume=False,
              every_n_steps=None, checkpoint_every=None, start_model: nn.Module | None = None, command="prune") -> nn.Module:
    from ..api import default_n_p, sparsify

    args = {
        "lr": pick(lr, mf, "lr", 0.1), "lam": pick(lam, mf, "lam", 1e-5),
        "epochs": pick(epochs, mf, "epochs", 10), "momentum": pick(momentum, mf, "momentum", 0.0),
        "seed": pick(seed, mf, "seed", 0), "accumulation": pick(accumulation, mf, "accumulation", 1),
        "init": str(init) if init else None, "amp": amp, "every_n_steps": every_n_steps,
        "checkpoint_every": checkpoint_every,
    }
    args["n_p"] = pick(n_p, mf, "n_p", default_n_p(args["epochs"]))
    device = pick_device(device)
    run, args = open_run(out_dir, command, args, mf, resume)
    model = start_model if start_model is not None else seeded_model(mf, args["seed"])
    if args["init"] and start_model is None:
        load_weights(model, args["init"])
    check_traceable(model, mf)
    data = mf.train_data()
    err.print(f"[bold]sparsify[/] {mf.path.name}: lr {args['lr']:g}, λ {args['lam']:g}, "
              f"{args['epochs']} epochs ({args['n_p']} of P-steps) → {run.root}")
    sparsify(
        model, data, mf.loss, lr=args["lr"], lam=args["lam"], epochs=args["epochs"], n_p=args["n_p"],
        momentum=args["momentum"], evaluate=mf.evaluate if mf.has_evaluate else None,
        every_n_steps=args["every_n_steps"], training=training_config(args, run.root, resume, device),
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
@common_training_options
@model_settings_option
def prune(model_file, out_dir, settings, nproc=None, **kwargs):
    """Sparsify MODEL_FILE with OBProx-SG, logging density and metrics per epoch."""
    relaunch(nproc)
    mf = load_model_file(model_file, settings)
    run_prune(mf, out_dir, **kwargs)
