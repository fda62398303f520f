"""Element-wise ops (arithmetic, activations, dropout), ops that change sizes
without mixing channels (pooling, resizing, padding, sampling), and reductions."""
from __future__ import annotations

import operator

import torch
import torch.fx as fx
import torch.nn.functional as F

from ...channels.context import RuleContext, TensorInfo
from ...channels.rule_helpers import elementwise, structural
from ..base import OpKind


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

_ELEMENTWISE_METHODS = [
    "add", "sub", "mul", "div", "truediv", "pow", "neg", "abs", "exp", "log", "sqrt", "rsqrt",
    "sigmoid", "tanh", "relu", "softmax", "log_softmax", "clamp", "clip", "contiguous", "clone",
    "detach", "float", "double", "half", "bfloat16", "to", "type_as", "masked_fill", "add_",
    "mul_", "sub_", "div_", "relu_", "sigmoid_", "clamp_", "__add__", "__mul__", "__radd__",
    "__rmul__", "__sub__", "__rsub__", "__truediv__", "where", "maximum", "minimum", "square",
    "reciprocal", "sign", "cpu", "cuda", "requires_grad_", "exp_", "expand_as", "fill_",
    "zero_", "normal_", "sin", "cos", "erf", "lerp",
]

_STRUCTURAL_FUNCTIONS = [
    F.max_pool1d, F.max_pool2d, F.max_pool3d, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d,
    F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d,
    F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.adaptive_max_pool3d,
    F.interpolate, F.upsample, F.upsample_bilinear, F.upsample_nearest, F.pad, F.lp_pool2d,
]


KINDS = (
    OpKind(*_ELEMENTWISE_FUNCTIONS, "torchvision.ops.stochastic_depth.stochastic_depth",
           methods=_ELEMENTWISE_METHODS, name="element-wise", channels=elementwise),
    OpKind(*_STRUCTURAL_FUNCTIONS, F.grid_sample, name="resampling", channels=structural),
    OpKind(torch.mean, torch.sum, torch.amax, torch.amin, torch.prod, torch.std, torch.var, torch.logsumexp,
           methods=("mean", "sum", "amax", "amin", "prod", "std", "var", "logsumexp", "norm"),
           name="reduction", channels=reduction),
)
