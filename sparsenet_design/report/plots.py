"""Density plots like the paper's (matplotlib, Agg backend; each writes
``stem.png`` and ``stem.svg`` and returns their paths):

* :func:`plot_density_curves`: overall density against epoch, one line per run;
* :func:`plot_metric_vs_density`: a quality metric against density, one line per run;
* :func:`plot_layer_density`: one bar per prunable layer, in model order.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # never needs a display; set before pyplot is imported
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ..design.density import DensityReport  # noqa: E402
from ..errors import SdesignError  # noqa: E402
from ..training.tracking import read_density_log  # noqa: E402

_SUFFIXES = (".png", ".svg")


def _save(fig: Figure, out_stem: str | Path) -> list[Path]:
    stem = Path(out_stem)
    if stem.suffix.lower() in _SUFFIXES:
        stem = stem.with_suffix("")
    try:
        stem.parent.mkdir(parents=True, exist_ok=True)
        paths = []
        for suffix in _SUFFIXES:
            path = stem.parent / (stem.name + suffix)
            if suffix == ".png":
                fig.savefig(path, dpi=150, bbox_inches="tight")
            else:  # no date in the SVG: the same data gives the same file
                fig.savefig(path, bbox_inches="tight", metadata={"Date": None})
            paths.append(path)
    except OSError as exc:
        raise SdesignError(f"Cannot write the plot {stem}.png/.svg: {exc}. Choose a writable output folder.") from exc
    finally:
        plt.close(fig)
    return paths


def _epoch_records(source: Sequence[Mapping[str, Any]] | str | Path, label: str) -> list[Mapping[str, Any]]:
    records = read_density_log(source) if isinstance(source, (str, Path)) else list(source)
    if not records:
        raise SdesignError(f"Run {label!r} has no density records to plot.")
    epoch_ends = [r for r in records if r.get("event", "epoch") == "epoch"]
    records = epoch_ends or records
    for r in records:
        if "epoch" not in r or "overall_density" not in r:
            raise SdesignError(f"Run {label!r}: a record lacks 'epoch' or 'overall_density'; pass records from a density log.")
    return sorted(records, key=lambda r: (r["epoch"], r.get("step", 0)))


def density_curves_figure(runs: Mapping[str, Sequence[Mapping[str, Any]] | str | Path], *,
                          title: str | None = None) -> Figure:
    if not runs:
        raise SdesignError("plot_density_curves needs at least one run.")
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for label, source in runs.items():
        records = _epoch_records(source, label)
        ax.plot([r["epoch"] for r in records], [100 * r["overall_density"] for r in records],
                marker="o", markersize=3, label=str(label))
    ax.set_xlabel("epoch")
    ax.set_ylabel("density (%)")
    ax.set_ylim(0, 102)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    if title:
        ax.set_title(title)
    return fig


def plot_density_curves(runs: Mapping[str, Sequence[Mapping[str, Any]] | str | Path], out_stem: str | Path,
                        *, title: str | None = None) -> list[Path]:
    """Overall density (%) against epoch, one line per run. Each run is a list
    of density-log records or the path of a log; end-of-epoch records are used
    when there are any."""
    return _save(density_curves_figure(runs, title=title), out_stem)


def metric_vs_density_figure(points: Mapping[str, Sequence[tuple[float, float]]], metric_name: str, *,
                             title: str | None = None) -> Figure:
    if not points:
        raise SdesignError("plot_metric_vs_density needs at least one run of (density, metric) points.")
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for label, pairs in points.items():
        try:
            xs, ys = zip(*[(float(d), float(m)) for d, m in pairs]) if pairs else ((), ())
        except (TypeError, ValueError) as exc:
            raise SdesignError(f"Run {label!r}: points must be (density, {metric_name}) pairs of numbers.") from exc
        ax.plot([100 * x for x in xs], ys, marker="o", markersize=3, label=str(label))
    ax.set_xlabel("density (%)")
    ax.set_ylabel(metric_name)
    ax.invert_xaxis()  # training runs from dense (left) to sparse (right), as in the paper
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    if title:
        ax.set_title(title)
    return fig


def plot_metric_vs_density(points: Mapping[str, Sequence[tuple[float, float]]], metric_name: str,
                           out_stem: str | Path, *, title: str | None = None) -> list[Path]:
    """A quality metric against density: ``points[label]`` is a list of
    ``(density, metric)`` pairs, density as a fraction in [0, 1]."""
    return _save(metric_vs_density_figure(points, metric_name, title=title), out_stem)


def _layer_densities(source: DensityReport | Mapping[str, Any]) -> dict[str, float]:
    if isinstance(source, DensityReport):
        return source.as_dict()
    if isinstance(source, Mapping):
        layers = source["layers"] if "layers" in source and isinstance(source["layers"], Mapping) else source
        try:
            return {str(k): float(v) for k, v in layers.items()}
        except (TypeError, ValueError) as exc:
            raise SdesignError("plot_layer_density: densities must be numbers in [0, 1].") from exc
    raise SdesignError(
        f"plot_layer_density needs a DensityReport, a density record or a {{layer: density}} mapping, "
        f"got {type(source).__name__}."
    )


def layer_density_figure(source: DensityReport | Mapping[str, Any], *, title: str | None = None) -> Figure:
    layers = _layer_densities(source)
    if not layers:
        raise SdesignError("plot_layer_density: there are no prunable layers to plot.")
    names = list(layers)
    fig, ax = plt.subplots(figsize=(max(6.4, 0.22 * len(names) + 1.5), 4.4))
    ax.bar(range(len(names)), [100 * layers[n] for n in names], color="tab:blue")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([n or "(model)" for n in names], rotation=90 if len(names) > 8 else 0,
                       fontsize="x-small" if len(names) > 8 else "small")
    ax.set_xlabel("prunable layer (model order)")
    ax.set_ylabel("density (%)")
    ax.set_ylim(0, 100)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(title or "per-layer density")
    return fig


def plot_layer_density(report_or_mapping: DensityReport | Mapping[str, Any], out_stem: str | Path,
                       title: str | None = None) -> list[Path]:
    """One bar per prunable layer, in model order (a :class:`DensityReport`, a
    density-log record or a ``{layer: density}`` mapping)."""
    return _save(layer_density_figure(report_or_mapping, title=title), out_stem)
