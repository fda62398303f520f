"""The built-in channel rules: torch.nn layers, element-wise ops, concatenation,
splitting, reshapes, attention. Imported for its side effect of filling the
registry in :mod:`.rules`."""
from __future__ import annotations

import builtins
import operator
from fractions import Fraction

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from .channel_graph import RuleContext, ShapeInfo, SymInt, TensorInfo
from .groups import Layout, Segment
from .rule_helpers import copy_info, elementwise, scaled, structural, tensor_args
from .rules import register_function_rule, register_method_rule

def reduction(ctx: RuleContext) -> None:
    """mean/sum/amax/...: reduced dimensions drop out (width changes are harmless)."""
    x = ctx.arg(0, "input")
    info, in_shape, out_shape = ctx.channels(x), ctx.shape(x), ctx.shape()
    if in_shape is None or out_shape is None:
        ctx.set_output(None)
        return
    dim = ctx.arg(1, "dim")
    if isinstance(dim, fx.Node) or dim is None and len(ctx.node.args) > 1:
        ctx.pin(x)
        ctx.set_output(None)
        return
    reduced = set(range(len(in_shape))) if dim is None else set(_dims_of(dim, len(in_shape)))
    keep = len(out_shape) == len(in_shape)
    out = TensorInfo(len(out_shape))
    j = 0
    for d in range(len(in_shape)):
        if d in reduced:
            j += keep
            continue
        if d in info.dims:
            out.dims[j] = info.dims[d]
        if d in info.blocks:
            out.blocks[j] = info.blocks[d]
        j += 1
    ctx.set_output(out)


def _dims_of(dim, ndim: int) -> list[int]:
    if isinstance(dim, int):
        return [dim % ndim]
    return [d % ndim for d in dim]


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
    concrete = ctx._b.traced.constant_sizes
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


for _name in ("view", "reshape"):
    register_method_rule(_name, _view_rule)
for _name in ("view_as", "reshape_as"):
    register_method_rule(_name, _view_as_rule)
register_function_rule(torch.reshape, _view_rule)
for _name in ("flatten", "squeeze", "unsqueeze", "unflatten"):
    register_method_rule(_name, flatten_rule)
for _fn in (torch.flatten, torch.squeeze, torch.unsqueeze, torch.unflatten):
    register_function_rule(_fn, flatten_rule)


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


for _name in ("permute", "transpose", "t", "swapaxes", "swapdims", "movedim"):
    register_method_rule(_name, _permute_rule)
for _fn in (torch.permute, torch.transpose, torch.t, torch.swapaxes, torch.movedim):
    register_function_rule(_fn, _permute_rule)

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


register_function_rule(torch.cat, _cat_rule)
register_function_rule(torch.concat, _cat_rule)
register_function_rule(torch.concatenate, _cat_rule)


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


register_function_rule(torch.stack, _stack_rule)


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


for _name in ("split", "chunk", "tensor_split"):
    register_method_rule(_name, _split_rule)
for _fn in (torch.split, torch.chunk, torch.tensor_split):
    register_function_rule(_fn, _split_rule)


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


register_method_rule("unbind", _unbind_rule)
register_function_rule(torch.unbind, _unbind_rule)


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


register_function_rule(operator.getitem, _getitem_rule)

# ---------------------------------------------------------------- shapes as values


def _getattr_rule(ctx: RuleContext) -> None:
    src, name = ctx.arg(0), ctx.arg(1)
    info = ctx.info(src)
    if name == "shape" and isinstance(info, TensorInfo):
        ctx.set_output(ShapeInfo(tuple(info.dims.get(d) for d in range(info.ndim))))
    else:
        ctx.set_output(None)


register_function_rule(builtins.getattr, _getattr_rule)


def _size_rule(ctx: RuleContext) -> None:
    info = ctx.channels(ctx.arg(0))
    dim = ctx.arg(1, "dim")
    dims = tuple(info.dims.get(d) for d in range(info.ndim))
    if dim is None:
        ctx.set_output(ShapeInfo(dims))
    elif isinstance(dim, int):
        ctx.set_output(SymInt(dims[dim]))
    else:
        ctx.set_output(None)


register_method_rule("size", _size_rule)


