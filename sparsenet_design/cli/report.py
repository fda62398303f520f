"""``sdesign report`` (per-layer density, proposed widths, plots, HTML) and ``sdesign kinds``."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table
from torch import nn

from ..files import read_jsonl, write_json
from ..design.density import density_report
from ..errors import SdesignError
from ..modelfile import ModelFile
from ..training.runs import RunFolder
from ..report.summary import count_params
from .app import err, main, out
from .common import load_state, run_model_file, sparse_weights_of, widths_text


def proposed_widths(model: nn.Module, mf: ModelFile) -> dict[str, Any]:
    from ..rebuild.reconstruct import reconstruct

    found: dict[str, Any] = {}
    for strategy in ("min", "max"):
        compact, spec = reconstruct(model, mf.example_inputs(), strategy=strategy,
                                    pinned=mf.pinned, leaf_modules=mf.leaf_modules)
        found[strategy] = {"spec": spec, "params": count_params(compact)}
    return found


def make_plots(run: RunFolder, report, mf: ModelFile) -> list[Path]:
    from ..report import plots

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


def tracing_summary(spec) -> dict[str, Any]:
    """Which tracer made the graph the widths come from, and the spec's notes."""
    return {"tracer": spec.settings.get("tracer"), "notes": list(spec.notes)}


def describe_tracer(method: str | None) -> str:
    from ..tracing.trace import describe_tracer as describe

    return describe(method)


def run_report(run_dir: Path, plots: bool = True) -> dict[str, Any]:
    run = RunFolder(run_dir)
    mf = run_model_file(run)
    model = mf.build_model()
    state, which = sparse_weights_of(run)
    load_state(model, state, str(run.root))
    report = density_report(model)
    try:
        with err.status("tracing the model and proposing widths (-min, -max)"):
            proposals = proposed_widths(model, mf)
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
            widths_text(proposals["min"]["spec"].modules.get(layer.name)) if proposals else "–",
            widths_text(proposals["max"]["spec"].modules.get(layer.name)) if proposals else "–",
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
    tracing = tracing_summary(proposals["min"]["spec"]) if proposals else {"tracer": None, "notes": []}
    if proposals:
        out.print(f"graph: {describe_tracer(tracing['tracer'])}")
        for note in tracing["notes"]:
            out.print(f"[dim]note: {escape(note)}")
    made = make_plots(run, report, mf) if plots else []
    for path in made:
        out.print(f"plot → {path}")
    result = {"weights": which, "layers": layers, "totals": totals, "plots": [str(p) for p in made], **tracing}
    write_json(run.root / "report.json", result)
    return result


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--plots/--no-plots", default=True, help="Write density plots under RUN/plots.")
@click.option("--html", is_flag=True, help="Also write RUN/report.html: one self-contained page with the plots.")
@click.option("--design", "design_dir", type=click.Path(file_okay=False, exists=True, path_type=Path),
              default=None, help="With --html: a reconstruct folder whose before/after widths to show.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="With --html: the page to write (default RUN/report.html).")
def report(run_dir, plots, html, design_dir, out_path):
    """Per-layer density of a prune run (or of the prune stage of a `sdesign design` folder),
    proposed widths under -min and -max, plots, and with --html one self-contained page."""
    own_weights = (run_dir / "sparse.safetensors").exists() or (run_dir / "checkpoint").is_dir()
    prune_dir = run_dir / "prune" if (run_dir / "prune").is_dir() and not own_weights else run_dir
    run_report(prune_dir, plots=plots)
    if html:
        from ..report.html import write_html_report

        path = write_html_report(run_dir, out_path, design_dir=design_dir)
        click.echo(f"html report → {path}")


@main.command()
@click.option("--all", "show_all", is_flag=True, help="List every target of each kind, not the first few.")
def kinds(show_all):
    """The layer and op kinds the core knows (plugins included): what each covers and provides."""
    from ..kinds.listing import kind_rows
    from ..plugins import load_plugins

    load_plugins()
    table = Table(title="layer and op kinds (later rows take precedence)")
    for column in ("kind", "", "covers", "provides"):
        table.add_column(column)
    for row in kind_rows():
        shown = row.targets if show_all or len(row.targets) <= 6 else (*row.targets[:6], f"… {len(row.targets)} in all")
        table.add_row(escape(row.name), row.kind, escape(", ".join(shown)), ", ".join(row.facts))
    out.print(table)
