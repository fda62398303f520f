"""Speed and coverage of the core against Torch-Pruning 1.6.1, and of three tracers.

Same models as ``zoo_coverage.py`` (torchvision classification, segmentation,
detection backbones; the hand-written nets too), same example inputs, same
worker process, one thread each, back to back:

- ours, analysis: ``design_spec(model, x, "min", densities)`` (trace + channel
  graph + width resolution + spec; what ``build_dependency`` corresponds to);
- ours, rebuild: ``reconstruct(..., verify=False)`` with ``inherit=True`` (the
  compact model keeps the strongest channels: copies) and with fresh init (the
  default, as the paper: every resized tensor drawn from the RNG), and the
  default ``verify=True`` (plus the check run of the compact model);
- the RNG floor: drawing the compact model's parameter count of uniform numbers
  into fresh memory, which any fresh-init rebuild pays;
- Torch-Pruning: ``tp.DependencyGraph().build_dependency(model, example_inputs=x)``
  (graph building only; no widths, no rebuild);
- tracers: ``torch.fx.symbolic_trace``, the core's ``sparsenet_design.tracing.trace.trace``
  (symbolic, a recorded run as the fallback, shape pass), non-strict ``torch.export.export``.

Median of ``--repeats`` runs (export: ``--export-repeats``). Torch-Pruning is a
benchmark dependency only (``pip install -e .[bench]``).

    .venv/bin/python benchmarks/core_vs_torch_pruning.py

Writes ``benchmarks/results/core_vs_torch_pruning.md`` and ``benchmarks/results/tracing.md``.
"""
from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
for _path in (HERE, HERE.parent / "tests"):  # benchmarks, and the shared test helpers
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))


def _error(exc: Exception) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]


def _timed(fn, repeats: int) -> tuple[float | None, str | None]:
    """Median seconds of ``repeats`` calls, or the error of the first failing one."""
    return _timed_together({"_": fn}, repeats)["_"]


