"""Frame-interpolation datasets: triplets (frame0, ground-truth middle, frame1).

Finders turn a dataset folder into a list of :class:`Triplet` paths and fail with
a message listing the layout they expected; :class:`TripletDataset` reads them
as tensors with optional training augmentation (the paper's random horizontal
and vertical flips and temporal-order swap, plus random crops).

Layouts:

* Vimeo-90K triplets: ``ROOT/tri_trainlist.txt``, ``ROOT/tri_testlist.txt``,
  ``ROOT/sequences/00001/0001/im1.png, im2.png, im3.png``.
* Middlebury "other": ``ROOT/input/<seq>/frame10.png, frame11.png`` and
  ``ROOT/gt/<seq>/frame10i11.png`` (the official ``other-data`` /
  ``other-gt-interp`` folder names work too).
* UCF101-DVF and DAVIS-style: ``ROOT/<id>/frame_00.png, frame_01_gt.png, frame_02.png``.
* Any folder of triplets: every sub-folder (at any depth) holding exactly three
  images; sorted by name they are frame0, middle, frame1.
* Consecutive frames (a video's frames in a folder): triplets (i, i+1, i+2).
"""
from __future__ import annotations

import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from sparsenet_design.plugin_api import SdesignError

from .imageio_utils import image_files, read_image

DATASET_KINDS = ("vimeo", "middlebury", "ucf101", "davis", "folder")


class DatasetError(SdesignError):
    """A dataset folder is missing or not laid out as expected."""


@dataclass(frozen=True)
class Triplet:
    name: str
    frame0: Path
    gt: Path
    frame1: Path


def _require_dir(root: Path, kind: str, expected: str) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{kind} dataset folder {root} does not exist. Expected layout: {expected}")
    return root


def _missing(triplet: Triplet) -> list[Path]:
    return [p for p in (triplet.frame0, triplet.gt, triplet.frame1) if not p.is_file()]


def _check_complete(triplets: list[Triplet], root: Path, kind: str, expected: str) -> list[Triplet]:
    if not triplets:
        raise DatasetError(f"no {kind} triplets found under {root}. Expected layout: {expected}")
    broken = [(t.name, m) for t in triplets if (m := _missing(t))]
    if broken:
        shown = "; ".join(f"{name}: missing {', '.join(p.name for p in ms)}" for name, ms in broken[:5])
        more = f" (and {len(broken) - 5} more)" if len(broken) > 5 else ""
        raise DatasetError(f"{len(broken)} of {len(triplets)} {kind} triplets under {root} are incomplete — "
                           f"{shown}{more}. Expected layout: {expected}")
    return triplets


VIMEO_LAYOUT = ("ROOT/tri_trainlist.txt and ROOT/tri_testlist.txt (one 'folder/sub' per line) and "
                "ROOT/sequences/<folder>/<sub>/im1.png, im2.png, im3.png (im2 is the middle frame)")


def find_vimeo(root: str | os.PathLike, split: str = "train") -> list[Triplet]:
    """Vimeo-90K triplets of the ``train`` or ``test`` split."""
    if split not in ("train", "test"):
        raise DatasetError(f"Vimeo-90K split must be 'train' or 'test', not {split!r}")
    root = _require_dir(Path(root), "Vimeo-90K", VIMEO_LAYOUT)
    listing = root / f"tri_{split}list.txt"
    if not listing.is_file():
        raise DatasetError(f"Vimeo-90K list {listing} is missing. Expected layout: {VIMEO_LAYOUT}")
    entries = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
    seq = root / "sequences"
    triplets = [Triplet(e, seq / e / "im1.png", seq / e / "im2.png", seq / e / "im3.png") for e in entries]
    return _check_complete(triplets, root, "Vimeo-90K", VIMEO_LAYOUT)


MIDDLEBURY_LAYOUT = ("ROOT/input/<sequence>/frame10.png, frame11.png and ROOT/gt/<sequence>/frame10i11.png "
                     "(or the official ROOT/other-data/ and ROOT/other-gt-interp/ folders)")


