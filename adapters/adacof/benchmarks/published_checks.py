"""Figures behind the published-compatibility work (docs/adacof.md):

1. the frame-average baseline scored by our protocol vs. the published path
   (``torchvision.utils.save_image`` + scikit-image on the read-back PNG), per
   image, and how much the old round-half-to-even rule moved each image;
2. how far the published (truncating) warp is from true bilinear sampling on
   Middlebury crops with smooth offset fields;
3. the cost of truncated sampling on the PyTorch backend.

    python adapters/adacof/benchmarks/published_checks.py [--data ../shared/data] [--ucf-every 1]

CPU only, one thread.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sdesign_adacof.data import find_triplets
from sdesign_adacof.imageio_utils import read_image
from sdesign_adacof.metrics import psnr, quantize_8bit, score_images
from sdesign_adacof.ops.warp import adacof_warp, use_backend


def published_path(f0: Path, f1: Path, gt: Path, out: Path) -> tuple[float, float]:
    from PIL import Image
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity
    from torchvision.transforms.functional import to_tensor
    from torchvision.utils import save_image

    load = lambda p: to_tensor(Image.open(p).convert("RGB"))  # noqa: E731
    a, b, g = load(f0), load(f1), load(gt)
    save_image(((a + b) / 2).unsqueeze(0), out)
    ref, g = load(out).numpy(), g.numpy()
    return (peak_signal_noise_ratio(image_true=g, image_test=ref, data_range=1),
            structural_similarity(g.transpose(1, 2, 0), ref.transpose(1, 2, 0), data_range=1, channel_axis=-1))


def protocol(kind: str, root: Path, every: int) -> None:
    triplets = find_triplets(kind, root)[::every]
    dp, ds, moved, ours_p, ours_s, ours_g = [], [], [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for t in triplets:
            a, b = read_image(t.frame0), read_image(t.frame1)
            gt = read_image(t.gt, torch.float64)
            pred = (a + b) / 2
            row = score_images(gt, pred)[0]
            p, s = published_path(t.frame0, t.frame1, t.gt, Path(tmp) / "o.png")
            half_even = (pred.double().clamp(0, 1) * 255).round() / 255  # the rule used before
            dp.append(abs(row["psnr"] - p))
            ds.append(abs(row["ssim"] - s))
            moved.append(abs(row["psnr"] - psnr(gt, half_even).item()))
            ours_p.append(row["psnr"])
            ours_s.append(row["ssim"])
            ours_g.append(row["ssim_gaussian"])
    print(f"{kind} ({len(triplets)} triplets): frame average PSNR {np.mean(ours_p):.4f} dB, SSIM {np.mean(ours_s):.5f}, "
          f"SSIM (Gaussian) {np.mean(ours_g):.5f}; |ours - save_image+skimage| max {max(dp):.2e} dB, "
          f"SSIM {max(ds):.2e}; round-half-even vs save_image rounding: max {max(moved):.4f} dB, "
          f"mean {np.mean(moved):.4f} dB")


def smooth_field(shape, amplitude: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(shape[0], shape[1], 4, 4, generator=g) * amplitude
    return F.interpolate(coarse, size=shape[2:], mode="bicubic", align_corners=False)


def warp_gap(root: Path, kernel_size: int = 5, dilation: int = 1, crop: int = 128) -> None:
    taps = kernel_size * kernel_size
    gaps = []
    for i, t in enumerate(find_triplets("middlebury", root)):
        img = read_image(t.frame0).unsqueeze(0)
        h, w = img.shape[-2:]
        img = img[..., (h - crop) // 2:(h - crop) // 2 + crop, (w - crop) // 2:(w - crop) // 2 + crop]
        shape = (1, taps, crop, crop)
        weight = torch.softmax(smooth_field(shape, 2.0, 3 * i), 1)
        alpha, beta = smooth_field(shape, 3.0, 3 * i + 1), smooth_field(shape, 3.0, 3 * i + 2)
        exact = adacof_warp(img, weight, alpha, beta, dilation)
        published = adacof_warp(img, weight, alpha, beta, dilation, truncate=True)
        gaps.append(psnr(quantize_8bit(exact), quantize_8bit(published)).item())
    print(f"warp, truncating vs bilinear (F={kernel_size}, d={dilation}, {crop}x{crop} Middlebury crops, smooth "
          f"offsets of a few px): PSNR between them {min(gaps):.1f}-{max(gaps):.1f} dB (median {np.median(gaps):.1f})")


def warp_cost() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 63, 256, 256, generator=g)
    w = torch.softmax(torch.randn(1, 121, 236, 236, generator=g), 1)
    a, b = torch.randn(1, 121, 236, 236, generator=g) * 3, torch.randn(1, 121, 236, 236, generator=g) * 3
    for backend, truncate in (("torch", False), ("reference", False), ("torch", True)):
        with use_backend(backend):
            adacof_warp(x, w, a, b, 2, truncate=truncate)
            start = time.perf_counter()
            adacof_warp(x, w, a, b, 2, truncate=truncate)
            took = time.perf_counter() - start
        print(f"warp forward, backend {backend}, truncate={truncate}: {took:.2f} s "
              "(63 channels, 236x236, F=11, d=2, pre-padded, 1 CPU thread)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[3] / ".." / "shared" / "data")
    ap.add_argument("--ucf-every", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(1)
    protocol("middlebury", args.data / "middlebury_others", 1)
    protocol("ucf101", args.data / "ucf101", args.ucf_every)
    warp_gap(args.data / "middlebury_others")
    warp_cost()


if __name__ == "__main__":
    main()
