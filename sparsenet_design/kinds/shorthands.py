"""Shorthands that register one facet of a kind: a channel rule, a leaf, a shape
formula, how tensors follow widths, a resizer, prunability. Each keeps whatever
else the table already knows about the class (copying its kind), so that older
code and one-line registrations work; a whole :class:`~.base.LayerKind` says more."""
from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from torch import nn

from .base import LayerKind, OpKind
from .registry import layer_kind, register_kind, unregister_kind

Rule = Callable[[Any], None]
ShapeRule = Callable[..., "tuple[int, ...] | None"]


def kind_of_exactly(cls: type[nn.Module]) -> LayerKind:
    """A kind of exactly ``cls`` that keeps what the table knows about it, to change and register."""
    known = layer_kind(cls, call=False)
    kind = copy.copy(known) if known is not None else LayerKind(cls)
    kind.classes = (cls,)
    return kind


# op kinds made by the shorthand below, one per rule function: ops that share a
# rule are one kind in the table (all element-wise functions, say)
_KIND_OF_RULE: dict[Any, OpKind] = {}


def _name_of(rule: Rule) -> str:
    name = getattr(rule, "__name__", "op").strip("_")
    return (name[: -len("_rule")] if name.endswith("_rule") else name).replace("_", " ")


def _add_op(rule: Rule, function: Any = None, method: str | None = None) -> None:
    kind = _KIND_OF_RULE.get(rule)
    if kind is None:
        kind = _KIND_OF_RULE[rule] = OpKind(
            *([function] if function is not None else []), methods=[method] if method else (), channels=rule,
            name=_name_of(rule),
        )
    else:
        unregister_kind(kind)  # registered again below: the latest registration takes precedence
        if function is not None and function not in kind.functions:
            kind.functions += (function,)
        if method and method not in kind.methods:
            kind.methods += (method,)
    register_kind(kind)


def register_function_rule(target: Any, rule: Rule | None = None):
    """Register ``rule`` for calls of a function or torch op (usable as a decorator).
    Shorthand for an :class:`~sparsenet_design.kinds.OpKind`.

    ``target`` may also be a dotted name (``"torchvision.ops.stochastic_depth"``'s
    ``"module.qualname"``), to cover a library without importing it."""
    if rule is None:
        return lambda r: register_function_rule(target, r)
    _add_op(rule, function=target)
    return rule


def register_method_rule(name: str, rule: Rule | None = None):
    """Register ``rule`` for calls of the tensor method ``name`` (usable as a decorator)."""
    if rule is None:
        return lambda r: register_method_rule(name, r)
    _add_op(rule, method=name)
    return rule


def register_module_rule(cls: type[nn.Module], rule: Rule | None = None):
    """Register ``rule`` for calls of modules of class ``cls`` (usable as a decorator).
    Shorthand for a :class:`~sparsenet_design.kinds.LayerKind` of ``cls`` that keeps
    whatever else the table knows about ``cls`` (its tensors, its shape formula)."""
    if rule is None:
        return lambda r: register_module_rule(cls, r)
    kind = kind_of_exactly(cls)
    kind.channels = rule
    kind.leaf = True
    register_kind(kind)
    return rule


def register_leaf_module(cls: type[nn.Module]) -> type[nn.Module]:
    """Trace calls of ``cls`` as one opaque op instead of tracing into them.

    Give such a class a rule too (:func:`register_module_rule`, or a whole
    :class:`~sparsenet_design.kinds.LayerKind`), or its channels are all pinned.
    """
    if layer_kind(cls) is None:
        register_kind(LayerKind(cls))
    return cls


def register_shape_rule(cls: type[nn.Module], rule: ShapeRule) -> None:
    """``rule(module, input_tensor) -> output shape or None`` for modules of ``cls``
    (subclasses that keep its ``forward`` included) called with one tensor argument.
    Shorthand for a :class:`~sparsenet_design.kinds.LayerKind` of ``cls`` that keeps
    whatever else the table knows about ``cls``."""
    kind = kind_of_exactly(cls)
    kind.output_shape = rule
    register_kind(kind)


def register_param_dims(cls: type[nn.Module], dims: dict[str, dict[int, tuple[str, bool] | str]]) -> None:
    """Declare how ``cls``'s tensors follow its width attributes, e.g.
    ``{"weight": {0: "out_features", 1: "in_features"}, "bias": {0: "out_features"}}``.
    Shorthand for ``LayerKind.tensors``."""
    kind = kind_of_exactly(cls)
    kind.tensors = dims
    register_kind(kind)


def register_resizer(cls: type[nn.Module], fn: Callable[..., nn.Module]) -> None:
    """``fn(module, widths: dict[str, int], indices: dict[str, LongTensor] | None, fresh: bool)``.
    Shorthand for ``LayerKind.resize``."""
    kind = kind_of_exactly(cls)
    kind.resize = fn
    register_kind(kind)


def register_prunable(cls: type[nn.Module]) -> type[nn.Module]:
    """Treat ``cls`` (a module with a ``weight`` parameter) as a prunable layer.
    Shorthand for a :class:`~sparsenet_design.kinds.LayerKind` marked ``prunable``."""
    from .registry import register_kind

    known = layer_kind(cls, call=False)
    if known is None or not known.prunable:
        kind = kind_of_exactly(cls)
        kind.prunable = True
        register_kind(kind)
    return cls
