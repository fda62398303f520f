"""Time one OBProx-SG step (P and O) on AdaCoF-sized parameters against
``torch.optim.SGD(foreach=True)`` in the same run.

AdaCoF (F=5, d=1) has 59 conv weights holding 21.8M floats; the shapes are
built here from the layout in docs/adacof.md. Variants are timed in interleaved rounds (SGD,
P, O, ... in each round), so a machine busy with other work slows all of them
alike; the ratio to SGD is taken per round and its median reported.

    python benchmarks/bench_obproxsg_step.py [--device cuda] [--rounds 15] [--compiled] [--threads N]

(``compiled=None``, the optimizer's default, compiles for groups this big.)
"""
from __future__ import annotations

import argparse
import datetime
import math
import platform
import statistics
import subprocess
import time

import torch

from sparsenet_design.optim import OBProxSG


def adacof_conv_shapes(F: int = 5) -> list[tuple[int, ...]]:
    shapes: list[tuple[int, ...]] = []

    def basic(c_in: int, c_out: int) -> None:  # three 3×3 convs
        shapes.extend([(c_out, c_in, 3, 3), (c_out, c_out, 3, 3), (c_out, c_out, 3, 3)])

    for c_in, c_out in [(6, 32), (32, 64), (64, 128), (128, 256), (256, 512)]:
        basic(c_in, c_out)
    for c_in, c_out in [(512, 512), (512, 256), (256, 128), (128, 64)]:
        basic(c_in, c_out)
        shapes.append((c_out, c_out, 3, 3))  # upsample block conv
    for _ in range(6):  # Weight1/2, Alpha1/2, Beta1/2 heads
        shapes.extend([(64, 64, 3, 3), (64, 64, 3, 3), (F * F, 64, 3, 3), (F * F, F * F, 3, 3)])
    shapes.extend([(64, 64, 3, 3)] * 3 + [(1, 64, 3, 3)])  # occlusion head
    return shapes


def make_params(shapes, device, seed):
    gen = torch.Generator().manual_seed(seed)
    params = [torch.nn.Parameter((torch.randn(s, generator=gen) * 0.02).to(device)) for s in shapes]
    for p in params:
        p.grad = (torch.randn(p.shape, generator=gen) * 0.01).to(device)
    return params


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--compiled", action="store_true", help="also time compiled=True (torch.compile; compiles first)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    shapes = adacof_conv_shapes()
    numel = sum(math.prod(s) for s in shapes)
    lr, lam = 1e-2, 1e-4  # lr·λ = 1e-6, as the paper's fast setting

    variants = {"SGD(foreach=True)": torch.optim.SGD(make_params(shapes, device, 0), lr=lr, foreach=True)}
    modes = [("eager foreach", False)] + ([("compiled", True)] if args.compiled else [])
    for mode, compiled in modes:
        for step, n_p in (("P-step", 10**9), ("O-step", 0)):
            variants[f"OBProxSG {step}, {mode}"] = OBProxSG(make_params(shapes, device, 0), lr=lr, lam=lam,
                                                            n_p=n_p, compiled=compiled)
    for opt in variants.values():  # warm-up (and compile)
        for _ in range(2):
            opt.step()
    sync(device)

    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, opt in variants.items():
            sync(device)
            start = time.perf_counter()
            opt.step()
            sync(device)
            times[name].append(time.perf_counter() - start)

    sgd = times["SGD(foreach=True)"]
    print(f"# OBProx-SG step vs SGD — {len(shapes)} conv weights, {numel / 1e6:.2f}M floats, device {device}")
    machine = f"{torch.get_num_threads()} threads, CPU {cpu_model()}"
    if device.type == "cuda":
        machine += f", GPU {torch.cuda.get_device_name(device)}"
    print(f"# {datetime.date.today()}, torch {torch.__version__}, {machine}, {args.rounds} interleaved rounds\n")
    print("| variant | median ms | min ms | × SGD (median of per-round ratios) | × SGD (min / min) |")
    print("|---|---:|---:|---:|---:|")
    for name, ts in times.items():
        ratio = statistics.median(t / s for t, s in zip(ts, sgd))
        print(f"| {name} | {1e3 * statistics.median(ts):.2f} | {1e3 * min(ts):.2f} | {ratio:.2f} "
              f"| {min(ts) / min(sgd):.2f} |")


if __name__ == "__main__":
    main()
