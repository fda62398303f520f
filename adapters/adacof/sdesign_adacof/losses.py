"""The training loss for frame interpolation, as the published code computes it.

``loss = charbonnier(pred, gt) + 0.005 · perceptual(pred, gt) + 0.01 · smoothness``

* Charbonnier: ``mean(sqrt((pred − gt)² + ε²))`` with ε = 1e-3 (paper eq. 7).
* Perceptual (paper eq. 8, as a mean squared error): VGG16 ``conv4_3`` features
  of the prediction against those of the ground truth. ``variant="published"``
  (default) is what the published code (AdaCoF-pytorch, CDFI) trains with:
  ``vgg16.features[:22]``, i.e. conv4_3 *before* its ReLU, fed the raw [0, 1]
  images. ``variant="imagenet"`` is the textbook reading: ``features[:23]``
  (after the ReLU) on ImageNet-normalised input — about 11× larger at the same
  weight. The ImageNet weights come from a file the user names
  (``vgg_weights=``, ``SDESIGN_VGG16_WEIGHTS``), else the torch hub cache, else
  a download into it (see :mod:`sdesign_adacof.hub`).
* Smoothness. ``"g_spatial"`` (default): the published term: for each of α1,
  β1, α2, β2 the Charbonnier of the horizontal and vertical neighbour
  differences of ``mean_c(W·α)`` (the kernel-weighted mean offset). ``"tv"``:
  the paper's eq. 9, the same penalty on every one of the F² raw offset maps —
  about 8× stronger on the same model.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from sparsenet_design.plugin_api import CheckpointError, SdesignError

CHARBONNIER_EPS = 1e-3
PERCEPTUAL_WEIGHT = 0.005
TV_WEIGHT = 0.01
VGG_WEIGHTS_ENV = "SDESIGN_VGG16_WEIGHTS"
VGG16_CONV4_3_END = 22  # torchvision vgg16.features[:22] ends with conv4_3 (before its ReLU)
VGG16_RELU4_3_END = 23  # features[:23] ends with conv4_3's ReLU
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: perceptual variant -> (end of vgg16.features, ImageNet-normalise the input)
PERCEPTUAL_VARIANTS = {"published": (VGG16_CONV4_3_END, False), "imagenet": (VGG16_RELU4_3_END, True)}
SMOOTHNESS_TERMS = ("g_spatial", "tv")


def charbonnier(pred: torch.Tensor, target: torch.Tensor, eps: float = CHARBONNIER_EPS) -> torch.Tensor:
    return torch.sqrt((pred - target).pow(2) + eps * eps).mean()


def total_variation(maps: Iterable[torch.Tensor], eps: float = CHARBONNIER_EPS) -> torch.Tensor:
    """Paper eq. 9: sum over the maps of the Charbonnier penalty of neighbour
    differences (horizontal and vertical). ``maps`` may hold tensors or (α, β) pairs."""
    total = None
    for m in _flatten(maps):
        dx = m[..., :, 1:] - m[..., :, :-1]
        dy = m[..., 1:, :] - m[..., :-1, :]
        term = torch.sqrt(dx.pow(2) + eps * eps).mean() + torch.sqrt(dy.pow(2) + eps * eps).mean()
        total = term if total is None else total + term
    if total is None:
        raise ValueError("total_variation got no offset maps")
    return total


def g_spatial(extras: Mapping, eps: float = CHARBONNIER_EPS) -> torch.Tensor:
    """The published smoothness term from a model's extras (``weights`` and
    ``offsets``): Charbonnier of neighbour differences of mean_c(W·α) and
    mean_c(W·β), summed over both kernel sets."""
    from .models.adacof import offset_smoothness

    return offset_smoothness(extras, eps)


def _flatten(maps) -> list[torch.Tensor]:
    out = []
    for m in maps:
        if isinstance(m, torch.Tensor):
            out.append(m)
        else:
            out.extend(_flatten(m))
    return out


class VGGPerceptual(nn.Module):
    """MSE between VGG16 conv4_3 features; frozen, inputs in [0, 1].

    ``variant="published"``: ``features[:22]`` (conv4_3 before its ReLU) on the
    raw [0, 1] images, as the published code; ``"imagenet"``: ``features[:23]``
    on ImageNet-normalised images."""

    def __init__(self, state_dict: dict, variant: str = "published"):
        super().__init__()
        from torchvision.models import vgg

        if variant not in PERCEPTUAL_VARIANTS:
            raise SdesignError(f"Unknown perceptual variant {variant!r}; choose one of "
                               f"{', '.join(PERCEPTUAL_VARIANTS)}.")
        end, self.normalise = PERCEPTUAL_VARIANTS[variant]
        self.variant = variant
        features = vgg.make_layers(vgg.cfgs["D"])  # vgg16's convolutional part, without the big classifier
        own = {k[len("features."):]: v for k, v in state_dict.items() if k.startswith("features.")}
        if not own:
            raise CheckpointError("the VGG16 weights file has no 'features.*' tensors; expected torchvision's "
                                  "vgg16 state dict (e.g. vgg16-397923af.pth)")
        try:
            features.load_state_dict(own)
        except RuntimeError as exc:
            raise CheckpointError(f"the VGG16 weights do not fit torchvision's vgg16: {exc}") from exc
        self.features = features[:end].eval()
        for p in self.features.parameters():
            p.requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def train(self, mode: bool = True) -> "VGGPerceptual":
        super().train(mode)
        self.features.eval()  # frozen feature extractor: never in training mode
        return self

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std if self.normalise else x

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        fp = self.features(self._input(pred))
        with torch.no_grad():
            ft = self.features(self._input(target))
        return F.mse_loss(fp, ft)


def load_vgg_perceptual(path: str | os.PathLike | None = None, variant: str = "published",
                        download: bool = True) -> VGGPerceptual:
    """The perceptual term. Weights: ``path``, else ``SDESIGN_VGG16_WEIGHTS``,
    else torchvision's ``vgg16-397923af.pth`` in the torch hub cache, else
    (``download`` and not ``SDESIGN_OFFLINE``) downloaded there. Raises
    :class:`CheckpointError` saying what to place where."""
    from .hub import VGG16, locate, read_state_dict

    file = locate(VGG16, path, download)
    try:
        state = read_state_dict(Path(file))
    except Exception as exc:
        raise CheckpointError(f"cannot read VGG16 weights from {file}: {exc}") from exc
    return VGGPerceptual(state, variant)


NO_VGG_HINT = "or pass --no-perceptual (SDESIGN_ADACOF_NO_PERCEPTUAL=1) to train without the perceptual term"


class InterpolationLoss(nn.Module):
    """Charbonnier + w_p · perceptual + w_s · smoothness.

    ``perceptual`` is a :class:`VGGPerceptual` or None (term left out).
    ``smoothness``: ``"g_spatial"`` (published), ``"tv"`` (paper eq. 9), or
    ``"auto"``: g_spatial when called with a model's extras dict, TV when called
    with a bare sequence of offset maps (all they allow).
    Calling ``loss(pred, gt, extras)`` returns the total; ``last_terms`` keeps
    the parts as floats (``charbonnier``, ``perceptual``, ``g_spatial`` or
    ``tv``, and ``total``)."""

    def __init__(self, perceptual: VGGPerceptual | None = None, perceptual_weight: float = PERCEPTUAL_WEIGHT,
                 tv_weight: float = TV_WEIGHT, eps: float = CHARBONNIER_EPS, smoothness: str = "auto"):
        super().__init__()
        if smoothness not in (*SMOOTHNESS_TERMS, "auto"):
            raise SdesignError(f"Unknown smoothness term {smoothness!r}; choose one of "
                               f"{', '.join(SMOOTHNESS_TERMS)} (or auto).")
        self.perceptual = perceptual
        self.perceptual_weight = perceptual_weight
        self.tv_weight = tv_weight
        self.eps = eps
        self.smoothness = smoothness
        self.last_terms: dict[str, float] = {}

    def _smoothness(self, extras) -> tuple[str, torch.Tensor]:
        if isinstance(extras, Mapping):
            kind = "g_spatial" if self.smoothness == "auto" else self.smoothness
            if kind == "g_spatial":
                return kind, g_spatial(extras, self.eps)
            return kind, total_variation(extras["offsets"], self.eps)
        if self.smoothness == "g_spatial":
            raise SdesignError("the g_spatial smoothness term needs the kernel weights as well as the offsets: "
                               "pass the model's extras dict (model(f0, f1, return_extras=True)[1]), or build the "
                               "loss with smoothness='tv'.")
        return "tv", total_variation(extras, self.eps)

    def forward(self, pred: torch.Tensor, gt: torch.Tensor, extras=None) -> torch.Tensor:
        total = charbonnier(pred, gt, self.eps)
        terms = {"charbonnier": total.detach()}
        if self.perceptual is not None and self.perceptual_weight:
            p = self.perceptual(pred, gt)
            terms["perceptual"] = p.detach()
            total = total + self.perceptual_weight * p
        if extras is not None and self.tv_weight:
            kind, s = self._smoothness(extras)
            terms[kind] = s.detach()
            total = total + self.tv_weight * s
        terms["total"] = total.detach()
        self.last_terms = {k: float(v) for k, v in terms.items()}
        return total


def build_loss(vgg_weights: str | os.PathLike | None = None, allow_no_perceptual: bool = False,
               perceptual_weight: float = PERCEPTUAL_WEIGHT, tv_weight: float = TV_WEIGHT,
               smoothness: str = "g_spatial", perceptual: str = "published",
               download: bool = True) -> InterpolationLoss:
    """The published loss (defaults) or the paper's equations
    (``smoothness="tv"``, ``perceptual="imagenet"``). Without VGG16 weights this
    raises a clear error, unless the user asked to go on without the perceptual
    term (``allow_no_perceptual``)."""
    if perceptual not in PERCEPTUAL_VARIANTS:
        raise SdesignError(f"Unknown perceptual variant {perceptual!r}; choose one of "
                           f"{', '.join(PERCEPTUAL_VARIANTS)}.")
    term = None
    if perceptual_weight:
        try:
            term = load_vgg_perceptual(vgg_weights, perceptual, download)
        except CheckpointError as exc:
            if vgg_weights or os.environ.get(VGG_WEIGHTS_ENV) or not allow_no_perceptual:
                text = str(exc).rstrip(".")
                raise CheckpointError(f"{text[0].upper()}{text[1:]}; {NO_VGG_HINT}.") from None
            warnings.warn(f"training without the VGG16 perceptual term ({exc})", stacklevel=2)
    return InterpolationLoss(term, perceptual_weight if term is not None else 0.0, tv_weight,
                             smoothness=smoothness)
