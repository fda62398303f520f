"""The table of per-op channel rules (Torch-Pruning's idea, as a registry).

A *rule* says how one op of the traced graph couples channels: which channel
layouts its output carries, which input channels it ties together and which it
pins. Rules are plain callables ``rule(ctx) -> None`` that talk to a
:class:`~sparsenet_design.channel_graph.RuleContext`:

- ``ctx.node`` / ``ctx.module`` — the fx node and, for ``call_module``, the module;
- ``ctx.arg(i, name=None)`` — an argument (an fx ``Node`` or a constant);
- ``ctx.channels(value)`` — the per-dimension channel layouts of a tensor argument;
- ``ctx.merge(a, b)`` — the two layouts must keep equal widths;
- ``ctx.pin(value, reason)`` — the channels of a tensor argument never change;
- ``ctx.set_output(channels)`` — the layouts of the node's output.

Lookup is by target: a module class (most specific class in the MRO wins), a
function or torch op (``torch.ops.ns.op``, its overloads, or a
``torch.library.custom_op``), or a tensor-method name (``"view"``). An op with no
rule gets the conservative default: every channel it touches is pinned, so an
unknown op can cost compression but never a broken model.

Plugins extend the table from their ``register()`` entry point, e.g.::

    from sparsenet_design.rules import register_function_rule, passthrough_rule
    register_function_rule(torch.ops.mylib.warp, passthrough_rule(0, pinned_args=(1, 2)))
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

Rule = Callable[[Any], None]

_MODULE_RULES: dict[type, Rule] = {}
_FUNCTION_RULES: dict[Any, Rule] = {}
_METHOD_RULES: dict[str, Rule] = {}
_LEAF_MODULES: list[type[nn.Module]] = []


def _op_key(target: Any) -> Any:
    """Normalise the many faces of one torch op to one dictionary key."""
    op = getattr(target, "_opoverload", None)  # torch.library.custom_op objects
    if op is not None:
        target = op
    packet = getattr(target, "overloadpacket", None)  # OpOverload -> its packet
    if packet is not None:
        return packet
    return target


def register_module_rule(cls: type[nn.Module], rule: Rule | None = None):
    """Register ``rule`` for calls of modules of class ``cls`` (usable as a decorator)."""
    if rule is None:
        return lambda r: register_module_rule(cls, r)
    _MODULE_RULES[cls] = rule
    return rule


def register_function_rule(target: Any, rule: Rule | None = None):
    """Register ``rule`` for calls of a function or torch op (usable as a decorator).

    ``target`` may also be a dotted name (``"torchvision.ops.stochastic_depth"``'s
    ``"module.qualname"``), to cover a library without importing it."""
    if rule is None:
        return lambda r: register_function_rule(target, r)
    _FUNCTION_RULES[_op_key(target)] = rule
    return rule


def register_method_rule(name: str, rule: Rule | None = None):
    """Register ``rule`` for calls of the tensor method ``name`` (usable as a decorator)."""
    if rule is None:
        return lambda r: register_method_rule(name, r)
    _METHOD_RULES[name] = rule
    return rule


def register_leaf_module(cls: type[nn.Module]) -> type[nn.Module]:
    """Trace calls of ``cls`` as one opaque op instead of tracing into them.

    Give such a class a module rule too, or its channels are all pinned.
    """
    if cls not in _LEAF_MODULES:
        _LEAF_MODULES.append(cls)
    return cls


def leaf_module_classes() -> tuple[type[nn.Module], ...]:
    return tuple(_LEAF_MODULES)


def module_rule(module: nn.Module) -> Rule | None:
    for cls in type(module).__mro__:
        rule = _MODULE_RULES.get(cls)
        if rule is not None:
            return rule
    return None


def function_rule(target: Any) -> Rule | None:
    try:
        rule = _FUNCTION_RULES.get(_op_key(target))
    except TypeError:  # unhashable target
        return None
    if rule is None:
        name = f"{getattr(target, '__module__', '')}.{getattr(target, '__qualname__', '')}"
        rule = _FUNCTION_RULES.get(name)
    return rule


def method_rule(name: str) -> Rule | None:
    return _METHOD_RULES.get(name)


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
