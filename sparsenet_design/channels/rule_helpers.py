"""Building blocks for channel rules, shared by the op kinds and the layer kinds:
layouts scaled by a factor, copied channel info, and the two rules most ops
reduce to (element-wise, and shape-changing without mixing channels)."""
from __future__ import annotations

from fractions import Fraction

import torch
import torch.fx as fx

from .context import RuleContext, SymInt, TensorInfo
from .groups import Layout, Segment


def scaled(layout: Layout, factor: Fraction) -> Layout:
    return tuple(Segment(s.group, s.scale * factor, s.part) for s in layout)


def copy_info(info: TensorInfo, ndim: int | None = None) -> TensorInfo:
    return TensorInfo(info.ndim if ndim is None else ndim, dict(info.dims), dict(info.blocks))


def tensor_args(ctx: RuleContext) -> list[fx.Node]:
    out = []
    for a in list(ctx.node.args) + list(ctx.node.kwargs.values()):
        if isinstance(a, fx.Node) and isinstance(ctx.value(a), torch.Tensor):
            out.append(a)
    return out


# ---------------------------------------------------------------- element-wise


def elementwise(ctx: RuleContext) -> None:
    """Broadcasting element-wise op: per output dimension, every input that spans it
    shares its channels."""
    out_shape = ctx.shape()
    if out_shape is None:  # arithmetic on Python numbers (sizes): nothing to tie
        ctx.set_output(SymInt(None))
        return
    nd = len(out_shape)
    out = TensorInfo(nd)
    args = tensor_args(ctx)
    for d in range(nd):
        spanning = []
        for a in args:
            shape = ctx.shape(a)
            k = d - (nd - len(shape))
            if k >= 0 and shape[k] == out_shape[d] and out_shape[d] > 1:
                spanning.append((a, k))
        known = [(a, k) for a, k in spanning if ctx.channels(a).dims.get(k) is not None]
        if not known:
            continue
        ref = ctx.channels(known[0][0]).dims[known[0][1]]
        for a, k in spanning:
            ctx.merge(ref, ctx.layout(a, k), ctx.describe())
        out.dims[d] = ref
        for a, k in spanning:
            blk = ctx.channels(a).blocks.get(k)
            if blk is not None:
                out.blocks[d] = blk
    for a in args:
        for k, blk in ctx.channels(a).blocks.items():
            d = k + (nd - ctx.channels(a).ndim)
            if 0 <= d < nd and out_shape[d] == blk[1]:
                out.blocks.setdefault(d, blk)
    ctx.set_output(out)


def structural(ctx: RuleContext) -> None:
    """Shape-changing op that never mixes channels (pooling, resizing, padding):
    dimensions that keep their size keep their channels; a channel dimension whose
    size changes is pinned."""
    x = ctx.arg(0, "input")
    out_shape, in_shape = ctx.shape(), ctx.shape(x)
    info = ctx.channels(x)
    if out_shape is None or in_shape is None or len(out_shape) != len(in_shape):
        ctx.pin(x, f"{ctx.describe()} changes the rank")
        ctx.set_output(None)
        return
    out = TensorInfo(len(out_shape))
    for d, layout in info.dims.items():
        if in_shape[d] == out_shape[d]:
            out.dims[d] = layout
        else:
            ctx.pin_layout(layout, f"{ctx.describe()} changes the size of a channel dimension")
    out.blocks = {d: b for d, b in info.blocks.items() if in_shape[d] == out_shape[d]}
    ctx.set_output(out)
