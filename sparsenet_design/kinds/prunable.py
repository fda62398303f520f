"""Which modules are *prunable layers*: the ones whose weight the l1 penalty
covers and whose density drives the √d rule (convolutions and linear layers:
the layer kinds marked ``prunable``, subclasses included, whatever their
``forward``; see :mod:`sparsenet_design.kinds`).
"""
from __future__ import annotations

from collections.abc import Iterator

from torch import nn

from .registry import layer_kind


def is_prunable(module: nn.Module) -> bool:
    kind = layer_kind(module, call=False)
    return kind is not None and kind.prunable and isinstance(getattr(module, "weight", None), nn.Parameter)


def prunable_layers(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """``(path, module)`` for every prunable layer, in model (definition) order."""
    for name, module in model.named_modules():
        if is_prunable(module):
            yield name, module
