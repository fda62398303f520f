"""Coverage of ``reconstruct`` on third-party model zoos, beside Torch-Pruning 1.6.1.

Models: ``third_party_models.py`` (timm: the smallest model of every
architecture family; ultralytics YOLOv8n/YOLO11n detect, segment, pose; smp
Unet/FPN/DeepLabV3Plus × three encoders; diffusers UNets; transformers BERT,
GPT-2, ViT, Llama, Whisper), random init, eval mode, nothing downloaded.

Per model, in a worker process with a time limit (one thread):

1. ours: ``trace``, then :func:`rebuild_check.check_rebuild` with ``min`` and
   ``max`` (strict: fewer parameters), as the torchvision table does;
2. Torch-Pruning out of the box: (a) ``DependencyGraph().build_dependency``,
   (b) its README flow: ``MetaPruner`` with ``MagnitudeImportance(p=1)``,
   ``pruning_ratio=0.5``, the final head ignored, ``step()``, then a forward
   that must give the original output shapes;
3. analysis time: ``design_spec`` against ``build_dependency``, median of
   ``--repeats`` runs taken in turns after ``gc.collect()`` (one warm-up each).

    .venv/bin/python benchmarks/third_party_zoo.py --timeout 120
    .venv/bin/python benchmarks/third_party_zoo.py --zoo smp diffusers
    .venv/bin/python benchmarks/third_party_zoo.py --models resnet10t yolov8n

Writes ``benchmarks/results/third_party_coverage.md`` and ``.json`` (raw records).
"""
from __future__ import annotations

import argparse
import json
import re
import signal
import statistics
import sys
import tempfile
import time
import traceback
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
for _path in (HERE, HERE.parent / "tests"):  # benchmarks, and the shared test helpers
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import third_party_models as catalog  # noqa: E402  (sets the offline environment first)
import torch  # noqa: E402

OUT_MD = HERE / "results" / "third_party_coverage.md"
OUT_JSON = HERE / "results" / "third_party_coverage.json"
LIBRARIES = ("torch", "torchvision", "timm", "ultralytics", "segmentation-models-pytorch", "diffusers",
             "transformers", "torch-pruning")


def _error(exc: BaseException) -> str:
    """Type and message; where the message is empty (a bare assert), the line that raised."""
    text = str(exc).strip()
    if not text and exc.__traceback__ is not None:
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        text = f"(no message) at {Path(frame.filename).name}:{frame.lineno}: {frame.line}"
    return f"{type(exc).__name__}: {text}"[:1500]


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text and text.strip() else ""


# -- one model, in a worker -------------------------------------------------------


class _Row(dict):
    """A model's record, written to disk after every stage so that a timeout keeps
    what the finished stages found."""

    def __init__(self, path: str, **fields):
        super().__init__(fields)
        self.path = path

    def stage(self, name: str) -> None:
        self["stage"] = name
        self.save()

    def save(self) -> None:
        Path(self.path).write_text(json.dumps(self, default=str))


def _shape_text(inputs: tuple) -> str:
    def one(x) -> str:
        if not isinstance(x, torch.Tensor):
            return repr(x)
        return "×".join(map(str, x.shape)) if x.dim() > 1 else str(tuple(x.shape))

    return ", ".join(map(one, inputs))


def _our_checks(row: _Row, example, expected, densities) -> None:
    from support.rebuild_check import RebuildCheckError, check_rebuild

    from sparsenet_design.tracing.trace import trace

    row.stage("trace")
    start = time.perf_counter()
    try:
        row["tracer"] = trace(example.model, example.inputs).method
        row["traced"], row["trace_s"] = True, time.perf_counter() - start
    except Exception as exc:
        row["traced"], row["trace_error"] = False, _error(exc)
    for strategy in ("min", "max"):
        row.stage(f"rebuild {strategy}")
        try:
            res = check_rebuild(example.build, example.inputs, densities, strategy, strict=True,
                                model=example.model, expected=expected)
            row["results"][strategy] = {"ok": True, **asdict(res)}
        except RebuildCheckError as exc:
            row["results"][strategy] = {"ok": False, "stage": exc.stage, "error": str(exc)}
        except Exception as exc:
            where = traceback.format_exc(limit=-3)
            row["results"][strategy] = {"ok": False, "stage": "crash", "error": f"{_error(exc)}\n{where}"}


