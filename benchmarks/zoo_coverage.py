"""Coverage of ``reconstruct`` on the torchvision zoo and a few hand-written nets.

For every torchvision classification model, every segmentation model, the
backbone of every detection model, and the models of ``tests/support/zoo_models.py``:
random weights, eval mode, the smallest example input the model accepts (of
64, 96, 128, 224, 320 pixels), seeded random densities for every prunable
layer; then ``reconstruct`` with ``min`` and ``max`` and the checks of
:func:`rebuild_check.check_rebuild` (compact runs, output shapes unchanged,
fewer parameters, spec save → load → apply to a fresh model gives the same
shapes). Each model runs in a worker process with a time limit.

    .venv/bin/python benchmarks/zoo_coverage.py            # everything, 2 workers
    .venv/bin/python benchmarks/zoo_coverage.py --models resnet18 unet

Writes ``benchmarks/results/core_coverage.md`` and prints a rich table.
"""
from __future__ import annotations

import argparse
import datetime
import platform
import subprocess
import sys
import time
import traceback
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
for _path in (HERE, HERE.parent / "tests"):  # benchmarks, and the shared test helpers
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

SIZES = (64, 96, 128, 224, 320)
FAMILIES = ("classification", "segmentation", "detection", "custom")


# -- the catalog --------------------------------------------------------------


def zoo_names(families=FAMILIES) -> list[tuple[str, str]]:
    """``(family, name)`` of every model in the given families."""
    import torchvision

    from support.zoo_models import ZOO_MODELS

    out = []
    if "classification" in families:
        out += [("classification", n) for n in torchvision.models.list_models(module=torchvision.models)]
    if "segmentation" in families:
        out += [("segmentation", n) for n in torchvision.models.list_models(module=torchvision.models.segmentation)]
    if "detection" in families:
        out += [("detection", n) for n in torchvision.models.list_models(module=torchvision.models.detection)]
    if "custom" in families:
        out += [("custom", n) for n in ZOO_MODELS]
    return out


def build(family: str, name: str) -> nn.Module:
    """A fresh model with random weights in eval mode (detection: its backbone + FPN)."""
    import torchvision

    from support.zoo_models import ZOO_MODELS

    torch.manual_seed(0)
    if family == "custom":
        return ZOO_MODELS[name][0]().eval()
    if family == "classification":
        return torchvision.models.get_model(name, weights=None).eval()
    if family == "segmentation":
        return torchvision.models.get_model(name, weights=None, weights_backbone=None).eval()
    if family == "detection":
        return torchvision.models.get_model(name, weights=None, weights_backbone=None).backbone.eval()
    raise ValueError(family)


def _runs_on(model: nn.Module, x: torch.Tensor) -> bool:
    from sparsenet_design.tracing.trace import meta_copy

    try:
        with torch.no_grad():
            meta_copy(model)(x.to("meta"))
        return True
    except Exception:
        return False


def example_input(family: str, name: str, model: nn.Module | None = None) -> torch.Tensor:
    """The smallest 1×3×S×S input (S in SIZES) the model runs on (tried on the meta device)."""
    if family == "custom":
        from support.zoo_models import ZOO_MODELS

        return torch.randn(*ZOO_MODELS[name][1], generator=torch.Generator().manual_seed(0))
    model = model if model is not None else build(family, name)
    for s in SIZES:
        x = torch.randn(1, 3, s, s, generator=torch.Generator().manual_seed(0))
        if _runs_on(model, x):
            return x
    return torch.randn(1, 3, SIZES[-1], SIZES[-1], generator=torch.Generator().manual_seed(0))


# -- one model ----------------------------------------------------------------


