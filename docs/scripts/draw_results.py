"""Draw the result figures of the docs from a `sdesign design` run folder.

    sdesign design examples/digits_cnn.py --out runs/demo
    python docs/scripts/draw_results.py runs/demo --name digits --out docs/img

writes ``results-<name>-density.png`` (overall density against epoch),
``-layer-density.png`` (one bar per layer at the end of sparsification),
``-widths.png`` (output widths before and after the rebuild) and
``-accuracy.png`` (the headline metric against density during sparsification),
and prints the numbers of ``summary.json`` as a Markdown table row.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from sparsenet_design.report.html import OUTPUT_WIDTH_ATTRS, width_changes  # noqa: E402
from sparsenet_design.report.plots import plot_density_curves, plot_layer_density, plot_metric_vs_density  # noqa: E402
from sparsenet_design.files import read_jsonl  # noqa: E402


def _widths_figure(spec: Path, out: Path, title: str) -> Path:
    rows, seen = [], set()
    for row in width_changes(spec):
        if row["module"] not in seen and row["attr"] in OUTPUT_WIDTH_ATTRS[:3]:
            rows.append(row)
            seen.add(row["module"])
    xs = range(len(rows))
    fig, ax = plt.subplots(figsize=(max(6.4, 0.3 * len(rows) + 2), 4.0))
    ax.bar([x - 0.2 for x in xs], [r["before"] for r in rows], width=0.4, color="tab:gray", label="dense")
    ax.bar([x + 0.2 for x in xs], [r["after"] for r in rows], width=0.4, color="tab:green", label="compact")
    ax.set_xticks(list(xs))
    ax.set_xticklabels([f"{r['module']} ({r['class']})" for r in rows], rotation=90, fontsize="x-small")
    ax.set_ylabel("output channels / features")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small")
    fig.savefig(out, dpi=130, bbox_inches="tight")
    plt.close(fig)
    return out


def draw(run: Path, name: str, out: Path) -> list[Path]:
    prune, design = run / "prune", run / "design"
    summary = json.loads((run / "summary.json").read_text())
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"results-{name}"
    made = [plot_density_curves({name: prune / "density.jsonl"}, f"{stem}-density",
                                title=f"{name}: overall density during sparsification")[0]]
    last = read_jsonl(prune / "density.jsonl")[-1]
    made.append(plot_layer_density(last, f"{stem}-layer-density",
                                   title=f"{name}: density per layer after sparsification")[0])
    made.append(_widths_figure(design / "spec.json", Path(f"{stem}-widths.png"),
                               f"{name}: widths before and after the rebuild (-{summary.get('strategy', 'min')})"
                               if "strategy" in summary else f"{name}: widths before and after the rebuild"))
    metric = summary.get("headline_metric")
    records = read_jsonl(prune / "metrics.jsonl")
    points = [(r["density"], r[metric]) for r in records if metric in r and "density" in r]
    if points:
        made.append(plot_metric_vs_density({name: points}, metric, f"{stem}-{metric}",
                                           title=f"{name}: {metric} during sparsification")[0])
    for svg in out.glob(f"results-{name}-*.svg"):  # the docs use the PNGs
        svg.unlink()
    return made


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a `sdesign design --out` folder")
    parser.add_argument("--name", default="digits", help="name used in file names and titles")
    parser.add_argument("--out", type=Path, default=Path("docs/img"), help="folder for the PNGs")
    args = parser.parse_args(argv)
    for path in draw(args.run, args.name, args.out):
        print(f"wrote {path}")
    s = json.loads((args.run / "summary.json").read_text())
    metric = s.get("headline_metric")
    b, a = s["before"], s["after"]
    print(f"| {args.name} | {b['params']:,} | {a['params']:,} | {s['compression']:.2f}× | {b['macs']:,} | "
          f"{a['macs']:,} | {b['metrics'].get(metric, float('nan')):.2f} | {a['metrics'].get(metric, float('nan')):.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
