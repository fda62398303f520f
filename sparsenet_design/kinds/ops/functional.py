"""Functional layers: ``F.linear``, ``F.conv*``, ``F.conv_transpose*`` and the
functional norms.

When the weight (or a running statistic) is a tensor of a module whose layer
kind knows it (a ``Conv2d`` subclass with its own ``forward``, timm's
``BatchNormAct2d``), the call is *attributed* to that module: its width
attributes follow the channels, as they would for a call of the module itself,
so it is rebuilt by its kind and, if prunable, proposes widths. Otherwise the
weight's own dimensions are tied to the channels they meet.
"""
from __future__ import annotations

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from ...channels.context import RuleContext, TensorInfo
from ...channels.rule_helpers import copy_info
from ..base import OpKind
from ..layers.norms import group_norm_channels, per_channel
from ..layers.weights import Conv, ConvTranspose, conv_channels, linear_channels


_SOURCE_DEPTH = 8  # ops between a weight and its use: reshape, standardise, scale, reshape back…


def _source(ctx: RuleContext, tensor):
    """The parameter or buffer ``tensor`` was computed from, when every op on the
    way keeps its shape's element count and reads it as the first argument (a
    weight-standardised conv: ``F.batch_norm(self.weight.reshape(1, C, -1), …)``
    reshaped back); ``tensor`` itself when it is one."""
    node = tensor
    for _ in range(_SOURCE_DEPTH):
        if not isinstance(node, fx.Node) or node.op == "get_attr":
            break
        first = node.args[0] if node.args else None
        if node.op not in ("call_function", "call_method") or not isinstance(first, fx.Node):
            return None
        before, after = ctx.value(first), ctx.value(node)
        if not (isinstance(before, torch.Tensor) and isinstance(after, torch.Tensor)) or before.numel() != after.numel():
            return None
        node = first
    return node if isinstance(node, fx.Node) and node.op == "get_attr" else None


def _owner(ctx: RuleContext, tensor, classes: tuple[type, ...], name: str = "weight"):
    """``(path, module)`` when ``tensor`` is (computed shape for shape from) the
    ``name`` tensor of a module of one of ``classes``."""
    source = _source(ctx, tensor)
    if source is None or ctx.shape(source) != ctx.shape(tensor):
        return None
    owner = ctx.tensor_owner(source)
    if owner is None:
        return None
    path, module, attr = owner
    if attr != name or not isinstance(module, classes):
        return None
    return path, module


def _tie_bias(ctx: RuleContext, b, lout) -> None:
    if isinstance(b, fx.Node):
        ctx.merge(lout, ctx.layout(b, 0))


def linear(ctx: RuleContext) -> None:
    x, w, b = ctx.arg(0, "input"), ctx.arg(1, "weight"), ctx.arg(2, "bias")
    owner = _owner(ctx, w, (nn.Linear,))
    if owner is not None and tuple(owner[1].weight.shape) == ctx.shape(w):
        ctx.set_output(linear_channels(ctx, owner[1], x, weight_owner=owner[0]))
        return
    ctx.merge(ctx.layout(x, -1), ctx.layout(w, 1))
    lout = ctx.layout(w, 0)
    _tie_bias(ctx, b, lout)
    info = copy_info(ctx.channels(x))
    info.dims[info.ndim - 1] = lout
    ctx.set_output(info)


def _conv_owner(ctx: RuleContext, w, classes, groups: int):
    owner = _owner(ctx, w, classes)
    if owner is None:
        return None
    module = owner[1]
    if groups != module.groups or tuple(module.weight.shape) != ctx.shape(w):
        return None
    return owner


def _functional_conv(classes: tuple[type, ...], in_dim: int, what: str):
    """The rule of a functional (transposed) conv: attributed to the module whose weight
    it is, else its weight's dimension ``in_dim`` reads the input's channels."""

    def rule(ctx: RuleContext) -> None:
        x, w, b = ctx.arg(0, "input"), ctx.arg(1, "weight"), ctx.arg(2, "bias")
        groups = ctx.arg(6, "groups", 1)
        owner = _conv_owner(ctx, w, classes, groups)
        if owner is not None:
            ctx.set_output(conv_channels(ctx, owner[1], x, weight_owner=owner[0]))
            return
        if groups != 1:
            for a in (x, w, b):
                if isinstance(a, fx.Node):
                    ctx.pin(a, f"grouped {what} {ctx.describe()}")
            ctx.set_output(None)
            return
        ctx.merge(ctx.layout(x, 1), ctx.layout(w, in_dim))
        lout = ctx.layout(w, 1 - in_dim)
        _tie_bias(ctx, b, lout)
        ctx.set_output(TensorInfo(len(ctx.shape()), {1: lout}))

    rule.__name__ = what.replace(" ", "_")
    return rule


