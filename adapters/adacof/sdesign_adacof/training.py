"""AdaCoF/CDFI glue for the core training loop.

The published recipe (CDFI ``train.py`` and the paper): AdaMax (β 0.9, 0.999),
lr 1e-3 halved every 20 epochs, batch 8, 100 epochs, whole 256×448 Vimeo-90K
frames with random flips and temporal swap; loss = Charbonnier + 0.005 · VGG16
conv4_3 (before its ReLU, raw [0, 1] input) + 0.01 · g_Spatial; validation each
epoch. The core loop brings checkpoints, resume and ``--amp``.

The paper's model files (``model_files/paper_*.py``, by name ``adacof:paper``
and ``adacof:paper-cdfi``) declare their settings (:class:`Settings`) as
``SETTINGS``, set with ``--set NAME=VALUE`` on the command line, with
``SDESIGN_ADACOF_*`` environment variables as a fallback; every default reproduces the
published recipe except the data, which defaults to embedded synthetic
triplets, and the warp, which defaults to true bilinear sampling with exact
gradients (``MODE=published-training`` reproduces the published kernels).
"""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from sparsenet_design.plugin_api import ModelFileError, SdesignError

from .data import TripletDataset, collate_triplets, find_triplets, random_subset, triplets_from_frames, vimeo_dataset
from .losses import InterpolationLoss, build_loss
from .metrics import mean_scores, score_images
from .synthetic import SyntheticTriplets

LR = 1e-3
BETAS = (0.9, 0.999)
HALVE_EVERY = 20
BATCH_SIZE = 8
ENV = "SDESIGN_ADACOF_"
VIMEO_SIZE = (256, 448)
#: Older names still read (with a FutureWarning): old name -> current name.
ENV_ALIASES = {"KERNEL": "KERNEL_SIZE", "UNET_SPEC": "SPEC"}


def make_optimizer(params, lr: float | None = None, halve_every: int = HALVE_EVERY):
    """AdaMax with the published betas and a step schedule halving lr every
    ``halve_every`` epochs; ``lr`` defaults to 1e-3 (``SDESIGN_ADACOF_LR``)."""
    lr = float(env("LR", str(LR))) if lr is None else float(lr)
    optimizer = torch.optim.Adamax(params, lr=lr, betas=BETAS, eps=1e-8, weight_decay=0)
    return optimizer, torch.optim.lr_scheduler.StepLR(optimizer, step_size=halve_every, gamma=0.5)


def env(name: str, default: str | None) -> str | None:
    """``SDESIGN_ADACOF_<name>``, or its older alias (with a FutureWarning), or ``default``."""
    value = os.environ.get(ENV + name)
    if value is not None:
        return value
    for old, new in ENV_ALIASES.items():
        if new == name and os.environ.get(ENV + old) is not None:
            warnings.warn(f"{ENV}{old} is renamed {ENV}{name}; the old name will stop working", FutureWarning,
                          stacklevel=3)
            return os.environ[ENV + old]
    return default


def _flag(name: str) -> bool:
    return (env(name, "0") or "").strip().lower() not in ("", "0", "false", "no")


