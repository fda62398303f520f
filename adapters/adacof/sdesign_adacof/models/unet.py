"""The AdaCoF kernel-estimation U-Net, with every width configurable.

Layout (docs/adacof.md): five encoder "Basic" blocks (three 3×3 conv + ReLU,
each followed by 2×2 average pooling), four decoder Basic blocks each followed
by an upsampling block (bilinear ×2, align_corners=True, 3×3 conv + ReLU) whose
output is added to the matching encoder output, and seven heads on the
decoder's result: Weight1/2 (softmax), Alpha1/2, Beta1/2 (F² channels each)
and the occlusion mask (1 channel, sigmoid). Each head is three 3×3 convs with
ReLU, bilinear ×2, and a final 3×3 conv.

Widths are a dict ``block name -> tuple of conv output widths`` (see
:data:`FULL_WIDTHS`); an upsampling block's width is that of the encoder
output it is added to. A U-Net rebuilt by ``sdesign reconstruct`` keeps this
class and its module names, so :class:`~sdesign_adacof.models.cdfi.CDFI` can
read the widths back from the modules.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from sparsenet_design.plugin_api import SdesignError

ENCODER = ("conv1", "conv2", "conv3", "conv4", "conv5")
DECODER = ("deconv5", "deconv4", "deconv3", "deconv2")
UPSAMPLERS = ("upsample5", "upsample4", "upsample3", "upsample2")
KERNEL_HEADS = ("weight1", "alpha1", "beta1", "weight2", "alpha2", "beta2")
HEADS = KERNEL_HEADS + ("occlusion",)


def full_widths(kernel_size: int) -> dict[str, tuple[int, ...]]:
    """The widths of the original AdaCoF U-Net for kernel size F."""
    taps = kernel_size * kernel_size
    widths = {name: (c, c, c) for name, c in zip(ENCODER, (32, 64, 128, 256, 512))}
    widths.update({name: (c, c, c) for name, c in zip(DECODER, (512, 256, 128, 64))})
    widths.update({name: (64, 64, taps) for name in KERNEL_HEADS})
    widths["occlusion"] = (64, 64, 64)
    return widths


def conv3x3(c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=3, stride=1, padding=1)


def basic_block(c_in: int, widths: tuple[int, ...]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for c_out in widths:
        layers += [conv3x3(c_in, c_out), nn.ReLU(inplace=False)]
        c_in = c_out
    return nn.Sequential(*layers)


def upsample_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
                         conv3x3(c_in, c_out), nn.ReLU(inplace=False))


def head(c_in: int, hidden: tuple[int, ...], c_out: int, final: nn.Module | None) -> nn.Sequential:
    body = basic_block(c_in, hidden)
    layers = [*body, nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
              conv3x3(hidden[-1], c_out)]
    if final is not None:
        layers.append(final)
    return nn.Sequential(*layers)


def out_channels(block: nn.Module) -> int:
    """Output width of a block: its last convolution's out_channels."""
    return last_conv(block).out_channels


def last_conv(block: nn.Module) -> nn.Conv2d:
    return [m for m in block.modules() if isinstance(m, nn.Conv2d)][-1]


def hidden_widths(block: nn.Module) -> tuple[int, ...]:
    """Widths of all convs of a head but the final one."""
    return tuple(m.out_channels for m in block.modules() if isinstance(m, nn.Conv2d))[:-1]


class UNetOutput(NamedTuple):
    weight1: torch.Tensor
    alpha1: torch.Tensor
    beta1: torch.Tensor
    weight2: torch.Tensor
    alpha2: torch.Tensor
    beta2: torch.Tensor
    occlusion: torch.Tensor
    decoder: torch.Tensor  # the features the heads read (half resolution)
    encoder: tuple[torch.Tensor, ...]  # Conv1 … Conv5 outputs, before pooling


class AdaCoFUNet(nn.Module):
    """Kernel estimation: 6-channel input (two mean-shifted frames) -> W, α, β ×2 and V."""

    def __init__(self, kernel_size: int = 5, widths: dict[str, tuple[int, ...]] | None = None):
        super().__init__()
        self.kernel_size = int(kernel_size)
        w = _complete_widths(self.kernel_size, widths)
        c_in = 6
        for name in ENCODER:
            setattr(self, name, basic_block(c_in, w[name]))
            c_in = w[name][-1]
        self.pool = nn.AvgPool2d(kernel_size=2, stride=2)
        for name, up, skip in zip(DECODER, UPSAMPLERS, reversed(ENCODER)):
            setattr(self, name, basic_block(c_in, w[name]))
            setattr(self, up, upsample_block(w[name][-1], w[skip][-1]))
            c_in = w[skip][-1]
        taps = self.kernel_size * self.kernel_size
        for name in KERNEL_HEADS:
            final = nn.Softmax(dim=1) if name.startswith("weight") else None
            setattr(self, name, head(c_in, w[name], taps, final))
        self.occlusion = head(c_in, w["occlusion"], 1, nn.Sigmoid())

    @torch.no_grad()
    def start_from_average(self, centre_weight: float = 0.99) -> "AdaCoFUNet":
        """Re-initialise the seven heads' last convs so the model starts as the
        frame average: zero offsets, kernels with ``centre_weight`` on the centre
        tap (the rest spread evenly), occlusion V = 0.5. The heads' last conv
        weights become zero, so their inputs still get gradients after one step
        (the zero-init residual idea). Meant for short training budgets; the
        paper trains from the default init. Returns ``self``."""
        if not 0 < centre_weight < 1:
            raise SdesignError(f"centre_weight must be in (0, 1); got {centre_weight}.")
        taps = self.kernel_size * self.kernel_size
        centre_logit = math.log(centre_weight * (taps - 1) / (1 - centre_weight)) if taps > 1 else 0.0
        for name in HEADS:
            last = last_conv(getattr(self, name))
            last.weight.zero_()
            last.bias.zero_()
            if name.startswith("weight"):
                last.bias[taps // 2] = centre_logit
        return self

    def encoder_widths(self) -> tuple[int, ...]:
        return tuple(out_channels(getattr(self, name)) for name in ENCODER)

    def decoder_width(self) -> int:
        return out_channels(self.upsample2)

    def forward(self, x: torch.Tensor) -> UNetOutput:
        skips = []
        for name in ENCODER:
            x = getattr(self, name)(x)
            skips.append(x)
            x = self.pool(x)
        for name, up, skip in zip(DECODER, UPSAMPLERS, reversed(skips)):
            x = getattr(self, up)(getattr(self, name)(x)) + skip
        kernels = [getattr(self, name)(x) for name in HEADS]
        return UNetOutput(*kernels, decoder=x, encoder=tuple(skips))


def _complete_widths(kernel_size: int, widths: dict | None) -> dict[str, tuple[int, ...]]:
    full = full_widths(kernel_size)
    if widths is None:
        return full
    unknown = sorted(set(widths) - set(full))
    if unknown:
        raise SdesignError(
            f"Unknown AdaCoF U-Net blocks in widths: {', '.join(unknown)}. Known blocks: "
            f"{', '.join(full)} (upsampling blocks take the width of the encoder output they are added to)."
        )
    merged = dict(full)
    for name, value in widths.items():
        value = tuple(int(v) for v in value)
        if len(value) != len(full[name]) or min(value) < 1:
            raise SdesignError(
                f"AdaCoF U-Net block {name!r} needs {len(full[name])} positive conv widths; got {value}."
            )
        merged[name] = value
    return merged
