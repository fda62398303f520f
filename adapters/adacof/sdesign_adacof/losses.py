"""The paper's training loss for frame interpolation.

``loss = charbonnier(pred, gt) + 0.005 · perceptual(pred, gt) + 0.01 · TV(offsets)``

* Charbonnier: ``mean(sqrt((pred − gt)² + ε²))`` with ε = 1e-3.
* Perceptual: mean squared distance between VGG16 ``conv4_3`` features (after
  its ReLU) of the prediction and the ground truth, on ImageNet-normalised
  input. The VGG16 ImageNet weights cannot be downloaded here: the user names a
  local file (torchvision's ``vgg16-*.pth`` state dict or a safetensors file
  with the same keys), via ``vgg_weights=`` / ``--vgg-weights`` or the
  ``SDESIGN_VGG16_WEIGHTS`` environment variable.
* Total variation of the offsets: the Charbonnier penalty of the differences
  between horizontal and vertical neighbours of every α and β map.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from sparsenet_design.errors import CheckpointError

CHARBONNIER_EPS = 1e-3
PERCEPTUAL_WEIGHT = 0.005
TV_WEIGHT = 0.01
VGG_WEIGHTS_ENV = "SDESIGN_VGG16_WEIGHTS"
VGG16_CONV4_3_END = 23  # torchvision vgg16.features[:23] ends with conv4_3 + ReLU
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def charbonnier(pred: torch.Tensor, target: torch.Tensor, eps: float = CHARBONNIER_EPS) -> torch.Tensor:
    return torch.sqrt((pred - target).pow(2) + eps * eps).mean()


def total_variation(maps: Iterable[torch.Tensor], eps: float = CHARBONNIER_EPS) -> torch.Tensor:
    """Sum over the maps of the Charbonnier penalty of neighbour differences
    (horizontal and vertical). ``maps`` may hold tensors or (α, β) pairs."""
    total = None
    for m in _flatten(maps):
        dx = m[..., :, 1:] - m[..., :, :-1]
        dy = m[..., 1:, :] - m[..., :-1, :]
        term = torch.sqrt(dx.pow(2) + eps * eps).mean() + torch.sqrt(dy.pow(2) + eps * eps).mean()
        total = term if total is None else total + term
    if total is None:
        raise ValueError("total_variation got no offset maps")
    return total


def _flatten(maps) -> list[torch.Tensor]:
    out = []
    for m in maps:
        if isinstance(m, torch.Tensor):
            out.append(m)
        else:
            out.extend(_flatten(m))
    return out


class VGGPerceptual(nn.Module):
    """MSE between VGG16 conv4_3 (ReLU) features; frozen, inputs in [0, 1]."""

    def __init__(self, state_dict: dict):
        super().__init__()
        from torchvision.models import vgg

        features = vgg.make_layers(vgg.cfgs["D"])  # vgg16's convolutional part, without the big classifier
        own = {k[len("features."):]: v for k, v in state_dict.items() if k.startswith("features.")}
        if not own:
            raise CheckpointError("the VGG16 weights file has no 'features.*' tensors; expected torchvision's "
                                  "vgg16 state dict (e.g. vgg16-397923af.pth)")
        try:
            features.load_state_dict(own)
        except RuntimeError as exc:
            raise CheckpointError(f"the VGG16 weights do not fit torchvision's vgg16: {exc}") from exc
        self.features = features[:VGG16_CONV4_3_END].eval()
        for p in self.features.parameters():
            p.requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def train(self, mode: bool = True) -> "VGGPerceptual":
        super().train(mode)
        self.features.eval()  # frozen feature extractor: never in training mode
        return self

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        fp = self.features((pred - self.mean) / self.std)
        with torch.no_grad():
            ft = self.features((target - self.mean) / self.std)
        return F.mse_loss(fp, ft)


def load_vgg_perceptual(path: str | os.PathLike | None = None) -> VGGPerceptual | None:
    """The perceptual term from a local weights file (argument, else
    ``SDESIGN_VGG16_WEIGHTS``); None when neither names one."""
    path = path or os.environ.get(VGG_WEIGHTS_ENV)
    if not path:
        return None
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"VGG16 weights file {path} does not exist. Give the path of torchvision's "
                              "vgg16 state dict (vgg16-397923af.pth) or a safetensors file with the same keys.")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"cannot read VGG16 weights from {path}: {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    return VGGPerceptual(state)


NO_VGG_MESSAGE = ("the VGG16 perceptual loss needs ImageNet weights, which cannot be downloaded here: pass "
                  f"--vgg-weights FILE (or set {VGG_WEIGHTS_ENV}) with torchvision's vgg16 state dict, or pass "
                  "--no-perceptual to train without the perceptual term")


class InterpolationLoss(nn.Module):
    """Charbonnier + w_p · perceptual + w_tv · TV(offsets).

    ``perceptual`` is a :class:`VGGPerceptual` or None (term left out).
    Calling returns the total; ``last_terms`` keeps the parts as floats."""

    def __init__(self, perceptual: VGGPerceptual | None = None, perceptual_weight: float = PERCEPTUAL_WEIGHT,
                 tv_weight: float = TV_WEIGHT, eps: float = CHARBONNIER_EPS):
        super().__init__()
        self.perceptual = perceptual
        self.perceptual_weight = perceptual_weight
        self.tv_weight = tv_weight
        self.eps = eps
        self.last_terms: dict[str, float] = {}

    def forward(self, pred: torch.Tensor, gt: torch.Tensor,
                offsets: Sequence | None = None) -> torch.Tensor:
        total = charbonnier(pred, gt, self.eps)
        terms = {"charbonnier": total.detach()}
        if self.perceptual is not None and self.perceptual_weight:
            p = self.perceptual(pred, gt)
            terms["perceptual"] = p.detach()
            total = total + self.perceptual_weight * p
        if offsets is not None and self.tv_weight:
            tv = total_variation(offsets, self.eps)
            terms["tv"] = tv.detach()
            total = total + self.tv_weight * tv
        self.last_terms = {k: float(v) for k, v in terms.items()}
        return total


def build_loss(vgg_weights: str | os.PathLike | None = None, allow_no_perceptual: bool = False,
               perceptual_weight: float = PERCEPTUAL_WEIGHT, tv_weight: float = TV_WEIGHT) -> InterpolationLoss:
    """The paper's loss. Without VGG16 weights this raises a clear error, unless
    the user asked to go on without the perceptual term (``allow_no_perceptual``)."""
    perceptual = load_vgg_perceptual(vgg_weights) if perceptual_weight else None
    if perceptual is None and perceptual_weight:
        if not allow_no_perceptual:
            raise CheckpointError(NO_VGG_MESSAGE[0].upper() + NO_VGG_MESSAGE[1:] + ".")
        warnings.warn("training without the VGG16 perceptual term (no weights file given)", stacklevel=2)
    return InterpolationLoss(perceptual, perceptual_weight if perceptual else 0.0, tv_weight)
