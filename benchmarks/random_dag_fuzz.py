"""Fuzz ``reconstruct`` with random DAG networks (≥ 10,000 by default).

Each seed gives one network from ``tests/support/strategies.py`` (convs, grouped /
depthwise / transposed convs, BN, ReLU, residual adds, concats, chunk/split,
pooling, Linear heads, several outputs) with random densities; the property of
``tests/support/rebuild_check.py`` must hold for ``min`` and ``max``: reconstruct
succeeds, the compact model runs with unchanged output shapes and no more
parameters, and the saved spec applied to a fresh copy gives the same model.

Also counted (not a failure of the property): examples whose first rebuild did
not run, so that the core's verification had to pin modules to repair it;
these point at channel rules that are wrong or missing.

    .venv/bin/python benchmarks/random_dag_fuzz.py --count 10000 --workers 2

Writes ``benchmarks/results/core_fuzz.md``.
"""
from __future__ import annotations

import argparse
import collections
import multiprocessing as mp
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
for p in (HERE, HERE.parent / "tests"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def check_seed(seed: int) -> dict:
    from support.rebuild_check import RebuildCheckError, check_rebuild
    from support.strategies import build_net, random_recipe

    recipe = random_recipe(seed)
    out = {"seed": seed, "ops": len(recipe.ops), "outputs": len(recipe.outputs), "failures": [], "repaired": []}
    for strategy in ("min", "max"):
        try:
            res = check_rebuild(lambda: build_net(recipe), recipe.example_input(), recipe.densities, strategy)
            if res.repaired:
                out["repaired"].append(strategy)
            out.setdefault("ratio", {})[strategy] = res.ratio
        except RebuildCheckError as exc:
            out["failures"].append((strategy, exc.stage, str(exc)[:500]))
        except Exception as exc:  # the check itself crashed: also a failure
            out["failures"].append((strategy, "crash", f"{type(exc).__name__}: {exc}"[:500]))
    return out


def write_markdown(path: Path, command: str, results: list[dict], wall: float, workers: int) -> None:
    from zoo_coverage import header

    n = len(results)
    failed = [r for r in results if r["failures"]]
    repaired = [r for r in results if r["repaired"]]
    multi = [r for r in results if r["outputs"] > 1]
    repaired_multi = [r for r in repaired if r["outputs"] > 1]
    stages = collections.Counter(stage for r in failed for _, stage, _ in r["failures"])
    ops = sorted(r["ops"] for r in results)
    ratios = {s: sorted(r["ratio"][s] for r in results if s in r.get("ratio", {})) for s in ("min", "max")}
    lines = header("Core reconstruction: random DAG fuzz", command)
    lines += [
        "Networks from `tests/support/strategies.py` (`random_recipe(seed)`, seeds "
        f"{results[0]['seed'] if results else 0}…{results[-1]['seed'] if results else 0}; input 2×3×8×8, widths "
        "≤ 12, up to 14 ops + residual chains), random densities in [0.01, 1] (10 % exactly 1). Property, for "
        "`min` and `max`: `reconstruct` succeeds, the compact model runs, output shapes unchanged, parameters ≤ "
        "original, spec save → load → `apply_spec(fresh copy)` gives the same tensor and output shapes.",
        "",
        "| examples | failures | time | per example | workers |",
        "|---:|---:|---:|---:|---:|",
        f"| {n} | {len(failed)} | {wall / 60:.1f} min | {wall * workers / max(n, 1):.2f} s (1 thread) | {workers} |",
        "",
        f"Ops per network: median {ops[n // 2] if ops else 0}, max {ops[-1] if ops else 0}; "
        f"{len(multi)} networks have several outputs; {sum(r.get('ratio', {}).get('min', 1) < 1 for r in results)} "
        "got fewer parameters with `min`. Median compact/original parameters: "
        + ", ".join(f"{s} {100 * v[len(v) // 2]:.1f} %" for s, v in ratios.items() if v)
        + ".",
        "",
        f"Examples where the core's first rebuild did not run and its verification pinned modules to repair "
        f"it: {len(repaired)} ({len(repaired_multi)} of them return several outputs, out of {len(multi)} such "
        "networks)."
        + (" These pass the property but lose compression; a repair means a channel rule is wrong or missing."
           if repaired else ""),
        "",
    ]
    if stages:
        lines += ["Failures by stage: " + ", ".join(f"{k}: {v}" for k, v in stages.most_common()), ""]
        lines += ["First failures (reproduce with `build_net(random_recipe(seed))`):", ""]
        for r in failed[:20]:
            for strategy, stage, msg in r["failures"]:
                lines.append(f"- seed {r['seed']} `{strategy}` [{stage}]: {msg}".replace("\n", " "))
        lines.append("")
    if repaired:
        lines += ["Seeds that needed a repair (first 20): " + ", ".join(str(r["seed"]) for r in repaired[:20]), ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=10_000)
    ap.add_argument("--start", type=int, default=0, help="first seed")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "core_fuzz.md")
    args = ap.parse_args(argv)
    command = "python benchmarks/random_dag_fuzz.py " + " ".join(argv if argv is not None else sys.argv[1:])
    seeds = range(args.start, args.start + args.count)
    results: list[dict] = []
    start = time.perf_counter()
    with mp.get_context("spawn").Pool(args.workers, initializer=_init_worker) as pool:
        for i, res in enumerate(pool.imap_unordered(check_seed, seeds, chunksize=10), 1):
            results.append(res)
            for strategy, stage, msg in res["failures"]:
                print(f"FAIL seed {res['seed']} {strategy} [{stage}] {msg[:300]}", flush=True)
            if i % 500 == 0 or i == len(seeds):
                failed = sum(bool(r["failures"]) for r in results)
                print(f"{i}/{len(seeds)} examples, {failed} failing, {time.perf_counter() - start:.0f} s", flush=True)
                results.sort(key=lambda r: r["seed"])
                write_markdown(args.out, command.strip(), results, time.perf_counter() - start, args.workers)
    wall = time.perf_counter() - start
    results.sort(key=lambda r: r["seed"])
    write_markdown(args.out, command.strip(), results, wall, args.workers)
    print(f"wrote {args.out}")
    return 1 if any(r["failures"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
