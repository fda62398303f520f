"""The table of kinds as rows a person can read (``sdesign kinds``)."""
from __future__ import annotations

from dataclasses import dataclass

from .base import LayerKind, OpKind, Kind
from .registry import all_kinds


@dataclass(frozen=True)
class KindRow:
    name: str
    kind: str  # "layer" or "op"
    targets: tuple[str, ...]
    facts: tuple[str, ...]  # what the kind provides: "channels", "shape", "resize", "prunable", "leaf"


_SHORT_MODULES = {"torch.nn.functional": "F", "_operator": "operator", "builtins": ""}


def _target_name(target) -> str:
    """``torch.cat``, ``F.relu``, ``operator.add``, ``nn.Conv2d``, a dotted name as given."""
    if isinstance(target, str):
        return target
    op_name = getattr(target, "_qualname", None)  # a torch.library custom op: "namespace::name"
    if isinstance(op_name, str):
        return op_name
    name = getattr(target, "__name__", None) or repr(target)
    module = getattr(target, "__module__", None) or "torch"
    if isinstance(target, type) and module.startswith("torch.nn."):
        module = "nn"
    module = _SHORT_MODULES.get(module, module)
    return f"{module}.{name}" if module else name


def _facts(kind: Kind) -> tuple[str, ...]:
    facts = ["channels"] if kind.channels is not None else []
    if isinstance(kind, LayerKind):
        if kind.has_output_shape():
            facts.append("shape")
        if kind.can_resize():
            facts.append("resize")
        facts += [name for name in ("prunable", "leaf") if getattr(kind, name)]
    return tuple(facts)


def kind_rows() -> list[KindRow]:
    """One row per registered kind, built-in ones first."""
    rows = []
    for kind in all_kinds():
        what = "layer" if isinstance(kind, LayerKind) else "op"
        targets = tuple(_target_name(t) for t in kind.targets())
        if isinstance(kind, OpKind):
            targets = tuple(_target_name(f) for f in kind.functions) + tuple(f"Tensor.{m}" for m in kind.methods)
        rows.append(KindRow(kind.name, what, targets, _facts(kind)))
    return rows
