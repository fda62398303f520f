"""AdaCoF/CDFI glue for the core training loop (``sparsenet_design.training.trainer``).

The paper's recipe: AdaMax (β 0.9, 0.999), lr 1e-3 halved every 20 epochs,
batch 8, loss = Charbonnier + 0.005 · VGG16 perceptual + 0.01 · TV(offsets),
validation each epoch. The core loop brings checkpoints, resume and ``--amp``.

Model files take no arguments, so the paper's model files
(``model_files/paper_*.py``) read their settings from environment variables
(:class:`Settings`); every one has a default that reproduces the paper except
the data, which defaults to the embedded synthetic triplets.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from sparsenet_design.errors import ModelFileError, SdesignError

from .data import TripletDataset, collate_triplets, find_triplets, triplets_from_frames, vimeo_dataset
from .losses import InterpolationLoss, build_loss
from .metrics import mean_scores, score_images
from .synthetic import SyntheticTriplets

LR = 1e-3
BETAS = (0.9, 0.999)
HALVE_EVERY = 20
BATCH_SIZE = 8
ENV = "SDESIGN_ADACOF_"


def make_optimizer(params, lr: float = LR, halve_every: int = HALVE_EVERY):
    """AdaMax with the paper's betas and a step schedule halving lr every ``halve_every`` epochs."""
    optimizer = torch.optim.Adamax(params, lr=lr, betas=BETAS)
    return optimizer, torch.optim.lr_scheduler.StepLR(optimizer, step_size=halve_every, gamma=0.5)


def _env(name: str, default: str) -> str:
    return os.environ.get(ENV + name, default)


@dataclass
class Settings:
    """Everything the paper model files read from ``SDESIGN_ADACOF_*`` variables.

    ``TRAIN``/``VAL`` are ``synthetic`` or ``KIND:PATH`` with KIND one of
    vimeo, middlebury, ucf101, davis, folder, frames (triplets cut from a folder
    of consecutive frames); ``VAL`` may also be ``none``."""

    train: str = field(default_factory=lambda: _env("TRAIN", "synthetic"))
    train_limit: int = field(default_factory=lambda: int(_env("TRAIN_LIMIT", "1000")))
    val: str = field(default_factory=lambda: _env("VAL", "synthetic"))
    val_limit: int = field(default_factory=lambda: int(_env("VAL_LIMIT", "16")))
    crop: int = field(default_factory=lambda: int(_env("CROP", "256")))
    batch_size: int = field(default_factory=lambda: int(_env("BATCH", str(BATCH_SIZE))))
    kernel_size: int = field(default_factory=lambda: int(_env("KERNEL", "5")))
    dilation: int = field(default_factory=lambda: int(_env("DILATION", "1")))
    width: float = field(default_factory=lambda: float(_env("WIDTH", "1.0")))
    spec: str | None = field(default_factory=lambda: os.environ.get(ENV + "SPEC") or None)
    no_perceptual: bool = field(default_factory=lambda: _env("NO_PERCEPTUAL", "0") not in ("", "0", "false"))
    seed: int = field(default_factory=lambda: int(_env("SEED", "0")))


