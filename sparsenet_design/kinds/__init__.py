"""Layer and op kinds: everything the core knows about one kind of layer (its
channel rule, output shape, how it is resized and initialised, whether it is
prunable and traced as one call) or one kind of op, in one object, in one table.

    from sparsenet_design.kinds import LayerKind, register_kind

    register_kind(LayerKind(MyWarp, channels=passthrough_rule(0, pinned_args=(1,))))

See :mod:`.base` for what a kind holds and how subclasses match, and
:mod:`.registry` for the table.
"""
from .base import LayerKind, OpKind
from .registry import (
    all_kinds,
    function_kind,
    is_leaf_module,
    layer_kind,
    method_kind,
    register_kind,
    registered,
    unregister_kind,
)

__all__ = [
    "LayerKind",
    "OpKind",
    "all_kinds",
    "function_kind",
    "is_leaf_module",
    "layer_kind",
    "method_kind",
    "register_kind",
    "registered",
    "unregister_kind",
]