def find_middlebury(root: str | os.PathLike) -> list[Triplet]:
    """Middlebury "other" sequences that have ground truth (12 in the official set)."""
    root = _require_dir(Path(root), "Middlebury", MIDDLEBURY_LAYOUT)
    for inputs, gts in (("input", "gt"), ("other-data", "other-gt-interp")):
        if (root / inputs).is_dir() and (root / gts).is_dir():
            break
    else:
        raise DatasetError(f"{root} has neither input/ + gt/ nor other-data/ + other-gt-interp/ folders. "
                           f"Expected layout: {MIDDLEBURY_LAYOUT}")
    names = sorted(d.name for d in (root / gts).iterdir() if d.is_dir())
    triplets = [Triplet(n, root / inputs / n / "frame10.png", root / gts / n / "frame10i11.png",
                        root / inputs / n / "frame11.png") for n in names]
    return _check_complete(triplets, root, "Middlebury", MIDDLEBURY_LAYOUT)


UCF_LAYOUT = "ROOT/<id>/frame_00.png, frame_01_gt.png, frame_02.png (frame_01_gt is the middle frame)"


def _natural_key(name: str):
    return (0, int(name), "") if name.isdigit() else (1, 0, name)


def find_ucf101(root: str | os.PathLike, kind: str = "UCF101-DVF") -> list[Triplet]:
    """UCF101-DVF (379 triplets) or DAVIS-style triplet folders."""
    root = _require_dir(Path(root), kind, UCF_LAYOUT)
    dirs = sorted((d for d in root.iterdir() if d.is_dir()), key=lambda d: _natural_key(d.name))
    triplets = [Triplet(d.name, d / "frame_00.png", d / "frame_01_gt.png", d / "frame_02.png") for d in dirs]
    return _check_complete(triplets, root, kind, UCF_LAYOUT)


FOLDER_LAYOUT = ("ROOT/<name>/ with exactly three images each (at any depth); sorted by file name they are "
                 "the first frame, the ground-truth middle frame and the last frame")


def find_triplet_folders(root: str | os.PathLike) -> list[Triplet]:
    """Every folder under ``root`` (itself included) holding exactly three images."""
    root = _require_dir(Path(root), "triplet-folder", FOLDER_LAYOUT)
    triplets, odd = [], []
    for folder in sorted([root, *(d for d in root.rglob("*") if d.is_dir())]):
        files = image_files(folder)
        if len(files) == 3:
            name = folder.relative_to(root).as_posix() if folder != root else folder.name
            triplets.append(Triplet(name, *files))
        elif files:
            odd.append(f"{folder.relative_to(root).as_posix() or '.'} ({len(files)} images)")
    if not triplets:
        detail = f"; folders with the wrong number of images: {', '.join(odd[:5])}" if odd else ""
        raise DatasetError(f"no triplets found under {root}{detail}. Expected layout: {FOLDER_LAYOUT}")
    return triplets


