"""The pure-PyTorch AdaCoF warp: forward and all four gradients, any device.

Two implementations of the same math, both vectorised over pixels and over a
chunk of taps at a time, and memory-lean (no temporary exceeds
``_CHUNK_ELEMENTS`` values; the backward recomputes the sampling geometry
instead of saving it):

- ``warp_*_reference``: explicit floor / clamp / gather / scatter-add on the
  flattened image, term by term the arithmetic of the CUDA kernels. Exact; the
  reference the kernels are checked against.
- ``warp_*_torch``: the taps of a chunk are stacked along the height and
  sampled with one ``grid_sample`` call (``padding_mode="border"``,
  ``align_corners=True``: clamping the coordinate to the image gives the same
  values and gradients as clamping the corners). 4-5x faster on CPU; sample
  positions pass through normalised coordinates, which costs about 1e-4 px of
  position in float32. The default PyTorch path.

Both take ``truncate``: with ``False`` (the default) the lower sample corner is
``floor`` of the sample position, true bilinear interpolation. With ``True``
it is the tap's integer position plus the offset rounded toward zero, what the
published CUDA kernels compute (``int A = (int) alpha``): for a negative
fractional offset the fractions are negative and the value is extrapolated
from the pixel pair on the other side of the sample. ``grid_sample`` cannot
extrapolate, so the ``torch`` functions hand truncated sampling to the exact
gather path.
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


def _taps(geo: WarpGeometry, alpha: torch.Tensor, beta: torch.Tensor, start: int, stop: int,
          truncate: bool = False) -> _Taps:
    device, dtype = alpha.device, alpha.dtype
    tap = torch.arange(start, stop, device=device)
    row_off = (tap // geo.kernel_size) * geo.dilation + geo.shift_y  # (T,)
    col_off = (tap % geo.kernel_size) * geo.dilation + geo.shift_x
    rows = torch.arange(geo.height, device=device, dtype=dtype)
    cols = torch.arange(geo.width, device=device, dtype=dtype)
    base_y = rows.view(1, 1, -1, 1) + row_off.view(1, -1, 1, 1).to(dtype)  # integer tap positions
    base_x = cols.view(1, 1, 1, -1) + col_off.view(1, -1, 1, 1).to(dtype)
    a, b = alpha[:, start:stop], beta[:, start:stop]
    if truncate:  # the published kernels: integer part of the offset by a C cast (toward zero)
        ta, tb = torch.trunc(a), torch.trunc(b)
        y0, x0 = base_y + ta, base_x + tb
        fy, fx = a - ta, b - tb
    else:
        y, x = a + base_y, b + base_x
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


def warp_forward_reference(input: torch.Tensor, weight: torch.Tensor, alpha: torch.Tensor,
                           beta: torch.Tensor, dilation: int, truncate: bool = False) -> torch.Tensor:
    """AdaCoF warp forward (no autograd graph is recorded through the internals)."""
    geo, out_dtype, x, w, a, b = _prepare(input, weight, alpha, beta, dilation)
    n = geo.height * geo.width
    image = x.view(geo.batch, geo.channels, -1)
    weights = w.view(geo.batch, geo.taps, n)
    out = x.new_zeros(geo.batch, geo.channels, n)
    with torch.no_grad():
        for start, stop in _tap_chunks(geo):
            t = _taps(geo, a, b, start, stop, truncate)
            wt = weights[:, start:stop]
            gy, gx = 1 - t.fy, 1 - t.fx
            k = stop - start
            for index, bilinear in ((t.idx00, gy * gx), (t.idx01, gy * t.fx),
                                    (t.idx10, t.fy * gx), (t.idx11, t.fy * t.fx)):
                out += (_gather(image, index, k) * (wt * bilinear).unsqueeze(1)).sum(2)
    return out.view(geo.batch, geo.channels, geo.height, geo.width).to(out_dtype)


def warp_backward_reference(grad_output: torch.Tensor, input: torch.Tensor, weight: torch.Tensor,
                            alpha: torch.Tensor, beta: torch.Tensor, dilation: int,
                            input_grad: bool = True, truncate: bool = False
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
            t = _taps(geo, a, b, start, stop, truncate)
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


# ------------------------------------------------------ grid_sample fast path

_BILINEAR, _BORDER = 0, 1  # grid_sampler interpolation / padding mode codes


def _grid(geo: WarpGeometry, alpha: torch.Tensor, beta: torch.Tensor, start: int, stop: int):
    """Normalised sampling grid (B, T·H, W, 2) of a chunk of taps, and the
    factors that turn a gradient w.r.t. the grid into one w.r.t. pixels."""
    device, dtype = alpha.device, alpha.dtype
    tap = torch.arange(start, stop, device=device)
    row_off = ((tap // geo.kernel_size) * geo.dilation + geo.shift_y).to(dtype).view(1, -1, 1, 1)
    col_off = ((tap % geo.kernel_size) * geo.dilation + geo.shift_x).to(dtype).view(1, -1, 1, 1)
    rows = torch.arange(geo.height, device=device, dtype=dtype).view(1, 1, -1, 1)
    cols = torch.arange(geo.width, device=device, dtype=dtype).view(1, 1, 1, -1)
    scale_y = 2.0 / (geo.in_height - 1) if geo.in_height > 1 else 0.0
    scale_x = 2.0 / (geo.in_width - 1) if geo.in_width > 1 else 0.0
    gy = (alpha[:, start:stop] + (rows + row_off)) * scale_y - 1
    gx = (beta[:, start:stop] + (cols + col_off)) * scale_x - 1
    grid = torch.stack((gx, gy), dim=-1).view(geo.batch, -1, geo.width, 2)
    return grid, scale_y, scale_x


def _sample(image: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    return torch.grid_sampler_2d(image, grid, _BILINEAR, _BORDER, True)


def warp_forward_torch(input: torch.Tensor, weight: torch.Tensor, alpha: torch.Tensor,
                       beta: torch.Tensor, dilation: int, truncate: bool = False) -> torch.Tensor:
    """AdaCoF warp forward with ``grid_sample`` (no autograd graph is recorded)."""
    if truncate:
        return warp_forward_reference(input, weight, alpha, beta, dilation, truncate=True)
    geo, out_dtype, x, w, a, b = _prepare(input, weight, alpha, beta, dilation)
    out = x.new_zeros(geo.batch, geo.channels, geo.height, geo.width)
    with torch.no_grad():
        for start, stop in _tap_chunks(geo):
            grid, _, _ = _grid(geo, a, b, start, stop)
            samples = _sample(x, grid).view(geo.batch, geo.channels, stop - start, geo.height, geo.width)
            out += (samples * w[:, start:stop].unsqueeze(1)).sum(2)
    return out.to(out_dtype)


def warp_backward_torch(grad_output: torch.Tensor, input: torch.Tensor, weight: torch.Tensor,
                        alpha: torch.Tensor, beta: torch.Tensor, dilation: int,
                        input_grad: bool = True, truncate: bool = False
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients w.r.t. input, weight, alpha, beta with ``grid_sample``'s backward."""
    if truncate:
        return warp_backward_reference(grad_output, input, weight, alpha, beta, dilation, input_grad, True)
    geo, _, x, w, a, b = _prepare(input, weight, alpha, beta, dilation)
    go = grad_output.to(x.dtype).reshape(geo.batch, geo.channels, 1, geo.height, geo.width)
    grad_image = torch.zeros_like(x)
    grad_w, grad_a, grad_b = torch.empty_like(w), torch.empty_like(w), torch.empty_like(w)
    with torch.no_grad():
        for start, stop in _tap_chunks(geo):
            k = stop - start
            grid, scale_y, scale_x = _grid(geo, a, b, start, stop)
            samples = _sample(x, grid).view(geo.batch, geo.channels, k, geo.height, geo.width)
            grad_w[:, start:stop] = (go * samples).sum(1)
            del samples
            grad_samples = (go * w[:, start:stop].unsqueeze(1)).view(geo.batch, geo.channels, -1, geo.width)
            gi, gg = torch.ops.aten.grid_sampler_2d_backward(
                grad_samples, x, grid, _BILINEAR, _BORDER, True, [input_grad, True])
            if input_grad:
                grad_image += gi
            gg = gg.view(geo.batch, k, geo.height, geo.width, 2)
            grad_b[:, start:stop] = gg[..., 0] * scale_x
            grad_a[:, start:stop] = gg[..., 1] * scale_y
    return (grad_image.to(input.dtype), grad_w.to(weight.dtype),
            grad_a.to(alpha.dtype), grad_b.to(beta.dtype))