def check_model(job: tuple[str, str, int]) -> dict:
    """Everything the coverage table needs for one model (runs in a worker)."""
    from support.rebuild_check import RebuildCheckError, check_rebuild, output_shapes, param_count, random_densities

    from sparsenet_design.errors import TraceError
    from sparsenet_design.tracing.trace import trace

    family, name, seed = job
    row: dict = {"family": family, "name": name, "traced": False, "results": {}}
    start = time.perf_counter()
    model = build(family, name)
    x = example_input(family, name, model)
    row["input"] = "×".join(map(str, x.shape))
    row["params"] = param_count(model)
    row["build_s"] = time.perf_counter() - start
    with torch.no_grad():
        expected = output_shapes(model(x))
    start = time.perf_counter()
    try:
        traced = trace(model, (x,))
    except TraceError as exc:
        row["trace_error"] = str(exc)
        return row
    except Exception as exc:  # a raw error from the tracer is a finding in itself
        row["trace_error"] = f"raw {type(exc).__name__} (not a TraceError): {exc}"
        return row
    row["trace_s"] = time.perf_counter() - start
    row["traced"] = True
    row["tracer"] = traced.method
    del traced
    densities = random_densities(model, seed)
    for strategy in ("min", "max"):
        try:
            res = check_rebuild(
                lambda: build(family, name), (x,), densities, strategy, strict=True, model=model, expected=expected
            )
            row["results"][strategy] = {"ok": True, **asdict(res)}
        except RebuildCheckError as exc:
            row["results"][strategy] = {"ok": False, "stage": exc.stage, "error": str(exc)}
        except Exception as exc:
            tb = traceback.format_exc(limit=-3)
            row["results"][strategy] = {"ok": False, "stage": "crash", "error": f"{type(exc).__name__}: {exc}\n{tb}"}
    return row


def rebuilt(row: dict) -> bool:
    return row["traced"] and all(row["results"].get(s, {}).get("ok") for s in ("min", "max"))


def failure_reason(row: dict) -> str | None:
    if row.get("status", "ok") != "ok":
        return f"{row['status']}: {row.get('error', '')}"
    if not row["traced"]:
        return "not traced: " + row.get("trace_error", "")
    bad = [(s, r) for s, r in row["results"].items() if not r["ok"]]
    if not bad:
        return None
    return "; ".join(f"{s}: {r['error']}" for s, r in bad)


# -- reporting ----------------------------------------------------------------


def machine() -> str:
    cpu = platform.processor() or ""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        cpu = next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), cpu)
    except Exception:
        pass
    import os

    gpu = "GPU" if torch.cuda.is_available() else "no GPU"
    return f"{os.cpu_count()}-core CPU ({cpu}), {gpu}"


def header(title: str, command: str) -> list[str]:
    import torchvision

    return [
        f"# {title}",
        "",
        f"- command: `{command}`",
        f"- machine: {machine()}",
        f"- date: {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}",
        f"- torch {torch.__version__}, torchvision {torchvision.__version__}, Python {platform.python_version()}",
        f"- core: {_core_revision()}",
        "",
    ]


def _core_revision() -> str:
    """Commit of the checkout, and whether the core has uncommitted edits."""
    root = HERE.parent
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "sparsenet_design"], cwd=root, capture_output=True,
                               text=True, timeout=10).stdout.strip()
    except Exception:
        return "unknown"
    return f"commit {rev}" + (" + uncommitted edits in sparsenet_design/" if dirty else "")


def _pct(res: dict) -> str:
    return f"{100 * res['params_after'] / res['params_before']:.1f} %" if res.get("ok") else "—"


def _secs(res: dict) -> str:
    return f"{res['seconds']:.2f}" if res.get("ok") else "—"


