"""The core functions the plugin uses, wherever the core keeps them.

``sparsenet_design`` is moving from flat modules (``sparsenet_design.checkpoint``,
``.rules``, ``.layers``) to packages (``sparsenet_design.training.checkpoint``,
``.kinds.rules``, ``.kinds.prunable``); the plugin works with either layout.
``apply_spec`` and ``DesignSpec`` are re-exported by ``sparsenet_design``
itself in both.
"""
from __future__ import annotations

import importlib
from types import ModuleType


def first_module(*names: str) -> ModuleType:
    """The first of ``sparsenet_design.<name>`` that imports."""
    error = None
    for name in names:
        try:
            return importlib.import_module(f"sparsenet_design.{name}")
        except ModuleNotFoundError as exc:  # this layout does not have it; try the next
            error = exc
    raise error


def checkpoint() -> ModuleType:
    """``save_weights`` / ``load_weights``."""
    return first_module("training.checkpoint", "checkpoint")


def rules() -> ModuleType:
    """``passthrough_rule``, ``function_rule``."""
    return first_module("kinds.rules", "rules")


def prunable() -> ModuleType:
    """``prunable_layers``."""
    return first_module("kinds.prunable", "layers")


def reconstruct() -> ModuleType:
    """``reconstruct``, ``apply_spec``."""
    return first_module("rebuild.reconstruct", "reconstruct")


def apply_spec(model, spec):
    from sparsenet_design import apply_spec as apply

    return apply(model, spec)


def load_spec(path):
    from sparsenet_design import DesignSpec

    return DesignSpec.load(path)