def triplets_from_frames(folder: str | os.PathLike, stride: int = 1, spacing: int = 1) -> list[Triplet]:
    """Triplets (i, i+spacing, i+2·spacing) cut from a folder of consecutive frames,
    one every ``stride`` frames (spacing 2 doubles the motion)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"frame folder {folder} does not exist; expected a folder of consecutive frames")
    files = image_files(folder)
    if len(files) < 2 * spacing + 1:
        raise DatasetError(f"{folder} holds {len(files)} image(s); cutting triplets {spacing} frame(s) apart "
                           f"needs at least {2 * spacing + 1} consecutive frames, sorted by name")
    suffix = "" if spacing == 1 else f"_s{spacing}"
    return [Triplet(files[i + spacing].stem + suffix, files[i], files[i + spacing], files[i + 2 * spacing])
            for i in range(0, len(files) - 2 * spacing, stride)]


def find_triplets(kind: str, root: str | os.PathLike, split: str = "test") -> list[Triplet]:
    """Dispatch on a dataset kind name (``DATASET_KINDS``)."""
    kind = kind.lower()
    if kind == "vimeo":
        return find_vimeo(root, split)
    if kind == "middlebury":
        return find_middlebury(root)
    if kind in ("ucf101", "davis"):
        return find_ucf101(root, "UCF101-DVF" if kind == "ucf101" else "DAVIS")
    if kind == "folder":
        return find_triplet_folders(root)
    raise DatasetError(f"unknown dataset kind {kind!r}; choose one of {', '.join(DATASET_KINDS)}")


# ------------------------------------------------------------------- dataset
def augment_triplet(frame0: torch.Tensor, gt: torch.Tensor, frame1: torch.Tensor,
                    crop: tuple[int, int] | None, rng: random.Random, flips: bool = True):
    """Random crop, random horizontal/vertical flips and temporal-order swap,
    the same for all three frames (the middle frame stays the middle)."""
    if crop is not None:
        h, w = frame0.shape[-2:]
        ch, cw = crop
        if ch > h or cw > w:
            raise DatasetError(f"crop {ch}×{cw} is larger than the frames ({h}×{w})")
        top, left = rng.randint(0, h - ch), rng.randint(0, w - cw)
        frame0, gt, frame1 = (t[..., top:top + ch, left:left + cw] for t in (frame0, gt, frame1))
    if flips:
        if rng.random() < 0.5:
            frame0, gt, frame1 = (t.flip(-1) for t in (frame0, gt, frame1))
        if rng.random() < 0.5:
            frame0, gt, frame1 = (t.flip(-2) for t in (frame0, gt, frame1))
        if rng.random() < 0.5:
            frame0, frame1 = frame1, frame0
    return frame0.contiguous(), gt.contiguous(), frame1.contiguous()


class TripletDataset(Dataset):
    """Triplets as dicts ``{"frame0", "gt", "frame1"}`` of (3, H, W) float
    tensors in [0, 1] plus ``"name"``. ``augment`` turns on the paper's flips
    and temporal swap; ``crop=(h, w)`` takes random crops (centre crops when
    not augmenting)."""

    def __init__(self, triplets: Sequence[Triplet], crop: tuple[int, int] | None = None,
                 augment: bool = False, seed: int | None = None):
        self.triplets = list(triplets)
        self.crop = crop
        self.augment = augment
        self._rng = random.Random(seed)

    def __len__(self) -> int:
        return len(self.triplets)

    def __getitem__(self, index: int) -> dict:
        t = self.triplets[index]
        frame0, gt, frame1 = read_image(t.frame0), read_image(t.gt), read_image(t.frame1)
        if not (frame0.shape == gt.shape == frame1.shape):
            raise DatasetError(f"triplet {t.name}: frames differ in size "
                               f"({tuple(frame0.shape[1:])}, {tuple(gt.shape[1:])}, {tuple(frame1.shape[1:])})")
        if self.augment:
            frame0, gt, frame1 = augment_triplet(frame0, gt, frame1, self.crop, self._rng)
        elif self.crop is not None:
            frame0, gt, frame1 = _centre_crop((frame0, gt, frame1), self.crop)
        return {"frame0": frame0, "gt": gt, "frame1": frame1, "name": t.name}


def _centre_crop(frames, crop):
    h, w = frames[0].shape[-2:]
    ch, cw = min(crop[0], h), min(crop[1], w)
    top, left = (h - ch) // 2, (w - cw) // 2
    return tuple(f[..., top:top + ch, left:left + cw].contiguous() for f in frames)


def random_subset(triplets: Sequence[Triplet], limit: int | None, seed: int | None = 0) -> list[Triplet]:
    """``limit`` triplets drawn at random (seeded; kept in list order), or all
    of them when ``limit`` is None/0 or not smaller than the list. The
    published sparsification used a random 1000 of Vimeo-90K's training list;
    the first 1000 lines would be a few sequences only."""
    triplets = list(triplets)
    if not limit or limit >= len(triplets):
        return triplets
    keep = sorted(random.Random(seed).sample(range(len(triplets)), int(limit)))
    return [triplets[i] for i in keep]


def vimeo_dataset(root: str | os.PathLike, split: str = "train", crop: tuple[int, int] | None = None,
                  seed: int | None = 0, limit: int | None = None) -> TripletDataset:
    """Vimeo-90K with the published training augmentation on the train split
    (whole 256×448 frames, random horizontal and vertical flips, temporal-order
    swap; ``crop=(h, w)`` adds random crops) and whole frames for test.
    ``limit`` keeps a seeded random subset (the paper sparsified on 1000)."""
    triplets = random_subset(find_vimeo(root, split), limit, seed)
    if split == "train":
        return TripletDataset(triplets, crop=crop, augment=True, seed=seed)
    return TripletDataset(triplets)


def collate_triplets(batch: list[dict]) -> dict:
    """Stack a list of triplet dicts (same frame size) into a batch dict."""
    sizes = {tuple(b["frame0"].shape) for b in batch}
    if len(sizes) > 1:
        shown = ", ".join(f"{b['name']} {tuple(b['frame0'].shape[1:])}" for b in batch[:4])
        raise DatasetError(f"a batch holds frames of different sizes ({shown}); training batches need one size: "
                           "crop them (SDESIGN_ADACOF_CROP=256 for the paper model files, crop=(h, w) for "
                           "TripletDataset) or train with batch size 1")
    out = {k: torch.stack([b[k] for b in batch]) for k in ("frame0", "gt", "frame1")}
    out["name"] = [b["name"] for b in batch]
    return out