def _tp_graph(model, inputs):
    import torch_pruning as tp

    return tp.DependencyGraph().build_dependency(model, example_inputs=inputs, verbose=False)


class StageTimeout(Exception):
    pass


@contextmanager
def _time_limit(seconds: float):
    """Raise StageTimeout in this (the worker's main) thread after ``seconds``: TP's
    pruner runs for minutes on some models, and the worker's own limit would lose the row."""
    def expire(signum, frame):
        raise StageTimeout(f"no result within {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds, 1.0)  # again each second: TP has bare excepts
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _tp_graph_check(row: _Row, example) -> None:
    row.stage("tp graph")
    start = time.perf_counter()
    try:
        _tp_graph(example.model, example.inputs)
        row["tp_graph"] = {"ok": True, "seconds": time.perf_counter() - start}
    except Exception as exc:
        row["tp_graph"] = {"ok": False, "error": _error(exc)}


def _tp_prune_check(row: _Row, example, expected, limit: float) -> None:
    """Torch-Pruning's README flow out of the box, on a fresh copy (it prunes in place)."""
    row.stage("tp prune")
    result: dict = {"ok": False, "stage": "prune"}
    try:
        with _time_limit(limit):
            _tp_prune(example, expected, result)
    except StageTimeout as exc:
        result.update(stage="timeout", error=str(exc))
    except Exception as exc:
        result["error"] = _error(exc)
    row["tp_prune"] = result


def _tp_prune(example, expected, result: dict) -> None:
    import torch_pruning as tp
    from support.rebuild_check import output_shapes, param_count

    model = example.build()  # pruned in place: a fresh copy
    modules = dict(model.named_modules())
    before = param_count(model)
    start = time.perf_counter()
    pruner = tp.pruner.MetaPruner(
        model, example.inputs, importance=tp.importance.MagnitudeImportance(p=1), pruning_ratio=0.5,
        ignored_layers=[modules[p] for p in example.head],
    )
    pruner.step()
    result["seconds"] = time.perf_counter() - start
    result["stage"] = "run"
    model.eval()
    with torch.no_grad():
        got = output_shapes(model(*example.inputs))
    result["params_after"] = param_count(model)
    if got != expected:
        result.update(stage="shapes", error=f"pruned model outputs {got}, original {expected}")
    elif result["params_after"] >= before:
        result.update(stage="params", error=f"pruned model has {result['params_after']} parameters, "
                                            f"original {before}")
    else:
        result.update(ok=True, stage=None)


def _analysis_timing(row: _Row, example, densities, repeats: int) -> None:
    """``design_spec`` against ``build_dependency``, in turns, after one warm-up each."""
    from core_vs_torch_pruning import _timed_together

    from sparsenet_design import design_spec

    row.stage("timing")
    contenders = {}
    if row["traced"]:
        contenders["ours"] = lambda: design_spec(example.model, example.inputs, densities=densities)
    if row["tp_graph"]["ok"]:
        contenders["tp"] = lambda: _tp_graph(example.model, example.inputs)
    for fn in contenders.values():
        try:
            fn()
        except Exception:
            pass  # the timed calls report it
    timed = _timed_together(contenders, repeats)
    row["timing"] = {k: {"seconds": s, "error": e} for k, (s, e) in timed.items()}


def check_model(job: tuple) -> dict:
    """Everything the report needs for one model (runs in a worker process)."""
    import warnings

    from support.rebuild_check import output_shapes, param_count, random_densities

    warnings.filterwarnings("ignore")
    entry, seed, repeats, tp_limit, partial = job
    row = _Row(partial, **catalog.entry_record(entry), traced=False, results={})
    row.stage("build")
    start = time.perf_counter()
    try:
        example = catalog.load(entry)
        with torch.no_grad():
            expected = output_shapes(example.model(*example.inputs))
    except Exception as exc:
        row.update(not_runnable=_error(exc), stage=None)
        return dict(row)
    row.update(input=_shape_text(example.inputs), params=param_count(example.model), head=example.head,
               notes=example.notes, build_s=time.perf_counter() - start)
    densities = random_densities(example.model, seed)
    _our_checks(row, example, expected, densities)
    _tp_graph_check(row, example)
    _analysis_timing(row, example, densities, repeats)
    _tp_prune_check(row, example, expected, tp_limit)
    row.stage(None)
    return dict(row)


# -- verdicts -------------------------------------------------------------------


def rebuilt(row: dict) -> bool:
    return row.get("traced", False) and all(row["results"].get(s, {}).get("ok") for s in ("min", "max"))


def tp_graph_ok(row: dict) -> bool:
    return row.get("tp_graph", {}).get("ok", False)


def tp_prune_ok(row: dict) -> bool:
    return row.get("tp_prune", {}).get("ok", False)


def runnable(row: dict) -> bool:
    return "not_runnable" not in row


def analysis_ratio(row: dict) -> float | None:
    """Ours / TP analysis time, on models both handle (we rebuild, TP builds its graph)."""
    if not (rebuilt(row) and tp_graph_ok(row)):
        return None
    timing = row.get("timing", {})
    ours, tp = timing.get("ours", {}).get("seconds"), timing.get("tp", {}).get("seconds")
    return ours / tp if ours and tp else None


def our_failures(row: dict) -> list[tuple[str, str]]:
    """``(stage, message)`` of everything of ours that failed on this model."""
    out = []
    if row.get("status") in ("timeout", "crashed", "error"):
        out.append((row["status"], f"{row.get('error', '')} (during stage '{row.get('stage')}')"))
    if row.get("trace_error"):
        out.append(("trace", row["trace_error"]))
    for strategy in ("min", "max"):
        res = row["results"].get(strategy)
        if res and not res["ok"]:
            out.append((f"{strategy}/{res['stage']}", res["error"]))
    return out


def tp_failures(row: dict) -> list[tuple[str, str]]:
    out = []
    if row.get("tp_graph") and not tp_graph_ok(row):
        out.append(("tp graph", row["tp_graph"]["error"]))
    if row.get("tp_prune") and not tp_prune_ok(row):
        out.append((f"tp prune/{row['tp_prune']['stage']}", row["tp_prune"].get("error", "")))
    return out


def signature(message: str) -> str:
    """An error message with the model-specific bits blanked, to group failures by cause."""
    text = _first_line(message)
    text = re.sub(r"^\[\w+\] ", "", text)
    text = re.sub(r"'[^']*[.\d][^']*'|\"[^\"]*[.\d][^\"]*\"", "'…'", text)  # module paths, sizes
    text = re.sub(r"\[[\d, ()]*\]|\([\d, ]*\)|torch\.Size\(\[[\d, ]*\]\)", "(…)", text)
    text = re.sub(r"\d+", "N", text)
    return text[:160]


# -- report ---------------------------------------------------------------------


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    parts = []
    for lib in LIBRARIES:
        try:
            parts.append(f"{lib} {version(lib)}")
        except PackageNotFoundError:
            parts.append(f"{lib} not installed")
    import platform

    return ", ".join(parts) + f", Python {platform.python_version()}"


def run_facts() -> dict:
    """Machine, date, library versions and core revision of a run."""
    import datetime

    from zoo_coverage import _core_revision, machine

    return {"machine": machine(), "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
            "versions": _versions(), "core": _core_revision()}


def _header(command: str, wall: float, args, facts: dict) -> list[str]:
    return [
        "# Third-party zoos: coverage of the core and of Torch-Pruning",
        "",
        f"- command: `{command}`",
        f"- machine: {facts['machine']}",
        f"- date: {facts['date']}",
        f"- {facts['versions']}",
        f"- core: {facts['core']}",
        f"- wall time of the run: {wall / 60:.1f} min ({args.workers} worker, 1 thread, {args.timeout:.0f} s "
        "per model)",
        "",
        "Random init, eval mode, nothing downloaded. *Ours* = what the torchvision table checks: random densities "
        f"(seed {args.seed}, uniform in [0.05, 1] per prunable layer), `reconstruct` with `min` and `max`; the "
        "compact model runs on the example inputs with every output shape unchanged and **fewer** parameters, and "
        "its spec saved, loaded and applied to a fresh model gives the same shapes. *TP graph* = Torch-Pruning's "
        "`DependencyGraph().build_dependency(model, example_inputs=inputs)`. *TP prune* = its README flow out of "
        "the box: `MetaPruner(model, inputs, MagnitudeImportance(p=1), pruning_ratio=0.5, "
        "ignored_layers=[final head])`, `step()`, then a forward that must give the original output shapes with "
        "fewer parameters. *Analysis* = `design_spec(model, inputs, densities=...)` against `build_dependency`, "
        f"median of {args.repeats} runs taken in turns, each after `gc.collect()`, after one warm-up each; "
        "the summary's ratio is over the models both handle (ours rebuilt + ran, TP's graph built); ratio < 1 "
        "means ours is faster. Example inputs are the positional forward arguments. Output shapes cover every "
        "tensor in the (nested) output, model-output dicts included; non-tensor objects such as transformers' "
        "KV-cache objects are not compared.",
        "",
    ]


def _summary(rows: list[dict], zoos) -> list[str]:
    lines = [
        "## Summary",
        "",
        "| zoo | models | runnable | ours: traced | ours: rebuilt + ran (min and max) | TP: graph | "
        "TP: README prune ran | ours ∧ TP graph | analysis ours / TP, median (models) | ours faster |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for zoo in list(zoos) + ["all"]:
        sel = [r for r in rows if zoo == "all" or r["zoo"] == zoo]
        if not sel:
            continue
        run = [r for r in sel if runnable(r)]
        ratios = [x for x in map(analysis_ratio, run) if x is not None]
        both = sum(rebuilt(r) and tp_graph_ok(r) for r in run)
        median = f"{statistics.median(ratios):.2f}× ({len(ratios)})" if ratios else "—"
        label = "**all**" if zoo == "all" else zoo
        lines.append(
            f"| {label} | {len(sel)} | {len(run)} | {sum(r.get('traced', False) for r in run)} | "
            f"{sum(map(rebuilt, run))} | {sum(map(tp_graph_ok, run))} | {sum(map(tp_prune_ok, run))} | {both} | "
            f"{median} | {sum(x < 1 for x in ratios)} of {len(ratios)} |"
        )
    lines += ["", "Coverage counts are over the runnable models; timed-out models count as failures."]
    unreached = [r["name"] for r in rows if runnable(r) and "tp_graph" not in r]
    if unreached:
        lines.append(f"Torch-Pruning was not reached (our checks ran out of time first) on: {', '.join(unreached)}.")
    return lines + [""] + _ratios_by_tracer(rows)


def _ratios_by_tracer(rows: list[dict]) -> list[str]:
    """The analysis ratio split by the tracer the core used: the tracers differ in cost."""
    by_tracer: dict[str, list[float]] = {}
    for r in rows:
        ratio = analysis_ratio(r)
        if ratio is not None:
            by_tracer.setdefault(r.get("tracer", "?"), []).append(ratio)
    if not by_tracer:
        return []
    lines = ["Analysis ratio ours / TP by the core's tracer (models both handle):", "",
             "| tracer | models | median | ours faster |", "|---|---:|---:|---:|"]
    for tracer, ratios in sorted(by_tracer.items()):
        lines.append(f"| {tracer} | {len(ratios)} | {statistics.median(ratios):.2f}× | "
                     f"{sum(x < 1 for x in ratios)} |")
    return lines + [""]


def _not_runnable(rows: list[dict], timm_picks: dict) -> list[str]:
    lines = ["## Not runnable in plain PyTorch", "",
             "Families or models that do not build or run a forward pass at all (random init, CPU); not counted "
             "as failures of either tool.", ""]
    found = False
    for family, pick in sorted(timm_picks.items()):
        if pick.get("not_runnable"):
            lines.append(f"- timm family **{family}** ({pick.get('registered', 0)} models): {pick['not_runnable']}")
            found = True
    for r in rows:
        if not runnable(r):
            lines.append(f"- {r['zoo']} **{r['name']}**: {_first_line(r['not_runnable'])}")
            found = True
    skipped = [(f, p) for f, p in sorted(timm_picks.items()) if p.get("model") and p.get("skipped")]
    if skipped:
        lines += ["", "timm families whose smallest models did not build or run (the next smallest was taken):", ""]
        for family, pick in skipped:
            lines += [f"- {family}: " + "; ".join(f"{n}: {e}" for n, e in pick["skipped"].items())]
        found = True
    return lines + ([] if found else ["None."]) + [""]


def _pct(res: dict) -> str:
    return f"{100 * res['params_after'] / res['params_before']:.1f} %" if res.get("ok") else "—"


def _secs(value) -> str:
    return "—" if value is None else f"{value:.2f}"


def _status(row: dict) -> str:
    if row.get("status") in ("timeout", "crashed", "error"):
        return f"{row['status']} ({row.get('stage')})"
    if rebuilt(row):
        return "ok"
    return "not traced" if not row.get("traced") else "FAILED"


def _tp_cell(row: dict) -> tuple[str, str]:
    graph = "ok" if tp_graph_ok(row) else ("—" if "tp_graph" not in row else "failed")
    prune = row.get("tp_prune")
    if prune is None:
        return graph, "—"
    if prune["ok"]:
        return graph, f"ok, {100 * prune['params_after'] / row['params']:.1f} %"
    return graph, f"failed ({prune['stage']})"


def _zoo_section(zoo: str, rows: list[dict]) -> list[str]:
    lines = [
        f"## {zoo}",
        "",
        "| model | family | input | params | tracer | min | max | rebuild s min / max | TP graph | TP prune | "
        "analysis s ours / TP | status |",
        "|---|---|---|---:|---|---:|---:|---:|---|---|---:|---|",
    ]
    for r in rows:
        mn, mx = r["results"].get("min", {}), r["results"].get("max", {})
        graph, prune = _tp_cell(r)
        timing = r.get("timing", {})
        analysis = f"{_secs(timing.get('ours', {}).get('seconds'))} / {_secs(timing.get('tp', {}).get('seconds'))}"
        lines.append(
            f"| {r['name']} | {r['family']} | {r.get('input', '?')} | {r.get('params', 0) / 1e6:.2f}M | "
            f"{r.get('tracer', '—')} | {_pct(mn)} | {_pct(mx)} | {_secs(mn.get('seconds'))} / "
            f"{_secs(mx.get('seconds'))} | {graph} | {prune} | {analysis} | {_status(r)} |"
        )
    lines += ["", f"### {zoo}: failures", ""]
    listed = False
    for r in rows:
        for who, failures in (("ours", our_failures(r)), ("TP", tp_failures(r))):
            for stage, message in failures:
                lines.append(f"- **{r['name']}** {who} {stage}: {_first_line(message)[:600]}")
                listed = True
    return lines + ([] if listed else ["None."]) + [""]


def _signatures(rows: list[dict]) -> list[str]:
    groups: dict[tuple[str, str, str], list[str]] = {}
    for r in rows:
        for who, failures in (("ours", our_failures(r)), ("TP", tp_failures(r))):
            for stage, message in failures:
                stage = stage.split("/", 1)[-1] if who == "ours" else stage
                groups.setdefault((who, stage, signature(message)), []).append(r["name"])
    lines = ["## Failures grouped by error signature", "",
             "Messages with names and numbers blanked; a model failing with min and max counts twice.", "",
             "| who | stage | count | error signature | models |", "|---|---|---:|---|---|"]
    for (who, stage, sig), names in sorted(groups.items(), key=lambda kv: (kv[0][0] != "ours", -len(kv[1]))):
        unique = list(dict.fromkeys(names))
        shown = ", ".join(unique[:6]) + (f", … (+{len(unique) - 6})" if len(unique) > 6 else "")
        lines.append(f"| {who} | {stage} | {len(names)} | {sig.replace('|', '¦')} | {shown} |")
    return lines + [""]


def write_markdown(rows: list[dict], timm_picks: dict, path: Path, command: str, wall: float, args,
                   facts: dict) -> None:
    zoos = [z for z in catalog.ZOOS if any(r["zoo"] == z for r in rows)]
    lines = _header(command, wall, args, facts) + _summary(rows, zoos) + _not_runnable(rows, timm_picks)
    for zoo in zoos:
        lines += _zoo_section(zoo, [r for r in rows if r["zoo"] == zoo and runnable(r)])
    lines += _signatures(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


# -- the run --------------------------------------------------------------------


def _timm_family_of(name: str) -> str | None:
    import timm.models._registry as registry

    return registry._model_to_module.get(name)


def timm_catalog(wanted: set[str] | None, refresh: bool, timeout: float, workers: int) -> dict[str, dict]:
    """The smallest runnable model of each timm family (cached; missing families are
    computed in worker processes). ``wanted`` limits it to some families."""
    from isolated_pool import run_isolated

    picks = {} if refresh else catalog.load_timm_catalog()
    families = [f for f in catalog.timm_families() if wanted is None or f in wanted]
    missing = [f for f in families if f not in picks]
    for i, (family, status, value) in enumerate(
        run_isolated(catalog.pick_timm_family, missing, timeout=timeout, workers=workers), 1
    ):
        if status != "ok":
            value = {"family": family, "not_runnable": f"catalog step {status}: {value}"}
        picks[family] = value
        print(f"[timm catalog {i}/{len(missing)}] {family}: {value.get('model') or value.get('not_runnable')}",
              flush=True)
    if missing:
        catalog.save_timm_catalog({**catalog.load_timm_catalog(), **picks})
    return {f: picks[f] for f in families}


def _selected(entries, names) -> list:
    return [e for e in entries if not names or e.name in names or e.family in names]


def _record_of(job, status: str, value) -> dict:
    entry, partial = job[0], job[-1]
    if status == "ok":
        return value
    try:
        row = json.loads(Path(partial).read_text())
    except (OSError, ValueError):
        row = {**catalog.entry_record(entry), "traced": False, "results": {}}
    row.update(status=status, error=value)
    return row


def _progress(i: int, total: int, row: dict) -> str:
    ours = "ok" if rebuilt(row) else _first_line((our_failures(row) or [("", "not runnable")])[0][1])[:120]
    tp = f"tp graph {'ok' if tp_graph_ok(row) else 'failed'}, prune {'ok' if tp_prune_ok(row) else 'failed'}"
    status = f" [{row['status']} during {row.get('stage')}]" if row.get("status") else ""
    return f"[{i}/{total}] {row['zoo']}/{row['name']}: ours {ours}; {tp}{status}"


def rewrite_report(records: Path, out: Path) -> int:
    data = json.loads(records.read_text())
    args = argparse.Namespace(**data["args"])
    write_markdown(data["models"], data["timm_catalog"], out, data["command"], data["wall_s"], args, data["facts"])
    print(f"wrote {out}")
    return 0


def main(argv=None) -> int:
    from isolated_pool import run_isolated

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zoo", nargs="+", choices=catalog.ZOOS, default=list(catalog.ZOOS))
    ap.add_argument("--models", nargs="+", help="only these model names (or timm family / smp architecture names)")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per model")
    ap.add_argument("--tp-prune-timeout", type=float, default=40.0,
                    help="seconds for TP's README flow on one model (it runs for minutes on some)")
    ap.add_argument("--catalog-timeout", type=float, default=300.0, help="seconds per timm family for the pick")
    ap.add_argument("--refresh-timm-catalog", action="store_true", help="recompute the cached timm picks")
    ap.add_argument("--catalog-only", action="store_true", help="only compute (and cache) the timm picks")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of each analysis")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=OUT_MD)
    ap.add_argument("--json", type=Path, default=OUT_JSON)
    ap.add_argument("--report-only", action="store_true", help="rewrite the markdown from the --json records")
    args = ap.parse_args(argv)
    if args.report_only:
        return rewrite_report(args.json, args.out)
    start = time.perf_counter()
    facts = run_facts()  # the core revision before the run: others may commit meanwhile
    timm_picks = {}
    if "timm" in args.zoo:
        wanted = None
        if args.models:
            wanted = {_timm_family_of(n) or n for n in args.models}
        timm_picks = timm_catalog(wanted, args.refresh_timm_catalog, args.catalog_timeout, args.workers)
    if args.catalog_only:
        return 0
    entries = catalog.timm_entries(timm_picks) + catalog.fixed_entries(args.zoo)
    entries = _selected(entries, args.models)
    scratch = tempfile.TemporaryDirectory(prefix="third-party-zoo-")
    jobs = [(e, args.seed, args.repeats, args.tp_prune_timeout, str(Path(scratch.name) / f"{i}.json"))
            for i, e in enumerate(entries)]
    rows = {}
    for job, status, value in run_isolated(check_model, jobs, timeout=args.timeout, workers=args.workers):
        rows[job[0]] = _record_of(job, status, value)
        print(_progress(len(rows), len(jobs), rows[job[0]]), flush=True)
    wall = time.perf_counter() - start
    ordered = [rows[e] for e in entries]
    command = ("python benchmarks/third_party_zoo.py " + " ".join(argv if argv is not None else sys.argv[1:])).strip()
    write_markdown(ordered, timm_picks, args.out, command, wall, args, facts)
    records = {"command": command, "wall_s": wall, "args": vars(args), "facts": facts, "timm_catalog": timm_picks,
               "models": ordered}
    args.json.write_text(json.dumps(records, indent=1, default=str) + "\n")
    print(f"wrote {args.out} and {args.json} ({wall / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
