"""Synthetic triplets with an exactly known middle frame.

A camera pans over a real photo (the ones that ship with scikit-image) while a
few textured patches cut from another photo move over it in straight lines.
Every displacement from frame 0 to frame 1 is an even number of pixels, so the
middle frame is rendered at integer positions too: it is exact, not
interpolated. Triplets are made on the fly from ``(seed, index)``, so a dataset
of any length costs no disk and is the same on every machine.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .imageio_utils import uint8_to_tensor, write_image

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field", "colorwheel")


@functools.lru_cache(maxsize=1)
def _photos() -> tuple[np.ndarray, ...]:
    import skimage.data

    out = []
    for name in PHOTOS:
        try:
            img = getattr(skimage.data, name)()
        except Exception:  # a photo that needs a download: skip it
            continue
        if img.ndim == 2:
            img = np.stack([img] * 3, -1)
        out.append(np.ascontiguousarray(img[..., :3]))
    if not out:
        raise RuntimeError("none of scikit-image's bundled photos could be loaded")
    return tuple(out)


def _fit(photo: np.ndarray, h: int, w: int) -> np.ndarray:
    """Upscale (nearest, exact integer factor) when a photo is smaller than h×w."""
    factor = max(1, -(-h // photo.shape[0]), -(-w // photo.shape[1]))
    return photo.repeat(factor, 0).repeat(factor, 1) if factor > 1 else photo


def _even_motion(rng: np.random.Generator, max_motion: int) -> np.ndarray:
    """A displacement (dy, dx) frame 0 → frame 1, even integers in [−max, max]."""
    half = max(max_motion // 2, 0)
    return 2 * rng.integers(-half, half + 1, size=2)


def make_triplet(index: int, size: tuple[int, int] = (64, 64), max_motion: int = 8,
                 n_patches: tuple[int, int] = (1, 3), seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frame 0, exact middle frame and frame 1 as (H, W, 3) uint8 arrays."""
    h, w = size
    rng = np.random.default_rng([seed, index])
    photos = _photos()
    m = max_motion
    bg = _fit(photos[rng.integers(len(photos))], h + 2 * m + 1, w + 2 * m + 1)
    pan = _even_motion(rng, m)
    oy = rng.integers(m, bg.shape[0] - h - m + 1)
    ox = rng.integers(m, bg.shape[1] - w - m + 1)

    patches = []
    for _ in range(rng.integers(n_patches[0], n_patches[1] + 1)):
        src = photos[rng.integers(len(photos))]
        ph = int(rng.integers(max(2, h // 6), max(3, h // 2)))
        pw = int(rng.integers(max(2, w // 6), max(3, w // 2)))
        src = _fit(src, ph, pw)
        sy, sx = rng.integers(0, src.shape[0] - ph + 1), rng.integers(0, src.shape[1] - pw + 1)
        texture = src[sy:sy + ph, sx:sx + pw]
        yy, xx = np.mgrid[:ph, :pw]
        ellipse = rng.random() < 0.5
        mask = (((yy + 0.5 - ph / 2) / (ph / 2)) ** 2 + ((xx + 0.5 - pw / 2) / (pw / 2)) ** 2 <= 1) \
            if ellipse else np.ones((ph, pw), bool)
        start = np.array([rng.integers(-ph // 2, h - ph // 2), rng.integers(-pw // 2, w - pw // 2)])
        patches.append((texture, mask, start, _even_motion(rng, 2 * m)))

    frames = []
    for step in (0, 1, 2):  # t = step / 2
        y0, x0 = oy + pan[0] * step // 2, ox + pan[1] * step // 2
        frame = bg[y0:y0 + h, x0:x0 + w].copy()
        for texture, mask, start, motion in patches:
            py, px = start + motion * step // 2
            _paste(frame, texture, mask, int(py), int(px))
        frames.append(frame)
    return frames[0], frames[1], frames[2]


def _paste(frame: np.ndarray, texture: np.ndarray, mask: np.ndarray, top: int, left: int) -> None:
    h, w = frame.shape[:2]
    ph, pw = mask.shape
    y0, x0, y1, x1 = max(top, 0), max(left, 0), min(top + ph, h), min(left + pw, w)
    if y0 >= y1 or x0 >= x1:
        return
    m = mask[y0 - top:y1 - top, x0 - left:x1 - left]
    frame[y0:y1, x0:x1][m] = texture[y0 - top:y1 - top, x0 - left:x1 - left][m]


class SyntheticTriplets(Dataset):
    """``length`` synthetic triplets as dicts like :class:`~sdesign_adacof.data.TripletDataset`."""

    def __init__(self, length: int = 64, size: tuple[int, int] = (64, 64), max_motion: int = 8, seed: int = 0):
        self.length, self.size, self.max_motion, self.seed = length, tuple(size), max_motion, seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.length:
            raise IndexError(index)
        f0, mid, f1 = make_triplet(index, self.size, self.max_motion, seed=self.seed)
        return {"frame0": uint8_to_tensor(f0), "gt": uint8_to_tensor(mid), "frame1": uint8_to_tensor(f1),
                "name": f"synthetic_{index:05d}"}


def write_triplet_folder(root: str | os.PathLike, length: int = 8, size: tuple[int, int] = (64, 64),
                         max_motion: int = 8, seed: int = 0) -> Path:
    """Write synthetic triplets in the UCF101-DVF layout
    (``ROOT/<i>/frame_00.png, frame_01_gt.png, frame_02.png``); returns ROOT."""
    root = Path(root)
    for i in range(length):
        f0, mid, f1 = make_triplet(i, size, max_motion, seed=seed)
        for name, img in (("frame_00", f0), ("frame_01_gt", mid), ("frame_02", f1)):
            write_image(root / f"{i:04d}" / f"{name}.png", img)
    return root


def synthetic_batches(batch_size: int = 8, size: tuple[int, int] = (64, 64), steps: int | None = None,
                      seed: int = 0, max_motion: int = 8):
    """An iterator of stacked batch dicts (fresh triplets every step)."""
    i = 0
    while steps is None or i < steps:
        items = [SyntheticTriplets(10**9, size, max_motion, seed)[i * batch_size + j] for j in range(batch_size)]
        yield {k: torch.stack([it[k] for it in items]) for k in ("frame0", "gt", "frame1")}
        i += 1
