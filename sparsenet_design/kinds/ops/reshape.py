"""Reshapes: view/reshape (sizes read from shapes follow channels, constants pin
them), flatten/squeeze, permutes, expand and pixel shuffles."""
from __future__ import annotations

from fractions import Fraction

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from ...channels.context import RuleContext, ShapeInfo, SymInt, TensorInfo
from ...channels.groups import Segment
from ...channels.rule_helpers import copy_info, scaled
from ..base import OpKind


# ---------------------------------------------------------------- reshapes


def _reshape_groups(in_shape, out_shape):
    """Pair runs of input dims with runs of output dims of equal product."""
    runs, i, j = [], 0, 0
    ni, no = len(in_shape), len(out_shape)
    while i < ni or j < no:
        I, O = [], []
        pi = po = 1
        if i < ni:
            I.append(i); pi *= in_shape[i]; i += 1
        if j < no:
            O.append(j); po *= out_shape[j]; j += 1
        while pi != po:
            if pi < po and i < ni:
                I.append(i); pi *= in_shape[i]; i += 1
            elif j < no:
                O.append(j); po *= out_shape[j]; j += 1
            else:
                break
        # attach trailing size-1 dims to this run
        while i < ni and in_shape[i] == 1 and (j >= no or out_shape[j] != 1):
            I.append(i); i += 1
        while j < no and out_shape[j] == 1 and (i >= ni or in_shape[i] != 1):
            O.append(j); j += 1
        runs.append((I, O))
    return runs


def _reshape_info(ctx: RuleContext, x, in_shape, out_shape) -> TensorInfo:
    info = ctx.channels(x)
    out = TensorInfo(len(out_shape))
    for I, O in _reshape_groups(in_shape, out_shape):
        chan = [d for d in I if d in info.dims and in_shape[d] > 1]
        blocks = [d for d in I if d in info.blocks and in_shape[d] > 1]
        big_out = [d for d in O if out_shape[d] > 1]
        if not chan and not blocks:
            continue
        if len(I) == 1 or [d for d in I if in_shape[d] > 1] == chan and len(chan) == 1 and len(big_out) == 1:
            if len(big_out) == 1 and chan:
                out.dims[big_out[0]] = info.dims[chan[0]]
                continue
        if len(chan) == 1 and not blocks and len(big_out) > 1:
            # split one channel dim into (blocks..., inner): heads, channel shuffle
            layout = info.dims[chan[0]]
            if len(layout) != 1:
                ctx.pin_layout(layout, f"{ctx.describe()} splits concatenated channels")
                continue
            seg = layout[0]
            inner = big_out[-1]
            k = 1
            for d in big_out[:-1]:
                k *= out_shape[d]
            ctx.table.require_integer(seg, Fraction(1, k))
            out.dims[inner] = (Segment(seg.group, seg.scale / k, seg.part),)
            for d in big_out[:-1]:
                out.blocks[d] = (seg.group, out_shape[d])
            continue
        if len(big_out) == 1 and len(chan) == 1:
            big_in = [d for d in I if in_shape[d] > 1]
            c = chan[0]
            outer = [d for d in big_in if d < c]
            inner = [d for d in big_in if d > c]
            layout = info.dims[c]
            if all(d in info.blocks for d in outer) and not any(d in info.blocks for d in inner):
                factor = Fraction(1)
                for d in outer + inner:
                    factor *= in_shape[d]
                seg_ok = all(info.blocks[d][0] == s.group for d in outer for s in layout)
                if seg_ok:
                    out.dims[big_out[0]] = scaled(layout, factor)
                    continue
        for d in chan:
            ctx.pin_layout(info.dims[d], f"{ctx.describe()} reshapes channels in a way the rules do not follow")
        for d in blocks:
            ctx.table.pin(info.blocks[d][0], f"{ctx.describe()} reshapes channel blocks")
    return out


def _size_entries(ctx: RuleContext, args) -> list | None:
    """The requested sizes of a view/reshape call, each an int, -1, or a SymInt."""
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        args = list(args[0])
    if len(args) == 1 and isinstance(args[0], fx.Node):
        info = ctx.info(args[0])
        if isinstance(info, ShapeInfo):
            return [SymInt(d) for d in info.dims]
        return None
    entries = []
    for a in args:
        if isinstance(a, fx.Node):
            info = ctx.info(a)
            entries.append(info if isinstance(info, SymInt) else SymInt(None))
        else:
            entries.append(a)
    return entries


def _check_sizes(ctx: RuleContext, out: TensorInfo, entries: list | None) -> None:
    """Sizes spelled as constants in the code cannot follow a new width: pin those
    channels; sizes read from a tensor's shape tie to that tensor's channels."""
    if entries is None or len(entries) != out.ndim:
        for layout in out.dims.values():
            ctx.pin_layout(layout, f"{ctx.describe()} uses sizes the rules cannot follow")
        return
    concrete = ctx.constant_sizes
    for d in range(out.ndim):
        e = entries[d]
        if d not in out.dims and isinstance(e, SymInt) and e.layout is not None:
            # a size read from channels, for a dimension whose data does not follow them
            ctx.pin_layout(e.layout, f"{ctx.describe()} sizes a dimension with another tensor's channel count")
    for d, layout in list(out.dims.items()):
        e = entries[d]
        if isinstance(e, int):
            # a traced run shows every size as a constant: following an attribute of the
            # module whose code this is stays a guess there, which the check run confirms
            if e == -1 or ctx.follow_constant(e, layout):
                continue
            why = "traced with concrete shapes" if concrete else "a constant in the code"
            ctx.pin_layout(layout, f"{ctx.describe()} gives this channel size as {e} ({why})")
        elif isinstance(e, SymInt) and e.layout is not None:
            ctx.merge(layout, e.layout, ctx.describe())
        else:
            ctx.pin_layout(layout, f"{ctx.describe()} computes this channel size in a way the rules do not follow")


