"""Model files for the core CLI (``sdesign prune <file>``) and what they share.

``adacof_model.py`` and ``cdfi_model.py`` are plain model files (see the
core's model-file contract); they import their common pieces from here:
synthetic moving-patch triplets, so they run without any dataset, and the loss.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..models.adacof import charbonnier_mean


def moving_patch_triplets(count: int = 64, size: int = 64, seed: int = 0, max_step: int = 4) -> list:
    """``count`` triplets ``(frame0, middle, frame1)`` (3, size, size) in [0, 1]: a
    textured square moves by the same step from frame0 to the middle frame and on
    to frame1 over a smooth textured background."""
    g = torch.Generator().manual_seed(seed)
    triplets = []
    patch = size // 4
    for _ in range(count):
        background = F.interpolate(torch.rand(1, 3, 8, 8, generator=g), size=(size, size),
                                   mode="bilinear", align_corners=False)[0]
        texture = F.interpolate(torch.rand(1, 3, 4, 4, generator=g), size=(patch, patch),
                                mode="bilinear", align_corners=False)[0]
        step = torch.randint(-max_step, max_step + 1, (2,), generator=g)
        lo, hi = 2 * max_step, size - patch - 2 * max_step
        centre = torch.randint(lo, hi + 1, (2,), generator=g)
        frames = []
        for t in (-1, 0, 1):
            y, x = (centre + t * step).tolist()
            frame = background.clone()
            frame[:, y:y + patch, x:x + patch] = texture
            frames.append(frame)
        triplets.append(tuple(frames))
    return triplets


def interpolation_loss(model, batch, tv_weight: float = 0.01) -> torch.Tensor:
    """Charbonnier reconstruction loss + ``tv_weight`` × the offsets' smoothness term."""
    frame0, middle, frame1 = batch
    prediction, extras = model(frame0, frame1, return_extras=True)
    return charbonnier_mean(prediction - middle) + tv_weight * extras["g_spatial"]


@torch.no_grad()
def psnr_on(model, triplets, batch_size: int = 8) -> float:
    """Mean PSNR (data range 1) of the model's middle frames on ``triplets``."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    scores = []
    for start in range(0, len(triplets), batch_size):
        frame0, middle, frame1 = (torch.stack(t).to(device) for t in zip(*triplets[start:start + batch_size]))
        prediction = model(frame0, frame1).clamp(0, 1)
        mse = (prediction - middle).square().flatten(1).mean(1).clamp_min(1e-10)
        scores += (-10 * torch.log10(mse)).tolist()
    model.train(was_training)
    return sum(scores) / len(scores)
