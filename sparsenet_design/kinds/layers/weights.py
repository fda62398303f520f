"""Layers with a weight matrix: convolutions, transposed convolutions, linear,
bilinear and embedding layers."""
from __future__ import annotations

import math
from fractions import Fraction

import torch
from torch import nn

from ...channels.context import RuleContext, TensorInfo
from ...channels.rule_helpers import copy_info, scaled
from ..base import LayerKind

_KAIMING_BOUND_GAIN = math.sqrt(3.0)
_KAIMING_GAIN = nn.init.calculate_gain("leaky_relu", math.sqrt(5))


def init_conv_or_linear(module: nn.Module) -> None:
    """``_ConvNd`` / ``Linear.reset_parameters`` without ``nn.init``'s Python around
    the tensor ops (the same random draws in the same order, so the same values):
    ``kaiming_uniform_(weight, a=√5)``, then the bias uniform in ±1/√fan_in."""
    weight, bias = module.weight, module.bias
    if not weight.numel() or not weight.is_contiguous():  # torch warns / uses a buffer here
        module.reset_parameters()
        return
    fan_in = weight.shape[1] * math.prod(weight.shape[2:])
    bound = _KAIMING_BOUND_GAIN * (_KAIMING_GAIN / math.sqrt(fan_in))  # kaiming_uniform_'s arithmetic
    with torch.no_grad():
        weight.uniform_(-bound, bound)
        if bias is not None:
            bound = 1 / math.sqrt(fan_in)
            bias.uniform_(-bound, bound)


class _StockInit:
    """A kind whose ``stock`` classes' ``reset_parameters`` is reproduced by
    ``stock_init``; other classes (subclasses may override ``reset_parameters``)
    take their own."""

    stock: tuple[type, ...] = ()
    stock_init = None  # staticmethod(fn(module))

    def reset(self, module: nn.Module) -> None:
        if type(module) in self.stock:
            type(self).stock_init(module)
        else:
            module.reset_parameters()

    def fresh_init_writes_all(self, module: nn.Module) -> bool:
        return type(module) in self.stock


def conv_channels(ctx: RuleContext, module: nn.Module, x, weight_owner: str | None = None) -> TensorInfo:
    """The channel coupling of a (transposed) convolution ``module`` reading ``x``;
    records the module's widths and returns the output's channel info."""
    lin = ctx.layout(x, 1)
    g = module.groups
    attrs = {"in_channels": lin}
    label = f"{weight_owner or ctx.path}.out_channels"
    if g == 1:
        lout = ctx.new_group(module.out_channels, label)
    elif g == module.in_channels and module.out_channels % module.in_channels == 0:
        # depthwise (with channel multiplier k): out channel c*k+j reads in channel c
        lout = scaled(lin, Fraction(module.out_channels, module.in_channels))
        attrs["groups"] = lin
    else:
        lout = ctx.new_group(module.out_channels, label)
        if not (ctx.require_divisible(lin, g) and ctx.require_divisible(lout, g)):
            ctx.pin_layout(lin, f"grouped conv {weight_owner or ctx.path} reads concatenated channels")
            ctx.pin_layout(lout, f"grouped conv {weight_owner or ctx.path} reads concatenated channels")
    attrs["out_channels"] = lout
    ctx.record_module(attrs, [("in", lin), ("out", lout)], path=weight_owner)
    return TensorInfo(len(ctx.shape()), {1: lout})


def _channel_dim(x: torch.Tensor, spatial: int) -> int | None:
    if x.dim() == spatial + 2:
        return 1
    if x.dim() == spatial + 1:  # unbatched
        return 0
    return None


class _ConvLike(_StockInit, LayerKind):
    """What convolutions and transposed convolutions share: the channel coupling,
    prunability and init; their weights and shape formulas differ."""

    prunable = True
    roles = ("in_channels", "out_channels")
    stock_init = staticmethod(init_conv_or_linear)

    def channels(self, ctx: RuleContext) -> None:
        ctx.set_output(conv_channels(ctx, ctx.module, ctx.arg(0, "input")))


class Conv(_ConvLike):
    """``nn.Conv1d/2d/3d``: plain, grouped and depthwise."""

    classes = stock = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
    tensors = {"weight": {0: "out_channels", 1: ("in_channels", True)}, "bias": {0: "out_channels"}}

    def output_shape(self, module: nn.Module, x: torch.Tensor) -> tuple[int, ...] | None:
        spatial = len(module.kernel_size)
        c = _channel_dim(x, spatial)
        w = module.weight  # (out, in / groups, *kernel): what the kernel checks, not the attributes
        if c is None or w.dim() != spatial + 2 or x.shape[c] != w.shape[1] * module.groups:
            return None
        if tuple(w.shape[2:]) != tuple(module.kernel_size) or w.shape[0] % module.groups:
            return None
        if module.bias is not None and module.bias.shape[0] != w.shape[0]:
            return None
        sizes = x.shape[c + 1:]
        if module.padding == "same":
            out = list(sizes)
        else:
            padding = (0,) * spatial if module.padding == "valid" else module.padding
            out = [
                (size + 2 * p - d * (k - 1) - 1) // s + 1
                for size, p, d, k, s in zip(sizes, padding, module.dilation, module.kernel_size, module.stride)
            ]
        if min(out, default=1) < 1:
            return None  # too small: let the layer raise its own error
        return (*x.shape[:c], w.shape[0], *out)


