"""Products: matmul/bmm, addmm/baddbmm (inner dimensions tie), einsum (shared
letters tie)."""
from __future__ import annotations

import operator

import torch

from ...channels.context import RuleContext, TensorInfo
from ..base import OpKind


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


KINDS = (
    OpKind(torch.matmul, operator.matmul, torch.bmm, methods=("matmul", "bmm"), name="matmul",
           channels=_matmul_rule),
    OpKind(torch.addmm, torch.baddbmm, methods=("addmm", "baddbmm"), name="addmm", channels=_addmm_rule),
    OpKind(torch.einsum, name="einsum", channels=_einsum_rule),
)