def write_markdown(rows: list[dict], path: Path, command: str, seed: int, wall: float) -> None:
    lines = header("Core reconstruction: zoo coverage", command)
    lines += [
        f"Random densities (seed {seed}, uniform in [0.05, 1] per prunable layer), `reconstruct` with `min` and "
        "`max`. *Rebuilt + ran* means, for both strategies: the compact model runs on the example input, every "
        "output shape is unchanged, the parameter count goes down, and the spec saved to JSON, loaded and applied "
        "to a freshly built model gives a model with the same tensor and output shapes. "
        f"Wall time of the whole run: {wall / 60:.1f} min.",
        "",
        "## Summary",
        "",
        "| family | tried | traced | rebuilt + ran |",
        "|---|---:|---:|---:|",
    ]
    for fam in FAMILIES + ("all",):
        sel = [r for r in rows if fam == "all" or r["family"] == fam]
        if not sel:
            continue
        traced = sum(r["traced"] for r in sel)
        ok = sum(rebuilt(r) for r in sel)
        name = f"**{fam}**" if fam == "all" else fam
        lines.append(f"| {name} | {len(sel)} | {traced} | {ok} |")
    lines += [
        "",
        "## Per model",
        "",
        "Params: original count; min/max: compact params as % of the original; time: `reconstruct` seconds "
        "(trace + channel graph + widths + rebuild + verification run); repaired: modules the core had to pin "
        "after its first rebuild did not run.",
        "",
        "| model | family | input | tracer | params | min | max | time min / max (s) | repaired | status |",
        "|---|---|---|---|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        res = r.get("results", {})
        mn, mx = res.get("min", {}), res.get("max", {})
        repaired = sorted(set(mn.get("repaired", []) + mx.get("repaired", [])))
        status = "ok" if rebuilt(r) else ("not traced" if not r.get("traced") else "FAILED")
        if r.get("status", "ok") != "ok":
            status = r["status"]
        lines.append(
            f"| {r['name']} | {r['family']} | {r.get('input', '?')} | {r.get('tracer', '—')} | "
            f"{r.get('params', 0) / 1e6:.2f}M | {_pct(mn)} | {_pct(mx)} | {_secs(mn)} / {_secs(mx)} | "
            f"{', '.join(repaired) or ''} | {status} |"
        )
    failures = [(r, failure_reason(r)) for r in rows]
    failures = [(r, why) for r, why in failures if why]
    lines += ["", "## Failures", ""]
    if not failures:
        lines.append("None.")
    for r, why in failures:
        lines.append(f"- **{r['name']}** ({r['family']}): {why.strip()}".replace("\n", " "))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def print_table(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="reconstruct coverage")
    for col in ("model", "family", "input", "tracer", "params", "min", "max", "time (s)", "status"):
        table.add_column(col)
    for r in rows:
        res = r.get("results", {})
        mn, mx = res.get("min", {}), res.get("max", {})
        status = "[green]ok" if rebuilt(r) else f"[red]{(failure_reason(r) or '')[:60]}"
        table.add_row(
            r["name"], r["family"], r.get("input", "?"), r.get("tracer", "—"), f"{r.get('params', 0) / 1e6:.2f}M",
            _pct(mn), _pct(mx), f"{_secs(mn)} / {_secs(mx)}", status,
        )
    Console(width=200).print(table)


def main(argv=None) -> int:
    from isolated_pool import run_isolated

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    ap.add_argument("--models", nargs="+", help="only these model names")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per model")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "core_coverage.md")
    args = ap.parse_args(argv)
    names = [(f, n) for f, n in zoo_names(args.families) if not args.models or n in args.models]
    jobs = [(f, n, args.seed) for f, n in names]
    rows: dict[tuple[str, str], dict] = {}
    start = time.perf_counter()
    for job, status, value in run_isolated(check_model, jobs, timeout=args.timeout, workers=args.workers):
        family, name, _ = job
        if status == "ok":
            row = value
        else:
            row = {"family": family, "name": name, "traced": False, "results": {}, "status": status, "error": value}
        rows[(family, name)] = row
        print(f"[{len(rows)}/{len(jobs)}] {family}/{name}: {'ok' if rebuilt(row) else failure_reason(row)[:200]}",
              flush=True)
    wall = time.perf_counter() - start
    ordered = [rows[(f, n)] for f, n in names]
    print_table(ordered)
    command = "python benchmarks/zoo_coverage.py " + " ".join(argv if argv is not None else sys.argv[1:])
    write_markdown(ordered, args.out, command.strip(), args.seed, wall)
    print(f"wrote {args.out}")
    return 0 if all(rebuilt(r) for r in ordered) else 1


if __name__ == "__main__":
    sys.exit(main())
