"""The pure-PyTorch AdaCoF warp: forward and all four gradients, any device.

This is the reference the CUDA kernels are checked against, and the path used
on CPU or without CuPy. It is vectorised over pixels and over a chunk of taps
at a time (gather / scatter-add on the flattened image), and memory-lean: the
chunk is sized so no temporary exceeds ``_CHUNK_ELEMENTS`` values, and the
backward recomputes the sampling geometry instead of saving it.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from .geometry import WarpGeometry, math_dtype, output_dtype, warp_geometry

# Largest B·C·taps·H·W of one temporary (16M values = 64 MB in float32).
_CHUNK_ELEMENTS = 1 << 24


@dataclass
class _Taps:
    """Sampling geometry of a chunk of taps: flat corner indices and bilinear fractions."""

    start: int
    stop: int
    idx00: torch.Tensor  # (B, T·H·W) int64 flat indices into the Hin·Win image
    idx01: torch.Tensor
    idx10: torch.Tensor
    idx11: torch.Tensor
    fy: torch.Tensor  # (B, T, H·W) fractional parts
    fx: torch.Tensor


def _tap_chunks(geo: WarpGeometry) -> Iterator[tuple[int, int]]:
    per_tap = geo.batch * max(geo.channels, 1) * geo.height * geo.width
    size = max(1, min(geo.taps, _CHUNK_ELEMENTS // max(per_tap, 1)))
    for start in range(0, geo.taps, size):
        yield start, min(start + size, geo.taps)


def _taps(geo: WarpGeometry, alpha: torch.Tensor, beta: torch.Tensor, start: int, stop: int) -> _Taps:
    device, dtype = alpha.device, alpha.dtype
    tap = torch.arange(start, stop, device=device)
    row_off = (tap // geo.kernel_size) * geo.dilation + geo.shift_y  # (T,)
    col_off = (tap % geo.kernel_size) * geo.dilation + geo.shift_x
    rows = torch.arange(geo.height, device=device, dtype=dtype)
    cols = torch.arange(geo.width, device=device, dtype=dtype)
    y = alpha[:, start:stop] + (rows.view(1, 1, -1, 1) + row_off.view(1, -1, 1, 1).to(dtype))
    x = beta[:, start:stop] + (cols.view(1, 1, 1, -1) + col_off.view(1, -1, 1, 1).to(dtype))
    y0, x0 = torch.floor(y), torch.floor(x)
    fy, fx = y - y0, x - x0
    r0 = y0.clamp(0, geo.in_height - 1).long()
    r1 = (y0 + 1).clamp(0, geo.in_height - 1).long()
    c0 = x0.clamp(0, geo.in_width - 1).long()
    c1 = (x0 + 1).clamp(0, geo.in_width - 1).long()
    w = geo.in_width
    flat = lambda r, c: (r * w + c).reshape(geo.batch, -1)  # noqa: E731
    n = geo.height * geo.width
    return _Taps(start, stop, flat(r0, c0), flat(r0, c1), flat(r1, c0), flat(r1, c1),
                 fy.reshape(geo.batch, -1, n), fx.reshape(geo.batch, -1, n))


def _gather(image: torch.Tensor, index: torch.Tensor, taps: int) -> torch.Tensor:
    """image (B, C, Hin·Win), index (B, T·H·W) -> (B, C, T, H·W)."""
    b, c, _ = image.shape
    out = image.gather(2, index.unsqueeze(1).expand(b, c, index.shape[1]))
    return out.view(b, c, taps, -1)


def _prepare(input, weight, alpha, beta, dilation):
    geo = warp_geometry(input, weight, alpha, beta, dilation)
    out_dtype = output_dtype(input, weight, alpha, beta)
    dtype = math_dtype(out_dtype)
    cast = lambda t: t.to(dtype).contiguous()  # noqa: E731
    return geo, out_dtype, cast(input), cast(weight), cast(alpha), cast(beta)


def warp_forward_torch(input: torch.Tensor, weight: torch.Tensor, alpha: torch.Tensor,
                       beta: torch.Tensor, dilation: int) -> torch.Tensor:
    """AdaCoF warp forward (no autograd graph is recorded through the internals)."""
    geo, out_dtype, x, w, a, b = _prepare(input, weight, alpha, beta, dilation)
    n = geo.height * geo.width
    image = x.view(geo.batch, geo.channels, -1)
    weights = w.view(geo.batch, geo.taps, n)
    out = x.new_zeros(geo.batch, geo.channels, n)
    with torch.no_grad():
        for start, stop in _tap_chunks(geo):
            t = _taps(geo, a, b, start, stop)
            wt = weights[:, start:stop]
            gy, gx = 1 - t.fy, 1 - t.fx
            k = stop - start
            for index, bilinear in ((t.idx00, gy * gx), (t.idx01, gy * t.fx),
                                    (t.idx10, t.fy * gx), (t.idx11, t.fy * t.fx)):
                out += (_gather(image, index, k) * (wt * bilinear).unsqueeze(1)).sum(2)
    return out.view(geo.batch, geo.channels, geo.height, geo.width).to(out_dtype)


def warp_backward_torch(grad_output: torch.Tensor, input: torch.Tensor, weight: torch.Tensor,
                        alpha: torch.Tensor, beta: torch.Tensor, dilation: int,
                        input_grad: bool = True
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of the warp w.r.t. input, weight, alpha and beta (each in its own dtype).

    With ``input_grad=False`` the input gradient is returned as zeros without
    the scatter-add (the caller does not need it).
    """
    geo, _, x, w, a, b = _prepare(input, weight, alpha, beta, dilation)
    n = geo.height * geo.width
    image = x.view(geo.batch, geo.channels, -1)
    weights = w.view(geo.batch, geo.taps, n)
    go = grad_output.to(x.dtype).reshape(geo.batch, geo.channels, 1, n)
    grad_image = torch.zeros_like(image)
    grad_w = torch.empty_like(weights)
    grad_a = torch.empty_like(weights)
    grad_b = torch.empty_like(weights)
    with torch.no_grad():
        for start, stop in _tap_chunks(geo):
            t = _taps(geo, a, b, start, stop)
            k = stop - start
            wt = weights[:, start:stop]
            corners = [_gather(image, idx, k) for idx in (t.idx00, t.idx01, t.idx10, t.idx11)]
            s00, s01, s10, s11 = [(go * v).sum(1) for v in corners]  # (B, T, H·W)
            gy, gx = 1 - t.fy, 1 - t.fx
            grad_w[:, start:stop] = gy * (gx * s00 + t.fx * s01) + t.fy * (gx * s10 + t.fx * s11)
            grad_a[:, start:stop] = wt * (gx * (s10 - s00) + t.fx * (s11 - s01))
            grad_b[:, start:stop] = wt * (gy * (s01 - s00) + t.fy * (s11 - s10))
            if input_grad:
                for index, bilinear in ((t.idx00, gy * gx), (t.idx01, gy * t.fx),
                                        (t.idx10, t.fy * gx), (t.idx11, t.fy * t.fx)):
                    contrib = (go * (wt * bilinear).unsqueeze(1)).reshape(geo.batch, geo.channels, -1)
                    grad_image.scatter_add_(
                        2, index.unsqueeze(1).expand(geo.batch, geo.channels, index.shape[1]), contrib)
    shape = (geo.batch, geo.taps, geo.height, geo.width)
    return (grad_image.view_as(input).to(input.dtype), grad_w.view(shape).to(weight.dtype),
            grad_a.view(shape).to(alpha.dtype), grad_b.view(shape).to(beta.dtype))
