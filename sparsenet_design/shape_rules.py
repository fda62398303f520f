"""Output shapes of common layers by formula, for the shape pass.

The shape pass only needs every node's output *shape*. For the layers that
dominate a forward pass (convolutions, linear layers, norms, activations) the
shape follows from the input shape and the layer's attributes, which is far
cheaper than running them (for real: the arithmetic; on the meta device: shape
functions written in Python, up to 1 ms per call). A rule returns the output
shape, or ``None`` to let the layer run (unusual arguments, channel counts that
do not fit: running it raises the error a user expects).

Plugins add rules with :func:`register_shape_rule`; a class without a rule runs.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

ShapeRule = Callable[..., "tuple[int, ...] | None"]
_SHAPE_RULES: dict[type, ShapeRule] = {}


def register_shape_rule(cls: type[nn.Module], rule: ShapeRule) -> None:
    """``rule(module, input_tensor) -> output shape or None`` for modules of ``cls``
    (subclasses included) called with one tensor argument."""
    _SHAPE_RULES[cls] = rule
    _lookup_cache.clear()


_lookup_cache: dict[type, ShapeRule | None] = {}


def shape_rule(module: nn.Module) -> ShapeRule | None:
    cls = type(module)
    try:
        return _lookup_cache[cls]
    except KeyError:
        pass
    rule = next((_SHAPE_RULES[c] for c in cls.__mro__ if c in _SHAPE_RULES), None)
    if rule is not None and not _plain_forward(cls, rule):
        rule = None  # a subclass that overrides forward computes something else
    _lookup_cache[cls] = rule
    return rule


def _plain_forward(cls: type, rule: ShapeRule) -> bool:
    owner = next(c for c in cls.__mro__ if c in _SHAPE_RULES and _SHAPE_RULES[c] is rule)
    return cls.forward is owner.forward


def output_like(module: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """A stand-in for ``module(x)`` with the right shape, or None when the module must run."""
    rule = shape_rule(module)
    if rule is None:
        return None
    shape = rule(module, x)
    if shape is None:
        return None
    if tuple(shape) == tuple(x.shape):
        return x  # the values do not matter, only the shape; no copy
    return x.new_zeros(shape)


def stand_in_for_call(module: nn.Module, args: tuple, kwargs: dict) -> torch.Tensor | None:
    """:func:`output_like` for a call ``module(*args, **kwargs)``: only a call with
    one tensor argument and no keywords gets a stand-in."""
    if len(args) == 1 and not kwargs and isinstance(args[0], torch.Tensor):
        return output_like(module, args[0])
    return None


def _same(module: nn.Module, x: torch.Tensor) -> tuple[int, ...]:
    return tuple(x.shape)


def _channel_dim(x: torch.Tensor, spatial: int) -> int | None:
    if x.dim() == spatial + 2:
        return 1
    if x.dim() == spatial + 1:  # unbatched
        return 0
    return None


def _tensors_fit(module: nn.Module, channels: int, names=("weight", "bias", "running_mean", "running_var")) -> bool:
    """Whether the per-channel tensors the layer holds have ``channels`` entries
    (what the real kernel checks; a rebuilt layer is checked against its tensors)."""
    for name in names:
        t = module._parameters.get(name, module._buffers.get(name))
        if t is not None and t.shape[0] != channels:
            return False
    return True


def _norm(module: nn.Module, x: torch.Tensor) -> tuple[int, ...] | None:
    channels = getattr(module, "num_features", None) or getattr(module, "num_channels", None)
    if x.dim() < 2 or channels is None or x.shape[1] != channels or not _tensors_fit(module, channels):
        return None
    groups = getattr(module, "num_groups", None)
    if groups is not None and channels % groups:
        return None
    check = getattr(module, "_check_input_dim", None)
    if check is not None:
        try:
            check(x)
        except ValueError:
            return None
    return tuple(x.shape)


def _layer_norm(module: nn.LayerNorm, x: torch.Tensor) -> tuple[int, ...] | None:
    shape = tuple(module.normalized_shape)
    if tuple(x.shape[-len(shape):]) != shape:
        return None
    for t in (module.weight, module.bias):
        if t is not None and tuple(t.shape) != shape:
            return None
    return tuple(x.shape)


def _linear(module: nn.Linear, x: torch.Tensor) -> tuple[int, ...] | None:
    w = module.weight
    if x.dim() < 1 or w.dim() != 2 or x.shape[-1] != w.shape[1]:
        return None
    if module.bias is not None and module.bias.shape[0] != w.shape[0]:
        return None
    return (*x.shape[:-1], w.shape[0])


def _conv(module: nn.modules.conv._ConvNd, x: torch.Tensor) -> tuple[int, ...] | None:
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


def _conv_transpose(module: nn.modules.conv._ConvTransposeNd, x: torch.Tensor) -> tuple[int, ...] | None:
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


for _cls in (nn.Conv1d, nn.Conv2d, nn.Conv3d):
    register_shape_rule(_cls, _conv)
for _cls in (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d):
    register_shape_rule(_cls, _conv_transpose)
register_shape_rule(nn.Linear, _linear)
for _cls in (nn.modules.batchnorm._BatchNorm, nn.GroupNorm):
    register_shape_rule(_cls, _norm)
register_shape_rule(nn.LayerNorm, _layer_norm)
for _cls in (
    nn.Identity, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Sigmoid, nn.Tanh, nn.Softplus, nn.Softsign,
    nn.Tanhshrink, nn.LogSigmoid, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
):
    register_shape_rule(_cls, _same)
