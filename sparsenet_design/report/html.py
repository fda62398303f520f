"""One self-contained HTML page about a run, to look at rather than read.

    from sparsenet_design.report.html import write_html_report
    write_html_report("runs/prune")                          # runs/prune/report.html
    write_html_report("runs/prune", design_dir="runs/design")  # + before/after widths
    write_html_report("runs/demo")      # a `sdesign design` folder: prune/, design/, summary.json

or ``sdesign report RUN --html [--design DESIGN] [--out FILE]``.

The page has the density against epoch, one density bar per layer (end of the
run), the training metrics against epoch and, when a design folder is known,
the widths of every rebuilt layer before and after, which tracer made the
graph they come from (and its notes), and the cost/quality summary. Plots
are PNGs embedded as base64, so the file can be mailed or attached to an
issue on its own. It reads only the run folder's files (see
:mod:`sparsenet_design.training.runs`), never the model file, so it works on a run
copied from another machine.
"""
from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import SdesignError
from ..files import atomic_write, read_json, read_jsonl
from ..training.runs import RunFolder

#: Widths shown in the before/after chart, most telling first; other attributes go to the table only.
OUTPUT_WIDTH_ATTRS = ("out_channels", "out_features", "embed_dim", "num_features", "num_channels",
                      "normalized_shape", "num_parameters", "embedding_dim")


@dataclass
class _Sources:
    run: RunFolder
    design: RunFolder | None
    summary: dict[str, Any] | None
    summary_kind: str | None  # "design" (sdesign design) or "reconstruct"


def _locate(run_dir: Path, design_dir: Path | None) -> _Sources:
    """Find the prune run, the design folder and the summary in a prune run, a
    reconstruct folder or a ``sdesign design`` folder."""
    if not run_dir.is_dir():
        raise SdesignError(f"Run folder {run_dir} does not exist. Pass the --out folder of `sdesign prune` "
                           "or `sdesign design`.")
    summary, kind = None, None
    run = RunFolder(run_dir)
    if (run_dir / "prune").is_dir() and not run.density_log.exists():  # a `sdesign design` folder
        if design_dir is None and (run_dir / "design").is_dir():
            design_dir = run_dir / "design"
        if run.summary.is_file():
            summary, kind = read_json(run.summary, "Summary"), "design"
        run = RunFolder(run_dir / "prune")
    elif run.spec.is_file() and not run.density_log.exists():  # a reconstruct folder given as the run
        design_dir = design_dir or run_dir
        source = read_json(run.summary, "Summary").get("source_run") if run.summary.is_file() else None
        if not source or not Path(source).is_dir():
            raise SdesignError(f"{run_dir} is a design folder whose prune run is unknown; pass the prune run "
                               "as RUN and this folder as --design.")
        run = RunFolder(Path(source))
    design = RunFolder(Path(design_dir)) if design_dir is not None else None
    if design is not None and not design.spec.is_file():
        raise SdesignError(f"Design folder {design.root} has no spec.json; pass the --out folder of "
                           "`sdesign reconstruct`.")
    if design is not None and summary is None and design.summary.is_file():
        summary, kind = read_json(design.summary, "Summary"), "reconstruct"
    if not run.density_log.is_file() and not run.sparse_weights.is_file() and not run.checkpoint.is_file():
        raise SdesignError(f"{run.root} holds no density log, sparse weights or checkpoint; is it the --out "
                           "folder of `sdesign prune`?")
    return _Sources(run, design, summary, kind)


# ---- data ---------------------------------------------------------------------------

def _epoch_records(run: RunFolder) -> list[dict[str, Any]]:
    if not run.density_log.is_file():
        return []
    from ..training.tracking import read_density_log

    records = read_density_log(run.density_log)
    ends = [r for r in records if r.get("event", "epoch") == "epoch"]
    return sorted(ends or records, key=lambda r: (r.get("epoch", 0), r.get("step", 0)))


def _final_layers(run: RunFolder, records: Sequence[Mapping[str, Any]]) -> tuple[dict[str, float], str]:
    """Per-layer density at the end of the run: the sparse weights if saved, else the last log record."""
    from ..design.density import density_report

    if run.sparse_weights.is_file():
        from ..training.checkpoint import read_weights

        return density_report(read_weights(run.sparse_weights)).as_dict(), "final sparse weights"
    if records:
        last = records[-1]
        return dict(last.get("layers", {})), f"density log, epoch {last.get('epoch')}"
    from ..training.checkpoint import load_checkpoint

    state, train_state = load_checkpoint(run.checkpoint)
    return density_report(state).as_dict(), f"checkpoint after epoch {train_state.get('epoch')}"


def width_changes(spec_path: Path) -> list[dict[str, Any]]:
    """Rows ``{"module", "class", "attr", "before", "after"}`` of a design spec, one per
    width attribute, in model order; ``attr`` of the output width first."""
    from ..design.spec import DesignSpec

    spec = DesignSpec.load(spec_path)
    rows = []
    for path, entry in spec.modules.items():
        original, widths = entry.get("original", {}), entry.get("widths", {})
        attrs = sorted(widths, key=lambda a: OUTPUT_WIDTH_ATTRS.index(a) if a in OUTPUT_WIDTH_ATTRS
                       else len(OUTPUT_WIDTH_ATTRS))
        for attr in attrs:
            rows.append({"module": path, "class": entry.get("class", ""), "attr": attr,
                         "before": original.get(attr), "after": widths[attr]})
    return rows