def _int_arith(op):
    def rule(ctx: RuleContext) -> None:
        a, b = ctx.arg(0), ctx.arg(1)
        ia, ib = ctx.info(a), ctx.info(b)
        if isinstance(ia, TensorInfo) or isinstance(ib, TensorInfo):
            return elementwise(ctx)
        if isinstance(ctx.value(), torch.Tensor):
            return elementwise(ctx)
        sym = ia if isinstance(ia, SymInt) else None
        const = b if isinstance(b, int) else None
        if sym is None or sym.layout is None or const is None or len(sym.layout) != 1 or const == 0:
            ctx.set_output(SymInt(None) if isinstance(ia, SymInt) or isinstance(ib, SymInt) else None)
            return
        seg = sym.layout[0]
        if op is operator.floordiv:
            ctx.table.require_integer(seg, Fraction(1, const))
            ctx.set_output(SymInt((Segment(seg.group, seg.scale / const, 0),)))
        else:
            ctx.set_output(SymInt((Segment(seg.group, seg.scale * const, 0),)))

    rule.__name__ = f"integer {op.__name__}"
    return rule


register_function_rule(operator.floordiv, _int_arith(operator.floordiv))
register_function_rule(operator.mul, _int_arith(operator.mul))

# ---------------------------------------------------------------- matmul & functional layers


def _matmul_rule(ctx: RuleContext) -> None:
    ctx.set_output(_product_info(ctx, ctx.arg(0), ctx.arg(1)))


def _addmm_rule(ctx: RuleContext) -> None:
    """``addmm(input, a, b)`` / ``baddbmm``: ``input + a @ b``, the sum broadcasting."""
    bias, a, b = ctx.arg(0, "input"), ctx.arg(1), ctx.arg(2)
    out = _product_info(ctx, a, b)
    shape = ctx.shape(bias)
    if out is None or shape is None:
        ctx.pin(bias)
        ctx.set_output(out)
        return
    nd = out.ndim
    for k, size in enumerate(shape):
        d = k + nd - len(shape)
        if size > 1 and d >= 0:
            if d in out.dims:
                ctx.merge(out.dims[d], ctx.layout(bias, k), ctx.describe())
            else:
                ctx.pin(bias, f"{ctx.describe()} adds a tensor along a dimension without channels")
    ctx.set_output(out)


def _product_info(ctx: RuleContext, a, b) -> TensorInfo | None:
    """The channels of ``a @ b``: the inner dimensions tie, the outer ones pass."""
    sa, sb, so = ctx.shape(a), ctx.shape(b), ctx.shape()
    if sa is None or sb is None or len(sa) < 2 or len(sb) < 2:
        ctx.pin(a); ctx.pin(b)
        return None
    ia, ib = ctx.channels(a), ctx.channels(b)
    if ia.dims.get(len(sa) - 1) or ib.dims.get(len(sb) - 2):
        ctx.merge(ctx.layout(a, -1), ctx.layout(b, -2), ctx.describe())
    nd = len(so)
    out = TensorInfo(nd)
    if len(sa) - 2 in ia.dims:
        out.dims[nd - 2] = ia.dims[len(sa) - 2]
    if len(sb) - 1 in ib.dims:
        out.dims[nd - 1] = ib.dims[len(sb) - 1]
    for info, shape in ((ia, sa), (ib, sb)):
        off = nd - len(shape)
        for k, blk in info.blocks.items():
            if k < len(shape) - 2:
                out.blocks[k + off] = blk
        for k, layout in info.dims.items():
            if k < len(shape) - 2:
                if k + off in out.dims:
                    ctx.merge(out.dims[k + off], layout)
                else:
                    out.dims[k + off] = layout
    return out


register_function_rule(torch.matmul, _matmul_rule)
register_function_rule(operator.matmul, _matmul_rule)
register_function_rule(torch.bmm, _matmul_rule)
register_method_rule("matmul", _matmul_rule)
register_method_rule("bmm", _matmul_rule)
for _fn in (torch.addmm, torch.baddbmm):
    register_function_rule(_fn, _addmm_rule)
for _name in ("addmm", "baddbmm"):
    register_method_rule(_name, _addmm_rule)


# ---------------------------------------------------------------- the element-wise and structural tables

_ELEMENTWISE_FUNCTIONS = [
    operator.add, operator.sub, operator.truediv, operator.neg, operator.pos, operator.iadd,
    operator.isub, operator.imul, operator.itruediv, operator.pow, operator.mod,
    torch.add, torch.sub, torch.subtract, torch.mul, torch.multiply, torch.div, torch.divide,
    torch.true_divide, torch.where, torch.maximum, torch.minimum, torch.pow, torch.clamp, torch.clip,
    torch.abs, torch.neg, torch.exp, torch.log, torch.sqrt, torch.rsqrt, torch.sigmoid, torch.tanh,
    torch.relu, torch.sin, torch.cos, torch.square, torch.sign, torch.erf, torch.reciprocal,
    torch.softmax, torch.log_softmax, torch.addcmul, torch.lerp, torch.masked_fill,
    torch.nn.functional.normalize,
    F.relu, F.relu6, F.leaky_relu, F.elu, F.selu, F.celu, F.gelu, F.silu, F.mish, F.hardswish,
    F.hardsigmoid, F.hardtanh, F.sigmoid, F.tanh, F.softplus, F.softmax, F.log_softmax,
    F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, F.relu_, F.prelu,
    F.instance_norm, F.local_response_norm, torch.clone,
]
for _fn in _ELEMENTWISE_FUNCTIONS:
    register_function_rule(_fn, elementwise)

