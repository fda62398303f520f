"""Time the embedded default (`sdesign design examples/digits_cnn.py`) and record
its before/after numbers, for several seeds.

    .venv/bin/python benchmarks/demo_pipeline.py --seeds 0 1 2 --out runs/bench-demo
"""
import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-demo")
    args = parser.parse_args()
    rows = []
    for seed in args.seeds:
        out = args.out / f"seed{seed}"
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "sparsenet_design.cli", "-q", "design",
                        str(ROOT / "examples" / "digits_cnn.py"), "--seed", str(seed), "--out", str(out)],
                       check=True, cwd=ROOT)
        wall = time.perf_counter() - start
        s = json.loads((out / "summary.json").read_text())
        rows.append((seed, wall, s["before"]["params"], s["after"]["params"], s["compression"],
                     s["before"]["metrics"]["accuracy"], s["after"]["metrics"]["accuracy"],
                     s["before"]["latency_ms"], s["after"]["latency_ms"]))
    print("| seed | wall (s) | dense params | compact params | × fewer | dense acc | compact acc | Δ | "
          "latency dense / compact (ms) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for seed, wall, bp, ap, ratio, ba, aa, bl, al in rows:
        print(f"| {seed} | {wall:.0f} | {bp:,} | {ap:,} | {ratio:.2f} | {ba:.2f} | {aa:.2f} | {aa - ba:+.2f} | "
              f"{bl:.3f} / {al:.3f} |")


if __name__ == "__main__":
    main()
