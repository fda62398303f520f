"""Video interpolation throughput (output frames/s) at 854×480, ×2, on the
frames of ../shared/data/video_frames (or synthetic 854×480 frames).

    python benchmarks/bench_video_throughput.py [--frames 5] [--device cpu|cuda] [--models average,cdfi,adacof]

Untrained weights (speed does not depend on them). The frame-average baseline
runs in the same process for reference.
"""
from __future__ import annotations

import argparse
import platform
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

from sdesign_adacof.imageio_utils import open_frames
from sdesign_adacof.interpolate import Interpolator, build_builtin, count_parameters, interpolate_sequence

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "video_frames"


def frames(n: int) -> list[np.ndarray]:
    if DATA.is_dir():
        return [f for f, _ in zip(open_frames(DATA), range(n))]
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (480, 854, 3), dtype=np.uint8) for _ in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--models", default="average,cdfi,adacof")
    ap.add_argument("--amp", action="store_true")
    args = ap.parse_args()
    src = frames(args.frames)
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model_name = next((l.split(":", 1)[1].strip() for l in cpu.splitlines() if l.startswith("Model name")), "?")
    print(f"# {platform.node()} {model_name}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"device {args.device}, {time.strftime('%Y-%m-%d')}")
    print("| model | params | input frames | output frames | seconds | output frames/s |")
    print("|---|---|---|---|---|---|")
    for name in args.models.split(","):
        torch.manual_seed(0)
        net = build_builtin(name)
        interp = Interpolator(net, args.device, args.amp)
        list(interpolate_sequence(interp, src[:2], 2))  # warm-up
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        n = sum(1 for _ in interpolate_sequence(interp, src, 2))
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter() - start
        print(f"| {name} | {count_parameters(net) / 1e6:.2f}M | {len(src)} | {n} | {t:.2f} | {n / t:.3f} |")


if __name__ == "__main__":
    main()