def _timed_together(fns: dict, repeats: int) -> dict[str, tuple[float | None, str | None]]:
    """Median seconds of ``repeats`` calls of each function, taken in turns (a passing
    load on the machine hits all of them alike), each call after a full garbage
    collection (so that each pays only for collecting its own garbage)."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    errors: dict[str, str] = {}
    for _ in range(repeats):
        for key, fn in fns.items():
            if key in errors:
                continue
            gc.collect()
            start = time.perf_counter()
            try:
                fn()
            except Exception as exc:
                errors[key] = _error(exc)
                continue
            times[key].append(time.perf_counter() - start)
    return {k: (None, errors[k]) if k in errors else (statistics.median(times[k]), None) for k in fns}


def measure(job: tuple[str, str, int, int]) -> dict:
    import warnings

    import torch_pruning as tp
    from support.rebuild_check import random_densities
    from zoo_coverage import build, example_input

    from sparsenet_design import design_spec, reconstruct
    from sparsenet_design.tracing.trace import trace

    warnings.filterwarnings("ignore")
    family, name, repeats, export_repeats = job
    model = build(family, name)
    x = example_input(family, name, model)
    densities = random_densities(model, 0)
    row = {"family": family, "name": name, "input": "×".join(map(str, x.shape))}
    # warm-up: first calls pay one-off imports and caches, for both sides
    for fn in (lambda: trace(model, (x,)), lambda: tp.DependencyGraph().build_dependency(model, example_inputs=x)):
        try:
            fn()
        except Exception:
            pass
    try:
        compact_params = sum(p.numel() for p in reconstruct(model, x, "min", densities, verify=False)[0].parameters())
    except Exception:
        compact_params = 0
    row["compact_params"] = compact_params
    timings = {
        "analysis": lambda: design_spec(model, x, "min", densities),
        "inherit": lambda: reconstruct(model, x, "min", densities, inherit=True, verify=False),
        "ours": lambda: reconstruct(model, x, "min", densities, verify=False),
        "rng_floor": lambda: torch.empty(compact_params).uniform_(-1, 1),
        "ours_verify": lambda: reconstruct(model, x, "min", densities, verify=True),
        "tp": lambda: tp.DependencyGraph().build_dependency(model, example_inputs=x, verbose=False),
        "symbolic_trace": lambda: torch.fx.symbolic_trace(model),
        "core_trace": lambda: trace(model, (x,)),
    }
    for key, (value, error) in _timed_together(timings, repeats).items():
        row[key], row[f"{key}_error"] = value, error
    row["export"], row["export_error"] = _timed(
        lambda: torch.export.export(model, (x,), strict=False), export_repeats
    )
    try:
        row["core_tracer"] = trace(model, (x,)).method
    except Exception:
        row["core_tracer"] = "—"
    return row


def _fmt(v: float | None) -> str:
    return "—" if v is None else f"{v:.3f}"


def _versions() -> str:
    from importlib.metadata import version

    try:
        return f"Torch-Pruning {version('torch-pruning')}"
    except Exception:
        return "Torch-Pruning not installed"


COLUMNS = (
    ("analysis", "analysis (`design_spec`)"),
    ("inherit", "rebuild, inherit=True"),
    ("ours", "rebuild, fresh init"),
    ("ours_verify", "rebuild, fresh init + verify"),
)


def _median(values: list[float]) -> float | None:
    values = sorted(values)
    return values[len(values) // 2] if values else None


def write_speed(rows: list[dict], path: Path, command: str, repeats: int, wall: float) -> None:
    from zoo_coverage import header

    lines = header("Core vs Torch-Pruning: graph build + widths + rebuild time", command)
    lines += [
        f"{_versions()} (benchmark dependency only). Each model in one worker process (1 thread), "
        f"all timings in that process, taken in turns (one call of each, then the next round), each after "
        f"`gc.collect()`; median of {repeats} rounds after one warm-up; seconds. "
        "*TP* = `tp.DependencyGraph().build_dependency(model, example_inputs=x)`: the dependency graph only "
        "(no widths, no new model). *analysis* = `design_spec(model, x, 'min', densities)`: trace + shapes + "
        "channel groups + √d widths + spec, the part that corresponds to TP's graph. *rebuild* = "
        "`reconstruct(model, x, 'min', densities, verify=False)`, which also builds the compact model: with "
        "`inherit=True` its tensors are copies of the strongest channels; with fresh init (the default, as the "
        "paper) every resized tensor is drawn from the RNG. *RNG floor* = drawing the compact model's parameter "
        "count of uniform numbers into fresh memory (`torch.empty(n).uniform_()`), which any fresh-init rebuild "
        "pays whatever its graph code costs. *+ verify* adds the check run of the compact model. "
        f"Wall time of the whole run (tracing comparison included): {wall / 60:.1f} min.",
        "",
        "## Summary",
        "",
        f"Models tried: {len(rows)}; Torch-Pruning's build_dependency ran on "
        f"{sum(bool(r.get('tp')) for r in rows)}.",
        "",
        "| ours | ran | faster than TP | median time ratio ours / TP |",
        "|---|---:|---:|---:|",
    ]
    for key, label in COLUMNS:
        both = [r for r in rows if r.get(key) and r.get("tp")]
        faster = sum(r[key] < r["tp"] for r in both)
        ratio = _median([r[key] / r["tp"] for r in both])
        lines.append(f"| {label} | {sum(bool(r.get(key)) for r in rows)} | {faster} of {len(both)} | "
                     f"{'—' if ratio is None else f'{ratio:.2f}'} |")
    floor = [r for r in rows if r.get("rng_floor") and r.get("tp")]
    beyond = [r for r in floor if r.get("ours")]
    lines += [
        "",
        f"Fresh-init rebuild less its RNG floor (the graph work, module copies and resizing) is faster than TP on "
        f"{sum(r['ours'] - r['rng_floor'] < r['tp'] for r in beyond)} of {len(beyond)} models.",
        "",
        f"The RNG floor alone exceeds TP's time on {sum(r['rng_floor'] >= r['tp'] for r in floor)} of "
        f"{len(floor)} models (median floor / TP {_median([r['rng_floor'] / r['tp'] for r in floor]) or 0:.2f}).",
        "",
        "## Per model",
        "",
        "| model | family | input | compact params | TP | analysis | rebuild, inherit | rebuild, fresh | "
        "RNG floor | + verify | analysis / TP | inherit / TP | fresh / TP |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def ratio(r, key):
        return f"{r[key] / r['tp']:.2f}" if r.get(key) and r.get("tp") else "—"

    for r in rows:
        lines.append(
            f"| {r['name']} | {r['family']} | {r.get('input', '?')} | {r.get('compact_params', 0) / 1e6:.2f}M | "
            f"{_fmt(r.get('tp'))} | {_fmt(r.get('analysis'))} | {_fmt(r.get('inherit'))} | {_fmt(r.get('ours'))} | "
            f"{_fmt(r.get('rng_floor'))} | {_fmt(r.get('ours_verify'))} | {ratio(r, 'analysis')} | "
            f"{ratio(r, 'inherit')} | {ratio(r, 'ours')} |"
        )
    keys = [k for k, _ in COLUMNS] + ["tp"]
    errors = [(r, k) for r in rows for k in keys if r.get(f"{k}_error")]
    errors += [(r, "status") for r in rows if r.get("status_error")]
    lines += ["", "## Errors", ""]
    lines += [f"- **{r['name']}** {k}: {r.get(f'{k}_error')}" for r, k in errors] or ["None."]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def write_tracing(rows: list[dict], path: Path, command: str, repeats: int, export_repeats: int) -> None:
    from zoo_coverage import header

    lines = header("Tracing: torch.fx.symbolic_trace vs the core's trace vs non-strict torch.export", command)
    keys = [("symbolic_trace", "`fx.symbolic_trace`"), ("core_trace", "core `trace()`"), ("export", "`export(strict=False)`")]

    def med(k):
        v = sorted(r[k] for r in rows if r.get(k))
        return v[len(v) // 2] if v else None

    lines += [
        "Same models, inputs and process as `core_vs_torch_pruning.md`. The core's `trace()` is "
        "fx symbolic tracing with leaf rules (recorded by the lean tracer of `fast_trace.py`, which makes "
        "fx's graph node for node at a fraction of the cost, and by `fx.Tracer` itself where it declines), "
        "a fallback that records one real forward pass for code symbolic tracing cannot follow "
        "(`run_trace.py`), and one pass that records every node's shape (what the channel rules need; "
        "convs, linears, norms and activations sized by formula, the rest run for real on small inputs, "
        "on the meta device otherwise) and no `GraphModule` code generation; `symbolic_trace` records no "
        f"shapes but generates a `GraphModule`. Median of {repeats} runs ({export_repeats} for export), "
        "seconds, one thread.",
        "",
        "| tracer | traced | median time (s) |",
        "|---|---:|---:|",
    ]
    for k, label in keys:
        lines.append(f"| {label} | {sum(bool(r.get(k)) for r in rows)} of {len(rows)} | {_fmt(med(k))} |")
    by_running = [r["name"] for r in rows if r.get("core_tracer") == "run"]
    lines += [
        "",
        f"Models the core traced by running them: {', '.join(by_running) or 'none'}.",
        "",
        "| model | family | symbolic_trace | core trace (tracer) | export (non-strict) |",
        "|---|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['family']} | {_fmt(r.get('symbolic_trace'))} | "
            f"{_fmt(r.get('core_trace'))} ({r.get('core_tracer', '—')}) | {_fmt(r.get('export'))} |"
        )
    errors = [(r, k) for r in rows for k, _ in keys if r.get(f"{k}_error")]
    lines += ["", "## Errors", ""]
    lines += [f"- **{r['name']}** {k}: {r.get(f'{k}_error')}" for r, k in errors] or ["None."]
    path.write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    from isolated_pool import run_isolated
    from zoo_coverage import FAMILIES, zoo_names

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    ap.add_argument("--models", nargs="+")
    ap.add_argument("--skip", nargs="+", default=[], help="model names to leave out")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--export-repeats", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "core_vs_torch_pruning.md")
    ap.add_argument("--tracing-out", type=Path, default=HERE / "results" / "tracing.md")
    args = ap.parse_args(argv)
    names = [(f, n) for f, n in zoo_names(args.families)
             if (not args.models or n in args.models) and n not in args.skip]
    jobs = [(f, n, args.repeats, args.export_repeats) for f, n in names]
    rows = {}
    start = time.perf_counter()
    for job, status, value in run_isolated(measure, jobs, timeout=args.timeout, workers=args.workers):
        row = value if status == "ok" else {"family": job[0], "name": job[1], "status_error": f"{status}: {value}"}
        rows[(job[0], job[1])] = row
        print(f"[{len(rows)}/{len(jobs)}] {job[1]}: analysis {_fmt(row.get('analysis'))} "
              f"inherit {_fmt(row.get('inherit'))} ours {_fmt(row.get('ours'))} verify {_fmt(row.get('ours_verify'))} "
              f"floor {_fmt(row.get('rng_floor'))} tp {_fmt(row.get('tp'))} fx {_fmt(row.get('symbolic_trace'))} core {_fmt(row.get('core_trace'))} "
              f"export {_fmt(row.get('export'))} {row.get('status_error', '')}", flush=True)
    wall = time.perf_counter() - start
    ordered = [rows[k] for k in names]
    command = ("python benchmarks/core_vs_torch_pruning.py " + " ".join(argv if argv is not None else sys.argv[1:])).strip()
    write_speed(ordered, args.out, command, args.repeats, wall)
    write_tracing(ordered, args.tracing_out, command, args.repeats, args.export_repeats)
    print(f"wrote {args.out} and {args.tracing_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
