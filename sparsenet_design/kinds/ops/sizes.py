"""Sizes as values: ``x.shape``, ``x.size(1)`` and integer arithmetic on them (a
size read from channels can size a reshape that then follows them), and ops
that yield no tensor."""
from __future__ import annotations

import builtins
import operator
from fractions import Fraction

import torch

from ...channels.context import RuleContext, ShapeInfo, SymInt, TensorInfo
from ...channels.groups import Segment
from ...channels.rule_helpers import elementwise
from ..base import OpKind


# ---------------------------------------------------------------- shapes as values


def _getattr_rule(ctx: RuleContext) -> None:
    src, name = ctx.arg(0), ctx.arg(1)
    info = ctx.info(src)
    if name == "shape" and isinstance(info, TensorInfo):
        ctx.set_output(ShapeInfo(tuple(info.dims.get(d) for d in range(info.ndim))))
    else:
        ctx.set_output(None)




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



def _no_channels(ctx: RuleContext) -> None:
    ctx.set_output(None)


# torchvision ops, named so that the core does not import torchvision


KINDS = (
    OpKind(builtins.getattr, name="getattr", channels=_getattr_rule),
    OpKind(methods=("size",), name="size", channels=_size_rule),
    OpKind(operator.floordiv, name="integer floordiv", channels=_int_arith(operator.floordiv)),
    OpKind(operator.mul, name="integer mul", channels=_int_arith(operator.mul)),
    OpKind(builtins.len, builtins.int, builtins.float, builtins.isinstance, torch._assert,
           operator.eq, operator.ne, operator.lt, operator.le, operator.gt, operator.ge, operator.not_,
           methods=("dim", "numel", "ndimension", "nelement", "item", "tolist", "type", "is_contiguous"),
           name="no channels", channels=_no_channels),
)
