"""Full-model inference time of AdaCoF and CDFI (the paper: AdaCoF 61.6 ms for
one 1280x720 frame on an RTX 6000).

    python benchmarks/bench_adacof_models.py                         # 1280x720, fp32 (+ autocast on CUDA)
    python benchmarks/bench_adacof_models.py --size 320x192 --models adacof,cdfi

Models: ``adacof`` = AdaCoF(F=5, d=1) (21.84M), ``adacof+`` = AdaCoF(11, 2),
``cdfi`` = CDFI() (published compact U-Net, F=11, d=2). Random weights: speed
does not depend on them. On CUDA the warp uses the CuPy kernels when CuPy is
installed (the ``warp backend`` column says which), and the models also run
under bf16 and fp16 autocast (the warp itself stays float32).
"""
from __future__ import annotations

import argparse
import contextlib
import platform
import time

import torch

from sdesign_adacof import CDFI, AdaCoF
from sdesign_adacof.ops.cupy_kernels import cupy_available

BUILDERS = {
    "adacof": lambda: AdaCoF(5, 1),
    "adacof+": lambda: AdaCoF(11, 2),
    "cdfi": lambda: CDFI(),
}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def time_model(model, frames, device, repeats, warmup, autocast_dtype=None):
    ctx = torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype else contextlib.nullcontext()
    best = float("inf")
    with ctx:
        for i in range(warmup + repeats):
            sync(device)
            start = time.perf_counter()
            model(*frames)
            sync(device)
            if i >= warmup:
                best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1280x720", help="WIDTHxHEIGHT")
    parser.add_argument("--models", default="adacof,cdfi")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    device = torch.device(args.device)
    on_gpu = device.type == "cuda"
    repeats = args.repeats or (20 if on_gpu else 1)
    machine = torch.cuda.get_device_name(device) if on_gpu else \
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    warp = "cupy" if (on_gpu and cupy_available()) else "torch"
    print(f"# AdaCoF / CDFI inference, {width}x{height}, batch 1, {device} ({machine}), torch {torch.__version__}")
    print("| model | params (M) | precision | warp backend | ms / frame |")
    print("|---|---|---|---|---|")
    g = torch.Generator().manual_seed(0)
    frames = tuple(torch.rand(1, 3, height, width, generator=g).to(device) for _ in range(2))
    for name in args.models.split(","):
        model = BUILDERS[name]().to(device).eval()
        params = sum(p.numel() for p in model.parameters()) / 1e6
        precisions = [("fp32", None)]
        if on_gpu:
            precisions += [("bf16 autocast", torch.bfloat16), ("fp16 autocast", torch.float16)]
        for label, dtype in precisions:
            ms = time_model(model, frames, device, repeats, warmup=1 if on_gpu else 0, autocast_dtype=dtype) * 1e3
            print(f"| {name} | {params:.2f} | {label} | {warp} | {ms:.1f} |")
        del model


if __name__ == "__main__":
    main()
