"""Registers the built-in kinds, in this order (later ones take precedence): the
ops (element-wise, reshapes, concatenation and splits, sizes, products, then the
functional layers), then the layers (torch.nn's, then those of other libraries,
named by dotted path). Imported once, by the table itself."""
from __future__ import annotations

from .layers import libraries, norms, shaping, weights
from .ops import concat, elementwise, functional, products, reshape, sizes
from .registry import register_kind

for _module in (elementwise, reshape, concat, sizes, products, functional, weights, norms, shaping, libraries):
    for _kind in _module.KINDS:
        register_kind(_kind)