@dataclass
class Settings:
    """Everything the model files read from ``SDESIGN_ADACOF_*`` variables.

    ``TRAIN``/``VAL`` are ``synthetic`` or ``KIND:PATH`` with KIND one of
    vimeo, middlebury, ucf101, davis, folder, frames (triplets cut from a folder
    of consecutive frames); ``VAL`` may also be ``none``. ``TRAIN_LIMIT`` /
    ``VAL_LIMIT`` keep a seeded random subset (0: all). ``CROP`` 0 trains on
    whole frames (the published recipe; synthetic frames are then 256×448).
    ``SMOOTHNESS`` (g_spatial | tv), ``PERCEPTUAL`` (published | imagenet) and
    ``MODE`` (exact | published | published-training) choose between the
    published code and the paper's equations (see :mod:`sdesign_adacof.losses`,
    :mod:`sdesign_adacof.models.mode`). :meth:`for_adacof` and :meth:`for_cdfi`
    give each paper model file its defaults."""

    train: str = field(default_factory=lambda: env("TRAIN", "synthetic"))
    train_limit: int = field(default_factory=lambda: int(env("TRAIN_LIMIT", "1000")))
    val: str = field(default_factory=lambda: env("VAL", "synthetic"))
    val_limit: int = field(default_factory=lambda: int(env("VAL_LIMIT", "16")))
    crop: int = field(default_factory=lambda: int(env("CROP", "0")))
    batch_size: int = field(default_factory=lambda: int(env("BATCH", str(BATCH_SIZE))))
    kernel_size: int = field(default_factory=lambda: int(env("KERNEL_SIZE", "5")))
    dilation: int = field(default_factory=lambda: int(env("DILATION", "1")))
    width: float = field(default_factory=lambda: float(env("WIDTH", "1.0")))
    spec: str | None = field(default_factory=lambda: env("SPEC", None) or None)
    no_perceptual: bool = field(default_factory=lambda: _flag("NO_PERCEPTUAL"))
    seed: int = field(default_factory=lambda: int(env("SEED", "0")))
    smoothness: str = field(default_factory=lambda: env("SMOOTHNESS", "g_spatial"))
    perceptual: str = field(default_factory=lambda: env("PERCEPTUAL", "published"))
    mode: str = field(default_factory=lambda: env("MODE", "exact"))
    lr: float = field(default_factory=lambda: float(env("LR", str(LR))))

    @classmethod
    def for_adacof(cls) -> "Settings":
        """``paper_adacof.py``: AdaCoF F=5, d=1; sparsify on a random 1000 triplets."""
        return cls()

    @classmethod
    def for_cdfi(cls) -> "Settings":
        """``paper_cdfi.py``: CDFI F=11, d=2 (the paper's final model) on the whole training set."""
        return cls(kernel_size=int(env("KERNEL_SIZE", "11")), dilation=int(env("DILATION", "2")),
                   train_limit=int(env("TRAIN_LIMIT", "0")))


def setting_defaults(kind: str) -> dict:
    """The ``SETTINGS`` of a paper model file (``kind`` "adacof" or "cdfi"): the
    published recipe, with ``SDESIGN_ADACOF_*`` variables as a fallback; ``--set
    NAME=VALUE`` on the command line overrides them."""
    from dataclasses import asdict

    return asdict(Settings.for_cdfi() if kind == "cdfi" else Settings.for_adacof())


