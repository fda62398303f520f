"""Registers the built-in layer kinds and the functional-layer op kinds (imported once, by the table itself)."""
from __future__ import annotations

from . import functional, libraries, norms, shaping, weights
from .registry import register_kind

for _kind in (*weights.KINDS, *norms.KINDS, *shaping.KINDS, *functional.KINDS, *libraries.KINDS):
    register_kind(_kind)