conv = _functional_conv(Conv.classes, 1, "functional conv")
conv_transpose = _functional_conv(ConvTranspose.classes, 0, "functional transposed conv")


def _tie_per_channel(ctx: RuleContext, x, tensors, dim: int) -> None:
    """Every per-channel tensor among ``tensors`` follows the channels of ``x`` on ``dim``."""
    layout = None
    for p in tensors:
        if isinstance(p, fx.Node):
            layout = layout or ctx.layout(x, dim)
            ctx.merge(layout, ctx.layout(p, 0))
    ctx.set_output(copy_info(ctx.channels(x)))


def _norm_owner(ctx: RuleContext, tensors: dict, classes: tuple[type, ...]):
    """The module whose tensors these are, if all of them belong to one module of ``classes``."""
    owners = {_owner(ctx, t, classes, name) for name, t in tensors.items() if isinstance(t, fx.Node)}
    owners.discard(None)
    if len(owners) != 1:
        return None
    owner = owners.pop()
    return owner if all(isinstance(t, fx.Node) or t is None for t in tensors.values()) else None


def batch_norm(ctx: RuleContext) -> None:
    x = ctx.arg(0, "input")
    tensors = {name: ctx.arg(i, name) for i, name in
               ((1, "running_mean"), (2, "running_var"), (3, "weight"), (4, "bias"))}
    owner = _norm_owner(ctx, tensors, (nn.modules.batchnorm._NormBase,))
    if owner is not None:
        per_channel(ctx, x, "num_features", owner=owner[0])
        return
    _tie_per_channel(ctx, x, tensors.values(), 1)


def group_norm(ctx: RuleContext) -> None:
    x, num_groups = ctx.arg(0, "input"), ctx.arg(1, "num_groups")
    tensors = {"weight": ctx.arg(2, "weight"), "bias": ctx.arg(3, "bias")}
    owner = _norm_owner(ctx, tensors, (nn.GroupNorm,))
    if owner is not None and isinstance(num_groups, int):
        group_norm_channels(ctx, x, num_groups, owner=owner[0])
        return
    _tie_per_channel(ctx, x, tensors.values(), 1)


def layer_norm(ctx: RuleContext) -> None:
    x, shape = ctx.arg(0, "input"), ctx.arg(1, "normalized_shape")
    tensors = {"weight": ctx.arg(2, "weight"), "bias": ctx.arg(3, "bias")}
    one_dim = isinstance(shape, (tuple, list)) and len(shape) == 1
    owner = _norm_owner(ctx, tensors, (nn.LayerNorm,))
    if owner is not None and one_dim and len(owner[1].normalized_shape) == 1:
        per_channel(ctx, x, "normalized_shape", dim=-1, owner=owner[0])
        return
    info = ctx.channels(x)
    if info.dims.get(info.ndim - 1) is not None or any(isinstance(t, fx.Node) for t in tensors.values()):
        layout = ctx.layout(x, -1)
        if one_dim and isinstance(shape[0], int):
            if not ctx.follow_constant(tuple(shape), layout):
                ctx.pin_layout(layout, f"{ctx.describe()} normalises a constant number of channels")
        elif not (isinstance(shape, fx.Node) or one_dim):
            ctx.pin_layout(layout, f"{ctx.describe()} normalises several dimensions")
    _tie_per_channel(ctx, x, tensors.values(), -1)


KINDS = (
    OpKind(F.linear, name="functional linear", channels=linear),
    OpKind(F.conv1d, F.conv2d, F.conv3d, name="functional conv", channels=conv),
    OpKind(F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d, name="functional transposed conv",
           channels=conv_transpose),
    OpKind(F.batch_norm, name="functional batch norm", channels=batch_norm),
    OpKind(F.group_norm, name="functional group norm", channels=group_norm),
    OpKind(F.layer_norm, name="functional layer norm", channels=layer_norm),
)