# ---- figures ------------------------------------------------------------------------

def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _density_vs_epoch(records, label: str) -> str:
    from .plots import density_curves_figure

    return _png(density_curves_figure({label: records}, title="overall density of the prunable weights"))


def _layer_bars(layers: Mapping[str, float], source: str) -> str:
    from .plots import layer_density_figure

    return _png(layer_density_figure(layers, title=f"density per layer ({source})"))


def _metrics_vs_epoch(metrics: Sequence[Mapping[str, Any]]) -> str | None:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    names = [k for k in dict.fromkeys(k for r in metrics for k in r)
             if k not in ("epoch", "step", "density", "event") and
             all(isinstance(r.get(k), (int, float)) for r in metrics if k in r)]
    if not metrics or not names:
        return None
    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names) + 0.6, 3.2), squeeze=False)
    for ax, name in zip(axes[0], names):
        points = [(r["epoch"], r[name]) for r in metrics if name in r and "epoch" in r]
        ax.plot(*zip(*points), marker="o", markersize=3, color="tab:orange")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_title(name, fontsize="medium")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def _width_bars(rows: Sequence[Mapping[str, Any]]) -> str | None:
    import matplotlib.pyplot as plt

    shown, seen = [], set()
    for row in rows:  # one bar pair per module: its output width
        if row["module"] not in seen and row["attr"] in OUTPUT_WIDTH_ATTRS[:3] and row["before"] is not None:
            shown.append(row)
            seen.add(row["module"])
    if not shown:
        return None
    xs = range(len(shown))
    fig, ax = plt.subplots(figsize=(max(6.4, 0.34 * len(shown) + 1.5), 4.2))
    ax.bar([x - 0.2 for x in xs], [r["before"] for r in shown], width=0.4, label="before", color="tab:gray")
    ax.bar([x + 0.2 for x in xs], [r["after"] for r in shown], width=0.4, label="after", color="tab:green")
    ax.set_xticks(list(xs))
    ax.set_xticklabels([f"{r['module']} ({r['class']})" for r in shown], rotation=90, fontsize="x-small")
    ax.set_ylabel("output width (channels / features)")
    ax.set_title("layer widths before and after the rebuild")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small")
    return _png(fig)


