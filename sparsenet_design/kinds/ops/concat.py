"""Concatenation, stacking, splitting and indexing: channel layouts laid end to
end, and cut into parts."""
from __future__ import annotations

import operator
from fractions import Fraction

import torch
import torch.fx as fx

from ...channels.context import RuleContext, ShapeInfo, SymInt, TensorInfo
from ...channels.groups import Layout, Segment
from ...channels.rule_helpers import copy_info
from ..base import OpKind


# ---------------------------------------------------------------- cat / split / index


def _cat_rule(ctx: RuleContext) -> None:
    tensors = ctx.arg(0, "tensors")
    dim = ctx.arg(1, "dim", 0)
    out_shape = ctx.shape()
    nd = len(out_shape)
    dim %= nd
    parts: list[Segment] = []
    for t in tensors:
        if ctx.shape(t)[dim] == 0:
            continue
        parts.extend(ctx.layout(t, dim, role="concatenated input"))
    out = TensorInfo(nd, {dim: tuple(parts)})
    for d in range(nd):
        if d == dim or out_shape[d] <= 1:
            continue
        known = [t for t in tensors if ctx.channels(t).dims.get(d)]
        if known:
            ref = ctx.channels(known[0]).dims[d]
            for t in tensors:
                ctx.merge(ref, ctx.layout(t, d))
            out.dims[d] = ref
    ctx.set_output(out)




def _stack_rule(ctx: RuleContext) -> None:
    tensors = ctx.arg(0, "tensors")
    dim = ctx.arg(1, "dim", 0)
    nd = len(ctx.shape())
    dim %= nd
    ref_info = ctx.channels(tensors[0])
    out = TensorInfo(nd)
    for k in range(ref_info.ndim):
        known = [t for t in tensors if ctx.channels(t).dims.get(k)]
        if not known:
            continue
        ref = ctx.channels(known[0]).dims[k]
        for t in tensors:
            ctx.merge(ref, ctx.layout(t, k))
        out.dims[k + (k >= dim)] = ref
    ctx.set_output(out)