_ELEMENTWISE_METHODS = [
    "add", "sub", "mul", "div", "truediv", "pow", "neg", "abs", "exp", "log", "sqrt", "rsqrt",
    "sigmoid", "tanh", "relu", "softmax", "log_softmax", "clamp", "clip", "contiguous", "clone",
    "detach", "float", "double", "half", "bfloat16", "to", "type_as", "masked_fill", "add_",
    "mul_", "sub_", "div_", "relu_", "sigmoid_", "clamp_", "__add__", "__mul__", "__radd__",
    "__rmul__", "__sub__", "__rsub__", "__truediv__", "where", "maximum", "minimum", "square",
    "reciprocal", "sign", "cpu", "cuda", "requires_grad_", "exp_", "expand_as", "fill_",
    "zero_", "normal_", "sin", "cos", "erf", "lerp",
]
for _name in _ELEMENTWISE_METHODS:
    register_method_rule(_name, elementwise)

_STRUCTURAL_FUNCTIONS = [
    F.max_pool1d, F.max_pool2d, F.max_pool3d, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d,
    F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d,
    F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.adaptive_max_pool3d,
    F.interpolate, F.upsample, F.upsample_bilinear, F.upsample_nearest, F.pad, F.lp_pool2d,
]
for _fn in _STRUCTURAL_FUNCTIONS + [F.grid_sample]:
    register_function_rule(_fn, structural)

for _fn in (torch.mean, torch.sum, torch.amax, torch.amin, torch.prod, torch.std, torch.var, torch.logsumexp):
    register_function_rule(_fn, reduction)
for _name in ("mean", "sum", "amax", "amin", "prod", "std", "var", "logsumexp", "norm"):
    register_method_rule(_name, reduction)


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


register_method_rule("expand", _expand_rule)


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


register_function_rule(F.pixel_shuffle, pixel_shuffle_rule)
register_function_rule(F.pixel_unshuffle, pixel_shuffle_rule)
register_function_rule(torch.pixel_shuffle, pixel_shuffle_rule)
register_function_rule(torch.pixel_unshuffle, pixel_shuffle_rule)


def _no_channels(ctx: RuleContext) -> None:
    ctx.set_output(None)


for _name in ("dim", "numel", "ndimension", "nelement", "item", "tolist", "type", "is_contiguous"):
    register_method_rule(_name, _no_channels)
for _fn in (builtins.len, builtins.int, builtins.float, builtins.isinstance):
    register_function_rule(_fn, _no_channels)
register_function_rule(torch._assert, _no_channels)
for _op in (operator.eq, operator.ne, operator.lt, operator.le, operator.gt, operator.ge, operator.not_):
    register_function_rule(_op, _no_channels)
# torchvision ops, named so that the core does not import torchvision
register_function_rule("torchvision.ops.stochastic_depth.stochastic_depth", elementwise)


def _einsum_rule(ctx: RuleContext) -> None:
    """Letters shared between operands tie their channels; output letters keep them."""
    equation, *operands = ctx.node.args
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = list(operands[0])
    if not isinstance(equation, str) or "..." in equation or "->" not in equation:
        for a in operands:
            ctx.pin(a, f"{ctx.describe()} uses an einsum form the rules do not follow")
        ctx.set_output(None)
        return
    lhs, rhs = equation.replace(" ", "").split("->")
    terms = lhs.split(",")
    by_letter: dict[str, list[tuple]] = {}
    for term, a in zip(terms, operands):
        for d, letter in enumerate(term):
            by_letter.setdefault(letter, []).append((a, d))
    out = TensorInfo(len(rhs))
    for letter, uses in by_letter.items():
        known = [(a, d) for a, d in uses if ctx.channels(a).dims.get(d) is not None]
        big = [(a, d) for a, d in uses if ctx.shape(a)[d] > 1]
        ref = None
        if known:
            ref = ctx.channels(known[0][0]).dims[known[0][1]]
            for a, d in big:
                ctx.merge(ref, ctx.layout(a, d), ctx.describe())
        if letter in rhs:
            k = rhs.index(letter)
            if ref is not None:
                out.dims[k] = ref
            for a, d in uses:
                blk = ctx.channels(a).blocks.get(d)
                if blk is not None:
                    out.blocks[k] = blk
    ctx.set_output(out)


register_function_rule(torch.einsum, _einsum_rule)
