"""Output shapes of common layers by formula, for the shape pass.

The shape pass only needs every node's output *shape*. For the layers that
dominate a forward pass (convolutions, linear layers, norms, activations) the
shape follows from the input shape and the layer's attributes, which is far
cheaper than running them (for real: the arithmetic; on the meta device: shape
functions written in Python, up to 1 ms per call). A rule returns the output
shape, or ``None`` to let the layer run (unusual arguments, channel counts that
do not fit: running it raises the error a user expects).

The formulas belong to the layer kinds (``LayerKind.output_shape``,
:mod:`sparsenet_design.kinds`); a layer whose kind has none runs.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..kinds.registry import layer_kind

ShapeRule = Callable[..., "tuple[int, ...] | None"]


def shape_rule(module: nn.Module) -> ShapeRule | None:
    """The output-shape formula for calls of ``module``, if its kind has one (a
    subclass with its own ``forward`` computes something else: none)."""
    kind = layer_kind(module)
    if kind is None or not kind.has_output_shape():
        return None
    return kind.output_shape


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