class ConvTranspose(_ConvLike):
    """``nn.ConvTranspose1d/2d/3d``: the convolution's channel coupling, with the
    weight's first two dimensions the other way round."""

    classes = stock = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
    tensors = {"weight": {0: "in_channels", 1: ("out_channels", True)}, "bias": {0: "out_channels"}}

    def output_shape(self, module: nn.Module, x: torch.Tensor) -> tuple[int, ...] | None:
        spatial = len(module.kernel_size)
        c = _channel_dim(x, spatial)
        w = module.weight  # (in, out / groups, *kernel)
        if c is None or isinstance(module.padding, str) or w.dim() != spatial + 2 or x.shape[c] != w.shape[0]:
            return None
        if tuple(w.shape[2:]) != tuple(module.kernel_size) or w.shape[0] % module.groups:
            return None
        channels = w.shape[1] * module.groups
        if module.bias is not None and module.bias.shape[0] != channels:
            return None
        out = [
            (size - 1) * s - 2 * p + d * (k - 1) + op + 1
            for size, s, p, d, k, op in zip(
                x.shape[c + 1:], module.stride, module.padding, module.dilation, module.kernel_size,
                module.output_padding,
            )
        ]
        if min(out, default=1) < 1:
            return None
        return (*x.shape[:c], channels, *out)


def linear_channels(ctx: RuleContext, module: nn.Module, x, weight_owner: str | None = None,
                    attrs: tuple[str, str] = ("in_features", "out_features")) -> TensorInfo:
    """The channel coupling of a linear layer on the last dimension of ``x``; ``attrs``
    name its input and output width attributes."""
    in_attr, out_attr = attrs
    lin = ctx.layout(x, -1)
    lout = ctx.new_group(getattr(module, out_attr), f"{weight_owner or ctx.path}.{out_attr}")
    ctx.record_module({in_attr: lin, out_attr: lout}, [("in", lin), ("out", lout)], path=weight_owner)
    info = copy_info(ctx.channels(x))
    info.dims[info.ndim - 1] = lout
    info.blocks.pop(info.ndim - 1, None)
    return info


class Linear(_StockInit, LayerKind):
    """``nn.Linear`` (and ``NonDynamicallyQuantizableLinear``, a subclass)."""

    classes = stock = (nn.Linear,)
    prunable = True
    roles = ("in_features", "out_features")
    tensors = {"weight": {0: "out_features", 1: "in_features"}, "bias": {0: "out_features"}}
    stock_init = staticmethod(init_conv_or_linear)

    def channels(self, ctx: RuleContext) -> None:
        ctx.set_output(linear_channels(ctx, ctx.module, ctx.arg(0, "input")))

    def output_shape(self, module: nn.Module, x: torch.Tensor) -> tuple[int, ...] | None:
        w = module.weight
        if x.dim() < 1 or w.dim() != 2 or x.shape[-1] != w.shape[1]:
            return None
        if module.bias is not None and module.bias.shape[0] != w.shape[0]:
            return None
        return (*x.shape[:-1], w.shape[0])


class Bilinear(LayerKind):
    classes = (nn.Bilinear,)
    tensors = {"weight": {0: "out_features", 1: "in1_features", 2: "in2_features"}, "bias": {0: "out_features"}}

    def channels(self, ctx: RuleContext) -> None:
        m = ctx.module
        l1, l2 = ctx.layout(ctx.arg(0), -1), ctx.layout(ctx.arg(1), -1)
        lout = ctx.new_group(m.out_features, f"{ctx.path}.out_features")
        ctx.record_module({"in1_features": l1, "in2_features": l2, "out_features": lout})
        info = copy_info(ctx.channels(ctx.arg(0)))
        info.dims[info.ndim - 1] = lout
        ctx.set_output(info)


class Embedding(LayerKind):
    classes = (nn.Embedding,)
    tensors = {"weight": {1: "embedding_dim"}}

    def channels(self, ctx: RuleContext) -> None:
        lout = ctx.new_group(ctx.module.embedding_dim, f"{ctx.path}.embedding_dim")
        ctx.record_module({"embedding_dim": lout})
        ctx.set_output(TensorInfo(len(ctx.shape()), {len(ctx.shape()) - 1: lout}))


KINDS = (Conv(), ConvTranspose(), Linear(), Bilinear(), Embedding())
