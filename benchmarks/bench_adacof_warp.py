"""Forward+backward time of the AdaCoF warp op, per backend, vs its memory floor.

    python benchmarks/bench_adacof_warp.py                      # 1280x720, F=11, d=2, batch 1
    python benchmarks/bench_adacof_warp.py --size 640x360 --repeats 5

Backends: ``torch`` (grid_sample PyTorch path), ``reference`` (exact
gather/scatter PyTorch path), and on CUDA ``cupy`` (the CUDA kernels). The
memory floor is the bytes the op must move — read input, weight, alpha, beta
and write the output (forward); read grad_output, input, weight, alpha, beta
and write the four gradients, the input gradient read-modify-written
(backward) — divided by the device's bandwidth, measured here with a large
device-to-device copy (read + write).
"""
from __future__ import annotations

import argparse
import platform
import time

import torch

from sdesign_adacof.ops.cupy_kernels import cupy_available
from sdesign_adacof.ops.warp import adacof_warp, use_backend


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def copy_bandwidth(device: torch.device, mib: int = 1024) -> float:
    """Bytes per second of a large tensor copy (counting read + write)."""
    src = torch.empty(mib * 2**20 // 4, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    dst.copy_(src)
    sync(device)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        dst.copy_(src)
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * src.numel() * 4 / best


def floor_bytes(b: int, c: int, h: int, w: int, taps: int, itemsize: int = 4) -> tuple[int, int]:
    image, kernels = b * c * h * w, b * taps * h * w
    forward = (image + 3 * kernels + image) * itemsize
    backward = (image + image + 3 * kernels + 3 * kernels + 2 * image) * itemsize
    return forward, backward


def make_inputs(b, c, h, w, k, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, c, h, w, generator=g)
    weight = torch.softmax(torch.randn(b, k * k, h, w, generator=g), dim=1)
    alpha = torch.randn(b, k * k, h, w, generator=g) * 4
    beta = torch.randn(b, k * k, h, w, generator=g) * 4
    return [t.to(device).requires_grad_() for t in (x, weight, alpha, beta)]


def time_backend(backend, tensors, dilation, device, repeats, warmup):
    grad = torch.randn(tensors[0].shape, device=device)
    with use_backend(backend):
        times = {"forward": [], "backward": []}
        for i in range(warmup + repeats):
            for t in tensors:
                t.grad = None
            sync(device)
            start = time.perf_counter()
            out = adacof_warp(*tensors, dilation)
            sync(device)
            mid = time.perf_counter()
            out.backward(grad)
            sync(device)
            end = time.perf_counter()
            if i >= warmup:
                times["forward"].append(mid - start)
                times["backward"].append(end - mid)
    return {k: min(v) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1280x720", help="WIDTHxHEIGHT")
    parser.add_argument("--kernel-size", type=int, default=11)
    parser.add_argument("--dilation", type=int, default=2)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--backends", default=None, help="comma list of torch, reference, cupy")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    device = torch.device(args.device)
    on_gpu = device.type == "cuda"
    repeats = args.repeats or (20 if on_gpu else 1)
    backends = args.backends.split(",") if args.backends else (
        (["cupy"] if cupy_available() else []) + ["torch"] + ([] if on_gpu else ["reference"]))
    if on_gpu:
        machine = torch.cuda.get_device_name(device)
    else:
        machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    print(f"# AdaCoF warp, {width}x{height}, F={args.kernel_size}, d={args.dilation}, "
          f"C={args.channels}, batch {args.batch}, fp32, {device} ({machine}), torch {torch.__version__}")
    tensors = make_inputs(args.batch, args.channels, height, width, args.kernel_size, device)
    fwd_bytes, bwd_bytes = floor_bytes(args.batch, args.channels, height, width, args.kernel_size ** 2)
    bandwidth = copy_bandwidth(device, 1024 if on_gpu else 256)
    fwd_floor, bwd_floor = fwd_bytes / bandwidth, bwd_bytes / bandwidth
    print(f"measured copy bandwidth: {bandwidth / 1e9:.1f} GB/s; floor: forward {fwd_bytes / 1e9:.2f} GB "
          f"= {fwd_floor * 1e3:.2f} ms, backward {bwd_bytes / 1e9:.2f} GB = {bwd_floor * 1e3:.2f} ms")
    print("| backend | forward ms | backward ms | fwd+bwd ms | × floor |")
    print("|---|---|---|---|---|")
    for backend in backends:
        t = time_backend(backend, tensors, args.dilation, device, repeats, warmup=1 if (on_gpu or backend == "torch") else 0)
        total = t["forward"] + t["backward"]
        print(f"| {backend} | {t['forward'] * 1e3:.1f} | {t['backward'] * 1e3:.1f} | {total * 1e3:.1f} | "
              f"{total / (fwd_floor + bwd_floor):.1f} |")


if __name__ == "__main__":
    main()