def _slice_layout(ctx: RuleContext, layout: Layout, start: int, stop: int) -> Layout | None:
    """The part of ``layout`` between entries ``start`` and ``stop``: whole segments,
    or one equal part of a single segment; ``None`` if the cut falls elsewhere."""
    t = ctx.table
    pos, picked = 0, []
    for seg in layout:
        w = t.width0(seg)
        if pos >= start and pos + w <= stop:
            picked.append(seg)
        elif pos < stop and pos + w > start:
            # cut inside a segment: fine if it is an equal part of it
            length = stop - start
            if w % length == 0 and (start - pos) % length == 0 and stop <= pos + w:
                k = int(w // length)
                part = int((start - pos) // length)
                t.require_integer(seg, Fraction(1, k))
                return (Segment(seg.group, seg.scale / k, seg.part * k + part),)
            return None
        pos += w
    return tuple(picked) if picked else None


def _split_outputs(ctx: RuleContext, x, dim: int, sizes: list[int]) -> list[TensorInfo]:
    info = ctx.channels(x)
    nd = info.ndim
    dim %= nd
    layout = info.dims.get(dim)
    outs, start = [], 0
    for size in sizes:
        out = copy_info(info)
        if layout is not None:
            sub = _slice_layout(ctx, layout, start, start + size)
            if sub is None:
                ctx.pin_layout(layout, f"{ctx.describe()} cuts channels unevenly")
                out.dims.pop(dim)
            else:
                out.dims[dim] = sub
        start += size
        outs.append(out)
    return outs


def _split_rule(ctx: RuleContext) -> None:
    x = ctx.arg(0)
    name = ctx.node.target if isinstance(ctx.node.target, str) else ctx.node.target.__name__
    values = ctx.value()
    dim = ctx.arg(2, "dim", 0)
    nd = ctx.channels(x).ndim
    sizes = [v.shape[dim % nd] for v in values]
    outs = _split_outputs(ctx, x, dim, sizes)
    if name in ("chunk", "tensor_split") or (name == "split" and isinstance(ctx.arg(1), int)):
        # equal pieces stay equal: e.g. halves of a concatenation of two groups
        full = [o.dims.get(dim % nd) for o, size in zip(outs, sizes) if size == sizes[0]]
        for layout in full[1:]:
            if full[0] is not None and layout is not None:
                ctx.merge(full[0], layout, ctx.describe())
    layout = ctx.channels(x).dims.get(dim % nd)
    spec = ctx.arg(1, "split_size_or_sections", ctx.arg(1, "split_size", ctx.arg(1, "chunks")))
    if layout is not None and name == "split" and spec is not None:
        constant = spec if isinstance(spec, (list, tuple)) else [spec]
        if any(isinstance(s, int) for s in constant) and not all(
            isinstance(o, TensorInfo) and dim % nd not in o.dims for o in outs
        ):
            ctx.pin_layout(layout, f"{ctx.describe()} splits channels by constant sizes")
    ctx.set_output(tuple(outs))




def _unbind_rule(ctx: RuleContext) -> None:
    x = ctx.arg(0)
    dim = ctx.arg(1, "dim", 0)
    info = ctx.channels(x)
    d = dim % info.ndim
    if d in info.dims:
        ctx.pin_layout(info.dims[d], f"{ctx.describe()} unbinds a channel dimension")
    outs = []
    for _ in ctx.value():
        out = TensorInfo(info.ndim - 1)
        for k, layout in info.dims.items():
            if k != d:
                out.dims[k - (k > d)] = layout
        for k, blk in info.blocks.items():
            if k != d:
                out.blocks[k - (k > d)] = blk
        outs.append(out)
    ctx.set_output(tuple(outs))




def _getitem_rule(ctx: RuleContext) -> None:
    src, idx = ctx.arg(0), ctx.arg(1)
    info = ctx.info(src)
    if isinstance(info, (tuple, list)):
        ctx.set_output(info[idx] if isinstance(idx, int) and -len(info) <= idx < len(info) else None)
        return
    if isinstance(info, ShapeInfo):
        if isinstance(idx, int):
            ctx.set_output(SymInt(info.dims[idx]))
        else:
            ctx.set_output(ShapeInfo(tuple(info.dims[idx])) if isinstance(idx, slice) else None)
        return
    if not isinstance(ctx.value(src), torch.Tensor):
        ctx.set_output(None)
        return
    _tensor_index(ctx, src, idx)


def _tensor_index(ctx: RuleContext, src, idx) -> None:
    info = ctx.channels(src)
    in_shape = ctx.shape(src)
    items = list(idx) if isinstance(idx, tuple) else [idx]
    if any(isinstance(i, (fx.Node, list, torch.Tensor)) for i in items):
        ctx.pin(src, f"{ctx.describe()} indexes with tensors")
        ctx.set_output(None)
        return
    if Ellipsis in items:
        k = items.index(Ellipsis)
        n_real = sum(1 for i in items if i is not None and i is not Ellipsis)
        items = items[:k] + [slice(None)] * (len(in_shape) - n_real) + items[k + 1:]
    out = TensorInfo(len(ctx.shape()))
    d_in = d_out = 0
    for item in items + [slice(None)] * (len(in_shape) - sum(1 for i in items if i is not None)):
        if item is None:
            d_out += 1
            continue
        if d_in >= len(in_shape):
            break
        layout = info.dims.get(d_in)
        if isinstance(item, int):
            if layout is not None:
                ctx.pin_layout(layout, f"{ctx.describe()} picks a single channel")
            d_in += 1
            continue
        if any(isinstance(v, fx.Node) for v in (item.start, item.stop, item.step)):
            # bounds computed at run time (e.g. cropping back after padding)
            if layout is not None:
                ctx.pin_layout(layout, f"{ctx.describe()} slices channels at computed positions")
            d_in += 1
            d_out += 1
            continue
        start, stop, step = item.indices(in_shape[d_in])
        if layout is not None:
            if (start, stop, step) == (0, in_shape[d_in], 1):
                out.dims[d_out] = layout
            else:
                # slice bounds are constants in the code: they cannot follow a new width
                ctx.pin_layout(layout, f"{ctx.describe()} slices channels at fixed positions")
                sub = _slice_layout(ctx, layout, start, stop) if step == 1 else None
                if sub is not None:
                    out.dims[d_out] = sub
        if d_in in info.blocks and (start, stop, step) == (0, in_shape[d_in], 1):
            out.blocks[d_out] = info.blocks[d_in]
        d_in += 1
        d_out += 1
    ctx.set_output(out)


KINDS = (
    OpKind(torch.cat, torch.concat, torch.concatenate, name="cat", channels=_cat_rule),
    OpKind(torch.stack, name="stack", channels=_stack_rule),
    OpKind(torch.split, torch.chunk, torch.tensor_split, methods=("split", "chunk", "tensor_split"), name="split",
           channels=_split_rule),
    OpKind(torch.unbind, methods=("unbind",), name="unbind", channels=_unbind_rule),
    OpKind(operator.getitem, name="getitem", channels=_getitem_rule),
)
