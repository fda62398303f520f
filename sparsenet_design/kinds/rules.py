"""Channel rules: what they are, and shorthands to register them.

A *rule* says how one op of the traced graph couples channels: which channel
layouts its output carries, which input channels it ties together and which it
pins. Rules are plain callables ``rule(ctx) -> None`` that talk to a
:class:`~sparsenet_design.channels.graph.RuleContext`:

- ``ctx.node`` / ``ctx.module`` — the fx node and, for ``call_module``, the module;
- ``ctx.arg(i, name=None)`` — an argument (an fx ``Node`` or a constant);
- ``ctx.channels(value)`` — the per-dimension channel layouts of a tensor argument;
- ``ctx.merge(a, b)`` — the two layouts must keep equal widths;
- ``ctx.pin(value, reason)`` — the channels of a tensor argument never change;
- ``ctx.set_output(channels)`` — the layouts of the node's output.

Rules live in the table of kinds (:mod:`sparsenet_design.kinds`): a layer kind
(module class; a subclass with its own ``forward`` is traced through instead) or
an op kind (a function or torch op: ``torch.ops.ns.op``, its overloads, a
``torch.library.custom_op``; or a tensor-method name, ``"view"``). An op with no
rule gets the conservative default: every channel it touches is pinned, so an
unknown op can cost compression but never a broken model.

Plugins extend the table from their ``register()`` entry point, e.g.::

    from sparsenet_design.kinds import OpKind, register_kind
    from sparsenet_design.kinds.rules import passthrough_rule
    register_kind(OpKind(torch.ops.mylib.warp, channels=passthrough_rule(0, pinned_args=(1, 2))))

The ``register_*_rule`` functions below are shorthands for one-rule kinds.
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from torch import nn

from .base import LayerKind, OpKind
from .registry import function_kind, layer_kind, method_kind, register_kind, unregister_kind

Rule = Callable[[Any], None]

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
    known = layer_kind(cls, call=False)
    kind = copy.copy(known) if known is not None else LayerKind(cls)
    kind.classes = (cls,)
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


def module_rule(module: nn.Module) -> Rule | None:
    kind = layer_kind(module)
    return None if kind is None else kind.channels


def function_rule(target: Any) -> Rule | None:
    kind = function_kind(target)
    return None if kind is None else kind.channels


def method_rule(name: str) -> Rule | None:
    kind = method_kind(name)
    return None if kind is None else kind.channels


def passthrough_rule(source_arg: int = 0, pinned_args: tuple[int, ...] = ()) -> Rule:
    """Output has the channel layouts of argument ``source_arg``; arguments in
    ``pinned_args`` keep their channels (e.g. a warp op: image channels pass
    through, the per-pixel kernel/offset channels are fixed by the op)."""

    def rule(ctx) -> None:
        for index in pinned_args:
            ctx.pin(ctx.arg(index), f"argument {index} of {ctx.describe()} has fixed channels")
        ctx.set_output(ctx.channels(ctx.arg(source_arg)))

    rule.__name__ = f"passthrough_rule({source_arg}, pinned_args={pinned_args})"
    return rule