# ---- page ---------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;
color:#222;padding:0 1rem}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
table{border-collapse:collapse;font-size:.88rem;margin:.5rem 0}
td,th{border:1px solid #ddd;padding:.2rem .55rem;text-align:right}td:first-child,th:first-child{text-align:left}
th{background:#f4f4f4}.changed{background:#eaf7ea}.muted{color:#777}
img{max-width:100%;border:1px solid #eee}.cards{display:flex;gap:1rem;flex-wrap:wrap}
.card{border:1px solid #ddd;border-radius:6px;padding:.6rem 1rem;min-width:9rem}
.card b{display:block;font-size:1.3rem}
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _img(b64: str | None, alt: str) -> str:
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{b64}">' if b64 else ""


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], classes: Sequence[str] | None = None) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{classes[i]}"' if classes and classes[i] else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{_e(_fmt(v))}</td>" for v in row) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _summary_section(summary: Mapping[str, Any], kind: str | None) -> str:
    before, after = summary.get("before", {}), summary.get("after", {})
    labels = ("dense", "compact (retrained)") if kind == "design" else ("original", "compact")
    rows = []
    for key, name in (("params", "parameters"), ("size_mb", "size (MB)"), ("macs", "MACs"),
                      ("latency_ms", "CPU latency (ms)")):
        b, a = before.get(key), after.get(key)
        ratio = f"{b / a:.2f}×" if b and a else ""
        rows.append((name, b, a, ratio))
    for name in dict.fromkeys([*before.get("metrics", {}), *after.get("metrics", {})]):
        b, a = before.get("metrics", {}).get(name), after.get("metrics", {}).get(name)
        rows.append((name, b, a, f"{a - b:+.4g}" if a is not None and b is not None else ""))
    cards = ""
    if summary.get("compression"):
        cards = f'<div class="cards"><div class="card"><b>{summary["compression"]:.2f}×</b>fewer parameters</div>'
        headline = summary.get("headline_metric")
        if headline and headline in before.get("metrics", {}) and headline in after.get("metrics", {}):
            cards += (f'<div class="card"><b>{before["metrics"][headline]:.4g} → {after["metrics"][headline]:.4g}'
                      f'</b>{_e(headline)}</div>')
        cards += "</div>"
    return f"<h2>Before and after</h2>{cards}" + _table(("", labels[0], labels[1], "change"), rows)


def _widths_section(rows: Sequence[Mapping[str, Any]]) -> str:
    changed = [r for r in rows if r["before"] != r["after"]]
    kept = len({r["module"] for r in rows}) - len({r["module"] for r in changed})
    table = _table(("module", "class", "width", "before", "after", "kept"),
                   [(r["module"], r["class"], r["attr"], r["before"], r["after"],
                     f"{100 * r['after'] / r['before']:.0f} %" if r["before"] else "") for r in rows],
                   ["changed" if r["before"] != r["after"] else "" for r in rows])
    return (f"<h2>Widths per layer</h2>{_img(_width_bars(rows), 'widths before and after')}"
            f'<p class="muted">{len(changed)} widths changed; {kept} modules kept all their widths '
            "(pinned groups: inputs, outputs, or ops without a channel rule).</p>"
            f"<details><summary>all widths</summary>{table}</details>")


def _tracing_section(run: RunFolder, design: RunFolder | None) -> str:
    """How the graph the widths come from was made (which tracer) and the notes on it:
    from the design spec, else from the run's ``report.json`` (``sdesign report``)."""
    from ..tracing.trace import describe_tracer

    if design is not None:
        from ..design.spec import DesignSpec

        spec = DesignSpec.load(design.spec)
        tracer, notes = spec.settings.get("tracer"), spec.notes
    elif (run.root / "report.json").is_file():
        report = read_json(run.root / "report.json", "Report")
        tracer, notes = report.get("tracer"), report.get("notes", [])
    else:
        return ""
    if not tracer:
        return ""
    items = "".join(f"<li>{_e(note)}</li>" for note in notes)
    return (f"<h2>Graph</h2><p>traced by: <b>{_e(describe_tracer(tracer))}</b></p>"
            + (f'<ul class="muted">{items}</ul>' if items else ""))


def _config_section(run: RunFolder) -> str:
    if not run.config_path.is_file():
        return ""
    config = read_json(run.config_path, "Run config")
    args = config.get("args", {})
    rows = [("command", config.get("command")), ("model file", config.get("model_file", {}).get("path")),
            ("started", config.get("started"))]
    rows += [(k, v) for k, v in args.items() if v is not None]
    rows += [(k, v) for k, v in config.get("versions", {}).items()]
    return "<h2>Run settings</h2>" + _table(("", "value"), rows)


def render_html(run_dir: str | Path, design_dir: str | Path | None = None) -> str:
    """The report page as a string (see :func:`write_html_report`)."""
    sources = _locate(Path(run_dir), Path(design_dir) if design_dir is not None else None)
    run = sources.run
    records = _epoch_records(run)
    layers, source = _final_layers(run, records)
    metrics = read_jsonl(run.metrics_log)
    overall = records[-1]["overall_density"] if records else None
    start = records[0]["overall_density"] if records else None
    title = f"sparsenet-design report — {run.root.name or run.root}"

    parts = [f"<h1>{_e(title)}</h1>",
             f'<p class="muted">run folder {_e(run.root.resolve())}; written '
             f"{_e(datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC'))}</p>"]
    if sources.summary:
        parts.append(_summary_section(sources.summary, sources.summary_kind))
    parts.append("<h2>Density</h2>")
    if overall is not None:
        sparsest = sorted(layers.items(), key=lambda kv: kv[1])[:3]
        parts.append(
            f'<div class="cards"><div class="card"><b>{100 * start:.1f} % → {100 * overall:.1f} %</b>'
            f"overall density over {len(records) - 1} epochs</div>"
            + "".join(f'<div class="card"><b>{100 * d:.1f} %</b>{_e(name)}</div>' for name, d in sparsest)
            + "</div>")
        parts.append(_img(_density_vs_epoch(records, run.root.name or "run"), "density vs epoch"))
    parts.append(_img(_layer_bars(layers, source), "density per layer"))
    parts.append("<details><summary>density per layer (table)</summary>"
                 + _table(("layer", "density"), [(k, f"{100 * v:.2f} %") for k, v in layers.items()])
                 + "</details>")
    if metrics:
        parts.append("<h2>Training metrics</h2>" + _img(_metrics_vs_epoch(metrics), "metrics vs epoch"))
    if sources.design is not None:
        parts.append(_widths_section(width_changes(sources.design.spec)))
    parts.append(_tracing_section(run, sources.design))
    parts.append(_config_section(run))
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f"<style>{_CSS}</style></head><body>{''.join(parts)}</body></html>\n")


def write_html_report(run_dir: str | Path, out_path: str | Path | None = None,
                      design_dir: str | Path | None = None) -> Path:
    """Write one self-contained HTML page about ``run_dir`` and return its path.

    ``run_dir`` is a prune run (``sdesign prune --out``), a ``sdesign design``
    folder (its ``prune/``, ``design/`` and ``summary.json`` are found), or a
    reconstruct folder. ``design_dir`` (a ``sdesign reconstruct --out`` folder)
    adds the before/after widths. ``out_path`` defaults to ``RUN/report.html``.
    """
    page = render_html(run_dir, design_dir)
    out = Path(out_path) if out_path is not None else Path(run_dir) / "report.html"
    try:
        atomic_write(out, page)
    except OSError as exc:
        raise SdesignError(f"Cannot write the HTML report {out}: {exc.strerror or exc}. "
                           "Pass --out FILE with a writable path.") from exc
    return out
