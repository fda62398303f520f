"""CDFI (Ding et al., CVPR 2021): a compact AdaCoF U-Net plus three upgrades.

1. **Feature pyramid**: 1×1 convs (4, 8, 12, 16, 20 channels) on the encoder
   outputs Conv1 … Conv5, each upsampled to frame size and warped by both
   (W, α, β) sets.
2. **Synthesis**: a GridNet (3 rows of 32/64/96 channels, 6 columns) fed with
   the two warped frames and all warped features (6 + 2·60 = 126 channels)
   makes a second candidate frame.
3. **Path selection**: a second occlusion head V2 on the U-Net's decoder
   features blends the AdaCoF result with the GridNet result.

The GridNet input is ordered (warped frame0, warped frame1, all levels warped
by set 1, all levels warped by set 2): the levels are concatenated and warped
in one call per kernel set.

``CDFI()`` is the paper's final model (the published compact U-Net, F=11,
d=2). ``CDFI(unet=m)`` puts the upgrades on any AdaCoF-shaped U-Net — an
:class:`AdaCoF` (e.g. the compact one ``sdesign reconstruct`` produced) or an
:class:`AdaCoFUNet` — reading its widths from its modules.

By default (``mode="exact"``) the pyramid features are upsampled to the
(padded-to-32) frame size and warped with the op's implicit replication
padding, the same way the frames are. The published code instead gives the 1×1
convs ``padding=1`` and stretches each level to the replication-padded frame
size ``(H + (F-1)·d, W + (F-1)·d)``, warped as pre-padded input; a mode with
``pyramid="published"`` (e.g. ``mode="published"``) does that. The GridNet
input channels are ordered (A1, A2, all levels warped by set 1, all levels by
set 2); the published order interleaves the levels (A1, A2, C1L, C1R, …),
which :func:`sdesign_adacof.load_published` accounts for by permuting the
first lateral block's input channels.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from sparsenet_design.plugin_api import SdesignError

from ..ops.warp import adacof_warp
from .adacof import CHANNEL_MEAN, AdaCoF, make_extras, pad_to_multiple
from .mode import Mode, as_mode
from .published import CDFI_BLEND_WIDTHS, CDFI_GRID_CHANNELS, CDFI_PYRAMID_CHANNELS, CDFI_UNET_WIDTHS
from .unet import AdaCoFUNet, head, hidden_widths, last_conv


def _prelu_conv(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
    return [nn.PReLU(), nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1)]


class LateralBlock(nn.Module):
    """PReLU-conv-PReLU-conv with a residual; a 3×3 conv maps the shortcut when
    the widths differ (decided at construction, so the block traces symbolically)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.f = nn.Sequential(*_prelu_conv(c_in, c_out), *_prelu_conv(c_out, c_out))
        self.shortcut = nn.Conv2d(c_in, c_out, kernel_size=3, padding=1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.f(x) + self.shortcut(x)


class DownSamplingBlock(nn.Sequential):
    def __init__(self, c_in: int, c_out: int):
        super().__init__(*_prelu_conv(c_in, c_out, stride=2), *_prelu_conv(c_out, c_out))


class UpSamplingBlock(nn.Sequential):
    def __init__(self, c_in: int, c_out: int):
        super().__init__(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                         *_prelu_conv(c_in, c_out), *_prelu_conv(c_out, c_out))


class GridNet(nn.Module):
    """GridNet (Fourure et al. 2017) with 3 rows and 6 columns: three columns of
    downsampling and three of upsampling, lateral blocks along each row."""

    columns = 6

    def __init__(self, in_channels: int, out_channels: int, grid_channels=CDFI_GRID_CHANNELS):
        super().__init__()
        ch = tuple(int(c) for c in grid_channels)
        if len(ch) != 3:
            raise SdesignError(f"GridNet needs three row widths; got {ch}.")
        self.lateral_init = LateralBlock(in_channels, ch[0])
        for r, c_row in enumerate(ch):
            for c in range(self.columns - 1):
                setattr(self, f"lateral_{r}_{c}", LateralBlock(c_row, c_row))
        half = self.columns // 2
        for r in range(2):
            for c in range(half):
                setattr(self, f"down_{r}_{c}", DownSamplingBlock(ch[r], ch[r + 1]))
                setattr(self, f"up_{r}_{c}", UpSamplingBlock(ch[r + 1], ch[r]))
        self.lateral_final = LateralBlock(ch[0], out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = self.lateral_init(x)
        s1 = self.down_0_0(s0)
        s2 = self.down_1_0(s1)
        for c in range(2):  # columns 1, 2: lateral + downsampling
            s0 = getattr(self, f"lateral_0_{c}")(s0)
            s1 = getattr(self, f"down_0_{c + 1}")(s0) + getattr(self, f"lateral_1_{c}")(s1)
            s2 = getattr(self, f"down_1_{c + 1}")(s1) + getattr(self, f"lateral_2_{c}")(s2)
        for c in range(2, 5):  # columns 3, 4, 5: lateral + upsampling
            s2 = getattr(self, f"lateral_2_{c}")(s2)
            s1 = getattr(self, f"up_1_{c - 2}")(s2) + getattr(self, f"lateral_1_{c}")(s1)
            s0 = getattr(self, f"up_0_{c - 2}")(s1) + getattr(self, f"lateral_0_{c}")(s0)
        return self.lateral_final(s0)


class CDFI(nn.Module):
    """CDFI frame interpolation: ``model(frame0, frame1) -> middle frame``.

    ``return_extras=True`` returns ``(frame, extras)`` with the AdaCoF extras
    (see :mod:`sdesign_adacof.models.adacof`) plus ``extras["blend"]`` (V2).
    """

    def __init__(self, unet: AdaCoF | AdaCoFUNet | None = None, kernel_size: int = 11, dilation: int = 2,
                 pyramid_channels=CDFI_PYRAMID_CHANNELS, grid_channels=CDFI_GRID_CHANNELS,
                 blend_widths: tuple[int, ...] | None = None, mode: Mode | str | None = None):
        super().__init__()
        if unet is None:
            unet = AdaCoFUNet(kernel_size, CDFI_UNET_WIDTHS)
            blend_widths = blend_widths or CDFI_BLEND_WIDTHS
        elif isinstance(unet, AdaCoF):
            unet = unet.unet
        if not isinstance(unet, AdaCoFUNet):
            raise SdesignError(
                f"CDFI builds on an AdaCoF-shaped U-Net: pass an AdaCoF model or an AdaCoFUNet, "
                f"not {type(unet).__name__}."
            )
        if unet.kernel_size != int(kernel_size):
            raise SdesignError(
                f"CDFI(kernel_size={kernel_size}) was given a U-Net built for F={unet.kernel_size}; "
                f"pass kernel_size={unet.kernel_size}."
            )
        self.kernel_size = int(kernel_size)
        self.dilation = int(dilation)
        self.unet = unet
        self.register_buffer("channel_mean", torch.tensor(CHANNEL_MEAN).view(1, 3, 1, 1), persistent=False)
        pyramid_channels = tuple(int(c) for c in pyramid_channels)
        encoder = unet.encoder_widths()
        if len(pyramid_channels) != len(encoder):
            raise SdesignError(
                f"CDFI needs one pyramid width per encoder level ({len(encoder)}); got {pyramid_channels}.")
        self.pyramid = nn.ModuleList(
            nn.Conv2d(c_in, c_out, kernel_size=1) for c_in, c_out in zip(encoder, pyramid_channels))
        blend_widths = tuple(blend_widths or hidden_widths(unet.occlusion))
        self.blend = head(unet.decoder_width(), blend_widths, 1, nn.Sigmoid())
        self.synthesis = GridNet(6 + 2 * sum(pyramid_channels), 3, grid_channels)
        self.set_mode(mode)

    def set_mode(self, mode: Mode | str | None) -> "CDFI":
        """Switch the warp's sampling and backward and the pyramid geometry
        (see :mod:`sdesign_adacof.models.mode`). The published geometry pads
        the 1×1 pyramid convs by 1; their parameters do not change."""
        self.mode = as_mode(mode)
        padding = (1, 1) if self.mode.published_pyramid else (0, 0)
        for conv in self.pyramid:
            conv.padding = padding
        return self

    def warp(self, image: torch.Tensor, weight: torch.Tensor, alpha: torch.Tensor,
             beta: torch.Tensor) -> torch.Tensor:
        """The AdaCoF warp with this model's dilation and mode."""
        return adacof_warp(image, weight, alpha, beta, self.dilation, self.mode.truncate, self.mode.published_grad)

    @torch.no_grad()
    def start_from_average(self, centre_weight: float = 0.99, synthesis_share: float = 0.01) -> "CDFI":
        """Start close to the frame average: the U-Net as in
        :meth:`AdaCoFUNet.start_from_average`, and path selection V2 giving the
        (untrained) GridNet only ``synthesis_share`` of the output. Returns ``self``."""
        if not 0 < synthesis_share < 1:
            raise SdesignError(f"synthesis_share must be in (0, 1); got {synthesis_share}.")
        self.unet.start_from_average(centre_weight)
        last = last_conv(self.blend)
        last.weight.zero_()
        last.bias.fill_(math.log(synthesis_share / (1 - synthesis_share)))
        return self

    def forward(self, frame0: torch.Tensor, frame1: torch.Tensor, return_extras: bool = False):
        height, width = frame0.shape[2], frame0.shape[3]
        frame0, frame1 = pad_to_multiple(frame0), pad_to_multiple(frame1)
        est = self.unet(torch.cat([frame0 - self.channel_mean, frame1 - self.channel_mean], dim=1))
        size = (frame0.shape[2], frame0.shape[3])
        if self.mode.published_pyramid:  # stretched to the replication-padded size, warped as pre-padded
            span = (self.kernel_size - 1) * self.dilation
            size = (size[0] + span, size[1] + span)
        set0 = (est.weight1, est.alpha1, est.beta1)
        set1 = (est.weight2, est.alpha2, est.beta2)
        warped0 = self.warp(frame0, *set0)
        warped1 = self.warp(frame1, *set1)
        levels = [F.interpolate(conv(features), size=size, mode="bilinear", align_corners=False)
                  for conv, features in zip(self.pyramid, est.encoder)]
        # all levels share each kernel set: one warp per set computes the sampling geometry once
        pyramid = torch.cat(levels, dim=1)
        candidates = [warped0, warped1, self.warp(pyramid, *set0), self.warp(pyramid, *set1)]
        synthesised = self.synthesis(torch.cat(candidates, dim=1))
        blend = self.blend(est.decoder)
        adacof = est.occlusion * warped0 + (1 - est.occlusion) * warped1
        frame = blend * synthesised + (1 - blend) * adacof  # V2 weighs the synthesis path, as published
        frame = frame[:, :, :height, :width]
        if isinstance(return_extras, bool) and return_extras:
            extras = make_extras(est)
            extras["blend"] = blend
            return frame, extras
        return frame
