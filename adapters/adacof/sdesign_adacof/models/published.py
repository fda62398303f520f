"""Widths of the compact U-Nets in the published CDFI code (facts, for
parameter-count checks and as CDFI's default U-Net).

Each entry is the output width of each conv of a block, in the format of
:func:`sdesign_adacof.models.unet.full_widths`; heads list their hidden
widths (the final conv gives F² or 1 channels). Upsampling blocks take the
width of the encoder output they are added to, as in the published models.
"""
from __future__ import annotations

#: The hand-built compressed AdaCoF (lr 1e-1, λ 1e-5, "-min"): 2.38M params at F=5.
COMPRESSED_ADACOF_WIDTHS: dict[str, tuple[int, ...]] = {
    "conv1": (24, 24, 24), "conv2": (48, 48, 51), "conv3": (99, 97, 94),
    "conv4": (156, 142, 159), "conv5": (92, 72, 121),
    "deconv5": (99, 69, 36), "deconv4": (74, 83, 81), "deconv3": (83, 88, 72), "deconv2": (45, 47, 44),
    "weight1": (51, 49, 21), "alpha1": (50, 48, 20), "beta1": (51, 50, 20),
    "weight2": (50, 49, 20), "alpha2": (50, 49, 20), "beta2": (51, 50, 20),
    "occlusion": (52, 51, 48),
}

#: The compact U-Net under the final CDFI model (F=11, d=2).
CDFI_UNET_WIDTHS: dict[str, tuple[int, ...]] = {
    "conv1": (24, 24, 24), "conv2": (48, 48, 52), "conv3": (99, 97, 95),
    "conv4": (156, 142, 159), "conv5": (92, 72, 121),
    "deconv5": (99, 69, 36), "deconv4": (74, 83, 81), "deconv3": (83, 88, 72), "deconv2": (45, 45, 45),
    **{name: (52, 49, 21) for name in ("weight1", "alpha1", "beta1", "weight2", "alpha2", "beta2")},
    "occlusion": (52, 52, 48),
}

#: CDFI's second occlusion head (path selection), the feature pyramid and the GridNet.
CDFI_BLEND_WIDTHS: tuple[int, ...] = (52, 52, 48)
CDFI_PYRAMID_CHANNELS: tuple[int, ...] = (4, 8, 12, 16, 20)
CDFI_GRID_CHANNELS: tuple[int, ...] = (32, 64, 96)
