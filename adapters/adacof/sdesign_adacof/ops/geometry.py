"""Shape checks and sampling geometry shared by every AdaCoF warp backend.

The warp reads ``input`` (B, C, Hin, Win) at F² deformed taps per output pixel
of ``weight``/``alpha``/``beta`` (B, F², H, W). Two input conventions are
accepted and give the same result on the same image:

- *unpadded* (``Hin == H``): the op behaves as if the input were
  replication-padded by ``P = (F-1)·d // 2`` on each side, without building the
  padded copy;
- *pre-padded* (``Hin == H + (F-1)·d``), the published CUDA kernels'
  convention: the caller padded the input itself.

Tap ``t = k·F + l`` of output pixel ``(i, j)`` samples the input at row
``i + d·k + α + shift_y`` and column ``j + d·l + β + shift_x``, where the shift
is ``-P`` for unpadded and ``0`` for pre-padded input. Sample corners are the
floor of that position and the next integer, each clamped to the input
(which, for unpadded input, is exactly clamping to the replication-padded
image of the reference).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from sparsenet_design.plugin_api import SdesignError


@dataclass(frozen=True)
class WarpGeometry:
    batch: int
    channels: int
    in_height: int
    in_width: int
    height: int
    width: int
    kernel_size: int
    dilation: int
    shift_y: int
    shift_x: int

    @property
    def taps(self) -> int:
        return self.kernel_size * self.kernel_size


def _shift(in_size: int, out_size: int, span: int, what: str, shapes: str) -> int:
    if in_size == out_size:
        return -(span // 2)
    if in_size == out_size + span:
        return 0
    raise SdesignError(
        f"adacof_warp: the input {what} ({in_size}) must equal the {what} of weight/alpha/beta "
        f"({out_size}, unpadded input) or that plus (F-1)*dilation = {span} (input padded by the "
        f"caller, as the published kernels expect). Got {shapes}."
    )


def warp_geometry(input: torch.Tensor, weight: torch.Tensor, alpha: torch.Tensor,
                  beta: torch.Tensor, dilation: int) -> WarpGeometry:
    """Validate the four tensors and return the sampling geometry, or raise a clear error."""
    shapes = (f"input {tuple(input.shape)}, weight {tuple(weight.shape)}, "
              f"alpha {tuple(alpha.shape)}, beta {tuple(beta.shape)}, dilation {dilation}")
    if input.dim() != 4 or weight.dim() != 4:
        raise SdesignError(f"adacof_warp expects 4-D tensors (B, C, H, W); got {shapes}.")
    if not (weight.shape == alpha.shape == beta.shape):
        raise SdesignError(f"adacof_warp: weight, alpha and beta must have one shape (B, F*F, H, W); got {shapes}.")
    taps = int(weight.shape[1])
    kernel_size = math.isqrt(taps)
    if kernel_size * kernel_size != taps or taps == 0:
        raise SdesignError(
            f"adacof_warp: weight/alpha/beta need F*F channels (one per kernel tap) for some F; "
            f"{taps} is not a square. Got {shapes}."
        )
    if int(input.shape[0]) != int(weight.shape[0]):
        raise SdesignError(f"adacof_warp: input and weight disagree on the batch size; got {shapes}.")
    if int(dilation) < 1:
        raise SdesignError(f"adacof_warp: dilation must be a positive integer; got {shapes}.")
    devices = {t.device for t in (input, weight, alpha, beta)}
    if len(devices) > 1:
        raise SdesignError(f"adacof_warp: all tensors must be on one device; got {sorted(map(str, devices))}.")
    span = (kernel_size - 1) * int(dilation)
    height, width = int(weight.shape[2]), int(weight.shape[3])
    shift_y = _shift(int(input.shape[2]), height, span, "height", shapes)
    shift_x = _shift(int(input.shape[3]), width, span, "width", shapes)
    return WarpGeometry(
        batch=int(input.shape[0]), channels=int(input.shape[1]),
        in_height=int(input.shape[2]), in_width=int(input.shape[3]),
        height=height, width=width, kernel_size=kernel_size, dilation=int(dilation),
        shift_y=shift_y, shift_x=shift_x,
    )


def output_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """The dtype the warp returns: the promoted floating dtype of its tensors."""
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    if not dtype.is_floating_point:
        dtype = torch.get_default_dtype()
    return dtype


def math_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the warp computes in: half types are computed in float32,
    because sample positions of a few hundred pixels need more than 8 bits of mantissa."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
