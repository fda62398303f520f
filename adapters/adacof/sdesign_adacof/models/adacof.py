"""AdaCoF (Lee et al., CVPR 2020) as docs/adacof.md describes it.

``AdaCoF(kernel_size=5, dilation=1)`` is the paper's M0 (21.84M parameters);
``AdaCoF(11, 2)`` is AdaCoF+ (22.93M). ``model(frame0, frame1)`` takes two RGB
frames in [0, 1] of any size, reflection-pads them to a multiple of 32,
estimates two sets of per-pixel kernels and offsets plus an occlusion mask, and
returns the middle frame cropped back to the input size.

For training, ``model(frame0, frame1, return_extras=True)`` returns
``(frame, extras)``:

- ``extras["offsets"]``: ``[(alpha1, beta1), (alpha2, beta2)]``, each (B, F², H', W');
- ``extras["weights"]``: ``[weight1, weight2]``;
- ``extras["occlusion"]``: the mask V1 (B, 1, H', W');
- ``extras["g_spatial"]``, ``extras["g_occlusion"]``: the published smoothness
  terms (see :func:`offset_smoothness`, :func:`occlusion_smoothness`).

(H', W' are the padded sizes.) ``return_extras`` must be a real ``bool``: the
check is written so that graph tracers, which pass a placeholder, see the
plain path.

``mode`` (a :class:`~sdesign_adacof.models.mode.Mode` or a preset name:
``"exact"``, ``"published"``, ``"published-training"``) chooses the warp's
sampling and backward; ``model.set_mode(...)`` changes it later.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..ops.warp import adacof_warp
from .mode import Mode, as_mode
from .unet import AdaCoFUNet, UNetOutput

#: Per-channel RGB means the published code subtracts from each frame (Vimeo-90K).
CHANNEL_MEAN = (0.4631, 0.4352, 0.3990)
MULTIPLE = 32  # five 2x poolings


def pad_to_multiple(frame: torch.Tensor, multiple: int = MULTIPLE) -> torch.Tensor:
    """Reflection-pad bottom/right so height and width are multiples of ``multiple``.

    Written with shape arithmetic only (no ``if``), so ``torch.fx`` can trace it.
    """
    height, width = frame.shape[2], frame.shape[3]
    pad_h = (multiple - height % multiple) % multiple
    pad_w = (multiple - width % multiple) % multiple
    return F.pad(frame, [0, pad_w, 0, pad_h], mode="reflect")


def charbonnier_mean(x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    return torch.sqrt(x * x + eps * eps).mean()


def _neighbour_charbonnier(m: torch.Tensor, eps: float) -> torch.Tensor:
    return (charbonnier_mean(m[:, :, :, :-1] - m[:, :, :, 1:], eps)
            + charbonnier_mean(m[:, :, :-1, :] - m[:, :, 1:, :], eps))


def offset_smoothness(extras: dict, eps: float = 1e-3) -> torch.Tensor:
    """The published ``g_Spatial``: Charbonnier of neighbour differences of the
    kernel-weighted mean offsets, mean(W·α) and mean(W·β), summed over both sets."""
    total = 0
    for weight, (alpha, beta) in zip(extras["weights"], extras["offsets"]):
        total = total + _neighbour_charbonnier((weight * alpha).mean(1, keepdim=True), eps)
        total = total + _neighbour_charbonnier((weight * beta).mean(1, keepdim=True), eps)
    return total


def occlusion_smoothness(extras: dict, eps: float = 1e-3) -> torch.Tensor:
    """The published ``g_Occlusion``: Charbonnier of neighbour differences of V1."""
    return _neighbour_charbonnier(extras["occlusion"], eps)


class AdaCoF(nn.Module):
    """AdaCoF frame interpolation: ``model(frame0, frame1) -> middle frame``."""

    def __init__(self, kernel_size: int = 5, dilation: int = 1,
                 widths: dict[str, tuple[int, ...]] | None = None, mode: Mode | str | None = None):
        super().__init__()
        self.kernel_size = int(kernel_size)
        self.dilation = int(dilation)
        self.unet = AdaCoFUNet(self.kernel_size, widths)
        self.register_buffer("channel_mean", torch.tensor(CHANNEL_MEAN).view(1, 3, 1, 1), persistent=False)
        self.mode = as_mode(mode)

    def set_mode(self, mode: Mode | str | None) -> "AdaCoF":
        """Switch the warp's sampling and backward (see :mod:`sdesign_adacof.models.mode`)."""
        self.mode = as_mode(mode)
        return self

    def warp(self, image: torch.Tensor, weight: torch.Tensor, alpha: torch.Tensor,
             beta: torch.Tensor) -> torch.Tensor:
        """The AdaCoF warp with this model's dilation and mode."""
        return adacof_warp(image, weight, alpha, beta, self.dilation, self.mode.truncate, self.mode.published_grad)

    def start_from_average(self, centre_weight: float = 0.99) -> "AdaCoF":
        """Start as the frame average (see :meth:`AdaCoFUNet.start_from_average`)."""
        self.unet.start_from_average(centre_weight)
        return self

    def estimate(self, frame0: torch.Tensor, frame1: torch.Tensor) -> UNetOutput:
        """Run the U-Net on frames already padded to a multiple of 32."""
        return self.unet(torch.cat([frame0 - self.channel_mean, frame1 - self.channel_mean], dim=1))

    def forward(self, frame0: torch.Tensor, frame1: torch.Tensor, return_extras: bool = False):
        height, width = frame0.shape[2], frame0.shape[3]
        frame0, frame1 = pad_to_multiple(frame0), pad_to_multiple(frame1)
        est = self.estimate(frame0, frame1)
        warped0 = self.warp(frame0, est.weight1, est.alpha1, est.beta1)
        warped1 = self.warp(frame1, est.weight2, est.alpha2, est.beta2)
        frame = est.occlusion * warped0 + (1 - est.occlusion) * warped1
        frame = frame[:, :, :height, :width]
        if isinstance(return_extras, bool) and return_extras:
            return frame, make_extras(est)
        return frame


def make_extras(est: UNetOutput) -> dict:
    extras = {
        "offsets": [(est.alpha1, est.beta1), (est.alpha2, est.beta2)],
        "weights": [est.weight1, est.weight2],
        "occlusion": est.occlusion,
    }
    extras["g_spatial"] = offset_smoothness(extras)
    extras["g_occlusion"] = occlusion_smoothness(extras)
    return extras
