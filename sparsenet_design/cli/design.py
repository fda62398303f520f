"""``sdesign reconstruct`` (a prune run → spec + compact model) and ``sdesign design`` (the whole loop)."""
from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from torch import nn

from ..files import write_json
from ..training.checkpoint import load_weights, save_weights
from ..training.distributed import on_main
from ..modelfile import load_model_file
from ..training.runs import RunFolder, prepare_run
from ..report.summary import comparison_table, summarize
from .app import STRATEGIES, err, main, model_settings_option, nproc_option, out
from .common import apply_specs, check_runs, check_traceable, compact_model, load_state, pick, pick_device, relaunch, run_model_file, seeded_model, sparse_weights_of
from .prune import run_prune
from .report import describe_tracer
from .train import run_train


def run_reconstruct(run_dir: Path, out_dir: Path, strategy: str = "min", inherit: bool = False,
                    latency: bool = True, prior_specs: Sequence[Path] = ()) -> tuple[nn.Module, Any]:
    from ..rebuild.reconstruct import reconstruct

    run = RunFolder(run_dir)
    mf = run_model_file(run)
    design = prepare_run(out_dir, "reconstruct", {"run": str(run_dir), "strategy": strategy, "inherit": inherit,
                                                  "prior_specs": [str(p) for p in prior_specs]}, mf)
    model = apply_specs(mf.build_model(), prior_specs)
    state, which = sparse_weights_of(run)
    load_state(model, state, str(run.root))
    inputs = mf.example_inputs()
    with err.status(f"rebuilding ({strategy}) from {which} weights"):
        compact, spec = reconstruct(model, inputs, strategy=strategy, inherit=inherit,
                                    pinned=mf.pinned, leaf_modules=mf.leaf_modules)
    check_runs(compact, mf, reference=model)
    spec.save(design.spec)
    if inherit:
        save_weights(compact, design.weights)
    with err.status("measuring parameters, MACs and CPU latency"):
        before, after = summarize(model, inputs, latency=latency), summarize(compact, inputs, latency=latency)
    summary = {"strategy": strategy, "inherit": inherit, "source_run": str(run.root), "weights": which,
               "before": before.as_dict(), "after": after.as_dict(),
               "compression": before.params / after.params if after.params else None,
               "tracer": spec.settings.get("tracer"), "notes": list(getattr(spec, "notes", []) or [])}
    write_json(design.summary, summary)
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
@nproc_option
@model_settings_option
def design(model_file, lr, lam, epochs, n_p, strategy, inherit, init, baseline_epochs, train_epochs, rounds,
           seed, device, latency, out_dir, settings, nproc=None):
    """The whole loop: dense baseline → sparsify → reconstruct → retrain → evaluate,
    with a before/after table."""
    relaunch(nproc)
    started = time.perf_counter()
    pick_device(device)
    mf = load_model_file(model_file, settings)
    seed = pick(seed, mf, "seed", 0)
    strategy = pick(strategy, mf, "strategy", "min")
    train_epochs = pick(train_epochs, mf, "train_epochs", 10)
    baseline_epochs = pick(baseline_epochs, mf, "baseline_epochs", train_epochs)
    check_traceable(seeded_model(mf, seed), mf)
    on_main(lambda: prepare_run(out_dir, "design", {
        "lr": lr, "lam": lam, "epochs": epochs, "n_p": n_p, "strategy": strategy, "inherit": inherit,
        "init": str(init) if init else None, "baseline_epochs": baseline_epochs, "train_epochs": train_epochs,
        "rounds": rounds, "seed": seed}, mf))
    # 1. the dense model ("before")
    if init is not None:
        dense = seeded_model(mf, seed)
        load_weights(dense, init)
        dense_weights = Path(init)
    elif baseline_epochs > 0:
        dense, _ = run_train(mf, out_dir / "dense", epochs=baseline_epochs, seed=seed, device=device,
                             description="dense baseline", command="design/dense")
        dense_weights = out_dir / "dense" / "weights.safetensors"
    else:
        dense, dense_weights = seeded_model(mf, seed), None
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
        start = compact_model(mf, specs, seed)
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
    check_runs(compact, mf, reference=dense)
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
    on_main(lambda: write_json(out_dir / "summary.json", summary))
    out.print(comparison_table(before, after, title=f"{mf.path.name}: dense vs compact (-{strategy})"))
    if headline:
        out.print(f"{headline}: {before.metrics[headline]:.4g} → {after.metrics.get(headline, float('nan')):.4g} "
                  f"at {summary['compression']:.2f}× fewer parameters")
    out.print(f"done in {elapsed:.0f} s; compact model = {' + '.join(str(s) for s in specs)} + "
              f"{summary['compact_weights']}")
