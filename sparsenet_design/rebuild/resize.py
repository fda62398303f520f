"""Make a copy of a layer at new widths.

What a layer's tensors do when its widths change (which dimension of which
tensor follows which width attribute, and how a fresh copy is initialised)
belongs to its layer kind (:mod:`sparsenet_design.kinds`): ``LayerKind.tensors``
for the common case, ``LayerKind.resize`` for layers whose internals are more
involved (``nn.MultiheadAttention``). It holds for subclasses too, whatever
their ``forward``: it is about the tensors, not the call.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from ..kinds.base import select
from ..kinds.registry import layer_kind


def fresh_init(module: nn.Module) -> None:
    """``module.reset_parameters()``, with the same result but faster for stock layers."""
    kind = layer_kind(module, call=False)
    if kind is None:
        module.reset_parameters()
    else:
        kind.reset(module)


def resize_tensor(t: torch.Tensor, new_shape, indices: Mapping[int, torch.Tensor | None] | None = None) -> torch.Tensor:
    """Keep the first entries (or ``indices[dim]``) along every dimension that shrinks."""
    for d, size in enumerate(new_shape):
        if size != t.shape[d] or (indices and indices.get(d) is not None):
            t = select(t, d, size, (indices or {}).get(d))
    return t


def resize_module(
    module: nn.Module,
    widths: Mapping[str, int],
    indices: Mapping[str, torch.Tensor | None] | None = None,
    fresh: bool = True,
) -> nn.Module:
    """A copy of ``module`` whose width attributes are ``widths``.

    ``fresh=True`` re-initialises it (``reset_parameters``), as the paper trains
    the compact model from scratch; otherwise the kept channels (``indices[attr]``,
    or the first ones) carry their weights over.
    """
    kind = layer_kind(module, call=False)
    if kind is None:
        raise TypeError(
            f"don't know how to resize {type(module).__name__}; register a layer kind for it "
            "(sparsenet_design.kinds.LayerKind with its tensors, or a resize method)"
        )
    return kind.resize(module, dict(widths), indices, fresh)