def _view_rule(ctx: RuleContext) -> None:
    x = ctx.arg(0)
    out_shape, in_shape = ctx.shape(), ctx.shape(x)
    out = _reshape_info(ctx, x, in_shape, out_shape)
    sizes = list(ctx.node.args[1:]) or [ctx.node.kwargs.get("shape", ctx.node.kwargs.get("size"))]
    _check_sizes(ctx, out, _size_entries(ctx, sizes))
    ctx.set_output(out)


def _view_as_rule(ctx: RuleContext) -> None:
    """``x.view_as(other)`` / ``x.reshape_as(other)``: the sizes are ``other``'s, so
    its channels size the output."""
    x, other = ctx.arg(0), ctx.arg(1, "other")
    out = _reshape_info(ctx, x, ctx.shape(x), ctx.shape())
    info = ctx.channels(other)
    _check_sizes(ctx, out, [SymInt(info.dims.get(d)) for d in range(info.ndim)])
    ctx.set_output(out)


def flatten_rule(ctx: RuleContext) -> None:
    x = ctx.arg(0, "input")
    ctx.set_output(_reshape_info(ctx, x, ctx.shape(x), ctx.shape()))




def _permute_rule(ctx: RuleContext) -> None:
    x = ctx.arg(0, "input")
    info = ctx.channels(x)
    nd = info.ndim
    target = ctx.node.target
    name = target if isinstance(target, str) else target.__name__
    args = list(ctx.node.args[1:])
    if name in ("transpose", "swapaxes", "swapdims"):
        a, b = (args + [ctx.node.kwargs.get("dim0"), ctx.node.kwargs.get("dim1")])[:2]
        order = list(range(nd))
        order[a % nd], order[b % nd] = order[b % nd], order[a % nd]
    elif name == "t":
        order = list(reversed(range(nd)))
    elif name == "movedim":
        src, dst = args[0], args[1]
        order = list(range(nd))
        s = order.pop(src % nd)
        order.insert(dst % nd, s)
    else:
        dims = args[0] if len(args) == 1 and isinstance(args[0], (tuple, list)) else args
        if not dims:
            dims = ctx.node.kwargs.get("dims")
        order = [d % nd for d in dims]
    out = TensorInfo(nd)
    for new, old in enumerate(order):
        if old in info.dims:
            out.dims[new] = info.dims[old]
        if old in info.blocks:
            out.blocks[new] = info.blocks[old]
    ctx.set_output(out)



def _expand_rule(ctx: RuleContext) -> None:
    x = ctx.arg(0)
    info, in_shape, out_shape = ctx.channels(x), ctx.shape(x), ctx.shape()
    off = len(out_shape) - len(in_shape)
    out = TensorInfo(len(out_shape))
    for d, layout in info.dims.items():
        out.dims[d + off] = layout
    sizes = list(ctx.node.args[1:])
    if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
        sizes = list(sizes[0])
    for d in range(len(out_shape)):
        k = d - off
        grows = k < 0 or in_shape[k] == 1
        if grows and out_shape[d] > 1 and d < len(sizes):
            e = sizes[d]
            sym = ctx.info(e) if isinstance(e, fx.Node) else None
            if isinstance(sym, SymInt) and sym.layout:
                out.dims[d] = sym.layout
    ctx.set_output(out)




def pixel_shuffle_rule(ctx: RuleContext) -> None:
    x = ctx.arg(0, "input")
    name = ctx.node.target if isinstance(ctx.node.target, str) else getattr(ctx.node.target, "__name__", "")
    module = ctx.module
    if module is not None:
        unshuffle = isinstance(module, nn.PixelUnshuffle)
        r = module.downscale_factor if unshuffle else module.upscale_factor
    else:
        unshuffle = "unshuffle" in name
        r = ctx.arg(1)
    info = ctx.channels(x)
    layout = info.dims.get(1)
    out = copy_info(info)
    if layout is not None:
        if unshuffle:
            out.dims[1] = scaled(layout, Fraction(r * r))
        else:
            if all(ctx.table.width0(s) % (r * r) == 0 for s in layout):
                for s in layout:
                    ctx.table.require_integer(s, Fraction(1, r * r))
                out.dims[1] = scaled(layout, Fraction(1, r * r))
            else:
                ctx.pin_layout(layout, f"{ctx.describe()} folds channels that do not split evenly")
                out.dims.pop(1)
    ctx.set_output(out)


KINDS = (
    OpKind(torch.reshape, methods=("view", "reshape"), name="view", channels=_view_rule),
    OpKind(methods=("view_as", "reshape_as"), name="view as", channels=_view_as_rule),
    OpKind(torch.flatten, torch.squeeze, torch.unsqueeze, torch.unflatten,
           methods=("flatten", "squeeze", "unsqueeze", "unflatten"), name="flatten", channels=flatten_rule),
    OpKind(torch.permute, torch.transpose, torch.t, torch.swapaxes, torch.movedim,
           methods=("permute", "transpose", "t", "swapaxes", "swapdims", "movedim"), name="permute",
           channels=_permute_rule),
    OpKind(methods=("expand",), name="expand", channels=_expand_rule),
    OpKind(F.pixel_shuffle, F.pixel_unshuffle, torch.pixel_shuffle, torch.pixel_unshuffle, name="pixel shuffle",
           channels=pixel_shuffle_rule),
)