# --------------------------------------------------------------------- data
def _source(spec: str, split: str, limit: int, crop: int, seed: int, train: bool) -> Dataset:
    """A dataset from a source string; ``limit`` 0 means all (1000 synthetic)."""
    if spec == "synthetic":
        limit = limit or 1000
        if train:
            size = (crop, crop) if crop else VIMEO_SIZE
        else:
            size = (max(crop, 64), max(crop, 64)) if crop else VIMEO_SIZE
        return SyntheticTriplets(limit, size, max_motion=max(2, min(size) // 16),
                                 seed=seed if train else seed + 10_007)
    limit = limit or None
    kind, sep, path = spec.partition(":")
    if not sep or not path:
        raise SdesignError(f"data source {spec!r} must be 'synthetic' or KIND:PATH "
                           "(vimeo, middlebury, ucf101, davis, folder, frames)")
    crop_hw = (crop, crop) if crop else None
    if kind == "vimeo":
        if train:
            return vimeo_dataset(path, "train", crop=crop_hw, seed=seed, limit=limit)
        return vimeo_dataset(path, "test", limit=limit, seed=seed)
    triplets = triplets_from_frames(path) if kind == "frames" else find_triplets(kind, path, split)
    triplets = random_subset(triplets, limit, seed)
    if train:
        return TripletDataset(triplets, crop=crop_hw, augment=True, seed=seed)
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
    """Mean PSNR / SSIM (published protocol) of ``model`` on ``dataset``."""
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
    """``loss(model, batch)`` for the core loop: forward with extras, the loss on them."""
    def compute(model: nn.Module, batch: dict) -> torch.Tensor:
        pred, extras = model(batch["frame0"], batch["frame1"], return_extras=True)
        return loss(pred, batch["gt"], extras)
    return compute


def paper_loss(settings: Settings | None = None) -> InterpolationLoss:
    """The published loss (or the paper's equations, per ``SMOOTHNESS`` / ``PERCEPTUAL``)."""
    s = settings or Settings()
    try:
        return build_loss(allow_no_perceptual=s.no_perceptual, smoothness=s.smoothness, perceptual=s.perceptual)
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
    return AdaCoF(s.kernel_size, s.dilation, widths=scaled_widths(s.kernel_size, s.width), mode=s.mode)


def unet_widths(unet) -> dict[str, tuple[int, ...]]:
    """The widths of an AdaCoF U-Net (e.g. one ``sdesign reconstruct`` rebuilt),
    in the format of :func:`sdesign_adacof.models.unet.full_widths`."""
    from .models.unet import DECODER, ENCODER, HEADS, hidden_widths

    widths = {name: tuple(m.out_channels for m in getattr(unet, name).modules() if isinstance(m, nn.Conv2d))
              for name in (*ENCODER, *DECODER)}
    widths.update({name: hidden_widths(getattr(unet, name)) for name in HEADS})
    return widths


def spec_kernel_size(spec) -> int | None:
    """The kernel size F of the AdaCoF a design spec was made from: the
    original output width of a kernel head's last conv is F², or None when the
    spec does not record it."""
    from .models.unet import KERNEL_HEADS

    last: dict[str, tuple[int, int]] = {}
    for path, entry in spec.modules.items():
        parts = path.split(".")
        if len(parts) == 3 and parts[0] == "unet" and parts[1] in KERNEL_HEADS and parts[2].isdigit():
            out = (entry.get("original") or {}).get("out_channels")
            if out is not None and int(parts[2]) > last.get(parts[1], (-1, 0))[0]:
                last[parts[1]] = (int(parts[2]), int(out))
    # the head's last conv is its highest index (the upsampling sits between it and the hidden convs)
    finals = {out for index, out in last.values() if index >= 7}
    for out in finals:
        if out > 1 and math.isqrt(out) ** 2 == out:
            return math.isqrt(out)
    return None


def build_cdfi(settings: Settings | None = None) -> nn.Module:
    """CDFI on the compact U-Net: AdaCoF with the design spec ``SDESIGN_ADACOF_SPEC``
    applied (from ``sdesign reconstruct``), plus the feature pyramid, GridNet
    and path selection. Without a spec, the published compact widths are used.

    A spec made at another kernel size (the paper sparsified AdaCoF at F=5 and
    built its final CDFI at F=11, d=2) gives its U-Net widths to a U-Net of this
    kernel size; the kernel heads keep their F² outputs."""
    from .models.cdfi import CDFI
    from .models.published import CDFI_GRID_CHANNELS, CDFI_PYRAMID_CHANNELS
    from .models.unet import AdaCoFUNet

    s = settings or Settings()
    scale = (lambda ws: tuple(max(1, math.ceil(w * s.width)) for w in ws))  # noqa: E731
    if s.spec is None:
        if s.width != 1.0:
            unet = build_adacof(s)
            return CDFI(unet, s.kernel_size, s.dilation, scale(CDFI_PYRAMID_CHANNELS), scale(CDFI_GRID_CHANNELS),
                        mode=s.mode)
        return CDFI(None, s.kernel_size, s.dilation, mode=s.mode)
    from sparsenet_design.plugin_api import DesignSpec, apply_spec

    if not Path(s.spec).is_file():
        raise ModelFileError(f"{ENV}SPEC={s.spec} does not exist; give the spec.json written by "
                             "`sdesign reconstruct` for paper_adacof.py")
    from sparsenet_design.plugin_api import SpecMismatchError

    from .models.adacof import AdaCoF

    spec = DesignSpec.load(Path(s.spec))
    made_at = spec_kernel_size(spec) or s.kernel_size
    try:
        compact = apply_spec(AdaCoF(made_at, s.dilation, widths=scaled_widths(made_at, s.width)), spec)
    except SpecMismatchError as exc:
        raise ModelFileError(f"{ENV}SPEC={s.spec} does not fit an AdaCoF with F={made_at} and WIDTH={s.width} "
                             f"({exc}). Use the settings paper_adacof.py had when the spec was made.") from exc
    unet = compact.unet if made_at == s.kernel_size else AdaCoFUNet(s.kernel_size, unet_widths(compact.unet))
    return CDFI(unet, s.kernel_size, s.dilation, scale(CDFI_PYRAMID_CHANNELS), scale(CDFI_GRID_CHANNELS),
                mode=s.mode)


def example_frames(settings: Settings | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    return torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