# --------------------------------------------------------------------- data
def _source(spec: str, split: str, limit: int, crop: int, seed: int, train: bool) -> Dataset:
    """A dataset from a source string; ``limit`` 0 means all (1000 synthetic)."""
    if spec == "synthetic":
        limit = limit or 1000
        size = (crop, crop) if train else (max(crop, 64), max(crop, 64))
        return SyntheticTriplets(limit, size, max_motion=max(2, crop // 16), seed=seed if train else seed + 10_007)
    limit = limit or None
    kind, sep, path = spec.partition(":")
    if not sep or not path:
        raise SdesignError(f"data source {spec!r} must be 'synthetic' or KIND:PATH "
                           "(vimeo, middlebury, ucf101, davis, folder, frames)")
    if kind == "vimeo":
        if train:
            return vimeo_dataset(path, "train", crop=(crop, crop), seed=seed, limit=limit)
        return vimeo_dataset(path, "test", limit=limit)
    triplets = triplets_from_frames(path) if kind == "frames" else find_triplets(kind, path, split)
    triplets = triplets[:limit]
    if train:
        return TripletDataset(triplets, crop=(crop, crop), augment=True, seed=seed)
    return TripletDataset(triplets)


def train_loader(settings: Settings | None = None) -> DataLoader:
    """Shuffled batches of the training source (the core re-seeds the generator each epoch)."""
    s = settings or Settings()
    dataset = _source(s.train, "train", s.train_limit, s.crop, s.seed, train=True)
    generator = torch.Generator().manual_seed(s.seed)
    return DataLoader(dataset, batch_size=s.batch_size, shuffle=True, drop_last=len(dataset) >= s.batch_size,
                      collate_fn=collate_triplets, generator=generator)


def validation_set(settings: Settings | None = None) -> Dataset | None:
    s = settings or Settings()
    if s.val == "none":
        return None
    return _source(s.val, "test", s.val_limit, s.crop, s.seed, train=False)


def validate(model: nn.Module, dataset: Dataset | None) -> dict[str, float]:
    """Mean PSNR / SSIM (paper protocol) of ``model`` on ``dataset``."""
    if dataset is None:
        return {}
    from .interpolate import Interpolator

    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    interp = Interpolator(model, device)
    rows = []
    for i in range(len(dataset)):
        item = dataset[i]
        rows += score_images(item["gt"].double(), interp(item["frame0"], item["frame1"]).cpu())
    model.train()
    return mean_scores(rows)


# --------------------------------------------------------------------- loss
def model_loss(loss: InterpolationLoss):
    """``loss(model, batch)`` for the core loop: forward with extras, paper loss."""
    def compute(model: nn.Module, batch: dict) -> torch.Tensor:
        pred, extras = model(batch["frame0"], batch["frame1"], return_extras=True)
        return loss(pred, batch["gt"], extras["offsets"])
    return compute


def paper_loss(settings: Settings | None = None) -> InterpolationLoss:
    s = settings or Settings()
    try:
        return build_loss(allow_no_perceptual=s.no_perceptual)
    except SdesignError as exc:
        raise ModelFileError(f"{exc} (for the paper model files: set SDESIGN_VGG16_WEIGHTS=FILE, or "
                             f"{ENV}NO_PERCEPTUAL=1 to train without the perceptual term)") from exc


# ------------------------------------------------------------------- models
def scaled_widths(kernel_size: int, width: float) -> dict[str, tuple[int, ...]] | None:
    """The AdaCoF U-Net widths scaled by ``width`` (toy models); the F² kernel
    outputs keep their size."""
    if width == 1.0:
        return None
    from .models.unet import KERNEL_HEADS, full_widths

    taps = kernel_size * kernel_size
    out = {}
    for name, ws in full_widths(kernel_size).items():
        scaled = [max(1, math.ceil(w * width)) for w in ws]
        if name in KERNEL_HEADS:
            scaled[-1] = taps
        out[name] = tuple(scaled)
    return out


def build_adacof(settings: Settings | None = None) -> nn.Module:
    from .models.adacof import AdaCoF

    s = settings or Settings()
    return AdaCoF(s.kernel_size, s.dilation, widths=scaled_widths(s.kernel_size, s.width))


def build_cdfi(settings: Settings | None = None) -> nn.Module:
    """CDFI on the compact U-Net: AdaCoF with the design spec ``SDESIGN_ADACOF_SPEC``
    applied (from ``sdesign reconstruct``), plus the feature pyramid, GridNet
    and path selection. Without a spec, the published compact widths are used."""
    from .models.cdfi import CDFI
    from .models.published import CDFI_GRID_CHANNELS, CDFI_PYRAMID_CHANNELS

    s = settings or Settings()
    scale = (lambda ws: tuple(max(1, math.ceil(w * s.width)) for w in ws))  # noqa: E731
    if s.spec is None:
        if s.width != 1.0:
            unet = build_adacof(s)
            return CDFI(unet, s.kernel_size, s.dilation, scale(CDFI_PYRAMID_CHANNELS), scale(CDFI_GRID_CHANNELS))
        return CDFI(None, s.kernel_size, s.dilation)
    from sparsenet_design.rebuild.reconstruct import apply_spec
    from sparsenet_design.design.spec import DesignSpec

    if not Path(s.spec).is_file():
        raise ModelFileError(f"{ENV}SPEC={s.spec} does not exist; give the spec.json written by "
                             "`sdesign reconstruct` for paper_adacof.py")
    compact = apply_spec(build_adacof(s), DesignSpec.load(Path(s.spec)))
    return CDFI(compact, s.kernel_size, s.dilation, scale(CDFI_PYRAMID_CHANNELS), scale(CDFI_GRID_CHANNELS))


def example_frames(settings: Settings | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    return torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
