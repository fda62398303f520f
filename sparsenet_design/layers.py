"""Which modules are *prunable layers*: the ones whose weight the l1 penalty
covers and whose density drives the √d rule (convolutions and linear layers).

Plugins may add their own layer classes with :func:`register_prunable`.
"""
from __future__ import annotations

from collections.abc import Iterator

from torch import nn

_PRUNABLE: list[type[nn.Module]] = [
    nn.Conv1d, nn.Conv2d, nn.Conv3d,
    nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
    nn.Linear,
]


def register_prunable(cls: type[nn.Module]) -> type[nn.Module]:
    """Treat ``cls`` (a module with a ``weight`` parameter) as a prunable layer."""
    if cls not in _PRUNABLE:
        _PRUNABLE.append(cls)
    return cls


def is_prunable(module: nn.Module) -> bool:
    return isinstance(module, tuple(_PRUNABLE)) and isinstance(
        getattr(module, "weight", None), nn.Parameter
    )


def prunable_layers(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """``(path, module)`` for every prunable layer, in model (definition) order."""
    for name, module in model.named_modules():
        if is_prunable(module):
            yield name, module
