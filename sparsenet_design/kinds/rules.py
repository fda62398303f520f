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

from collections.abc import Callable
from typing import Any

from torch import nn

from .registry import function_kind, layer_kind, method_kind

Rule = Callable[[Any], None]

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
