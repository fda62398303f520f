"""What a channel rule sees and writes: the channel info of tensors
(:class:`TensorInfo`, sizes as :class:`SymInt` / :class:`ShapeInfo`), the records
of modules and tensors whose widths follow channel groups, and the
:class:`RuleContext` a rule talks to (see :mod:`sparsenet_design.kinds.rules`)."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from .groups import Layout, Segment

@dataclass
class TensorInfo:
    """Channel layouts of a tensor: ``dims[d]`` for dimensions that carry channels,
    ``blocks[d] = (group, count)`` for dimensions that index equal blocks of a
    group (attention heads, channel-shuffle groups)."""

    ndim: int
    dims: dict[int, Layout] = field(default_factory=dict)
    blocks: dict[int, tuple[int, int]] = field(default_factory=dict)

    def layout(self, dim: int) -> Layout | None:
        return self.dims.get(dim % self.ndim if self.ndim else dim)

    def groups(self) -> set[int]:
        out = {s.group for layout in self.dims.values() for s in layout}
        out.update(g for g, _ in self.blocks.values())
        return out


@dataclass
class SymInt:
    """An int computed from a tensor's shape: ``layout`` when it equals the width of
    a channel layout (``x.shape[1]``, ``C // heads``), else ``None``."""

    layout: Layout | None


@dataclass
class ShapeInfo:
    dims: tuple[Layout | None, ...]


@dataclass
class ModuleRecord:
    """A module whose constructor widths follow channel groups."""

    path: str
    cls: str
    attrs: dict[str, Layout]  # constructor argument -> layout of that width
    roles: list[tuple[str, Layout]] = field(default_factory=list)  # ("in"/"out", layout) for √d proposals


@dataclass
class ParamRecord:
    """A parameter or buffer used directly in forward code (``get_attr``)."""

    path: str
    shape: tuple[int, ...]
    dims: dict[int, Layout]



class RuleContext:
    """What a channel rule sees of one node; see :mod:`sparsenet_design.kinds.rules`."""

    def __init__(self, builder, node: fx.Node | None, module: nn.Module | None):
        self._b = builder
        self.node = node
        self.module = module
        self.table = builder.table

    # -- reading --------------------------------------------------------
    def describe(self) -> str:
        if self.node.op == "call_module":
            return f"module '{self.node.target}' ({type(self.module).__name__})"
        target = self.node.target
        name = target if isinstance(target, str) else getattr(target, "__name__", str(target))
        return f"{self.node.op} '{name}' (node {self.node.name})"

    @property
    def path(self) -> str:
        return str(self.node.target) if self.node.op == "call_module" else self.node.name

    def arg(self, index: int, name: str | None = None, default: Any = None) -> Any:
        if index is not None and index < len(self.node.args):
            return self.node.args[index]
        if name is not None and name in self.node.kwargs:
            return self.node.kwargs[name]
        return default

    def value(self, v: Any = None) -> Any:
        """The example value (meta tensor) of a node, or of this node's output."""
        if v is None:
            return self.node.meta.get("value")
        if isinstance(v, fx.Node):
            return v.meta.get("value")
        return v

    def shape(self, v: Any = None) -> tuple[int, ...] | None:
        value = self.value(v)
        return tuple(value.shape) if isinstance(value, torch.Tensor) else None

    def info(self, v: Any) -> Any:
        return self._b.info.get(v) if isinstance(v, fx.Node) else None

    def channels(self, v: Any) -> TensorInfo:
        """Channel info of a tensor argument (no layouts if nothing is known)."""
        info = self.info(v)
        if isinstance(info, TensorInfo):
            return info
        shape = self.shape(v)
        return TensorInfo(len(shape) if shape is not None else 0)

    def layout(self, v: Any, dim: int, role: str = "input") -> Layout:
        """Layout of ``v`` along ``dim``; a fresh pinned group when nothing is known
        (model inputs, outputs of ops without a rule)."""
        info = self.channels(v)
        shape = self.shape(v)
        if shape is None:
            raise ValueError(f"{self.describe()}: argument is not a tensor")
        d = dim % len(shape)
        layout = info.dims.get(d)
        if layout is None:
            label = f"{v.name if isinstance(v, fx.Node) else 'value'}[dim {d}]"
            gid = self.table.new(shape[d], label, pinned=f"{label} has fixed channels ({role} of {self.describe()})")
            layout = (Segment(gid),)
            info.dims[d] = layout
            if isinstance(v, fx.Node) and self._b.info.get(v) is None:
                self._b.info[v] = info
        return layout

    # -- writing --------------------------------------------------------
    def new_group(self, width: int, label: str) -> Layout:
        return (Segment(self.table.new(width, label)),)

    def merge(self, a: Layout, b: Layout, why: str | None = None) -> None:
        why = why or self.describe()
        if a == b:
            return
        t = self.table
        if len(a) == len(b) and all(t.width0(x) == t.width0(y) for x, y in zip(a, b)):
            for x, y in zip(a, b):
                t.union(x, y, why)
            return
        if len(a) == 1 and len(b) == 1:
            t.union(a[0], b[0], why)
            return
        self.pin_layout(a, f"differently concatenated channels meet in {why}")
        self.pin_layout(b, f"differently concatenated channels meet in {why}")

    def pin_layout(self, layout: Layout, reason: str) -> None:
        for seg in layout:
            self.table.pin(seg.group, reason)

    def pin(self, v: Any, reason: str | None = None) -> None:
        """Pin every channel group reachable from argument ``v`` (tensors, lists)."""
        reason = reason or f"used by {self.describe()}, which has no channel rule"
        for info in flatten_infos(self.info(v) if isinstance(v, fx.Node) else v):
            for g in info.groups():
                self.table.pin(g, reason)

    def require_divisible(self, layout: Layout, k: int) -> bool:
        """Widths of ``layout`` must stay divisible by ``k``. False if it cannot be
        expressed (several segments): the caller should pin."""
        if k == 1:
            return True
        if len(layout) != 1:
            return False
        self.table.require_integer(layout[0], Fraction(1, k))
        return True

    def record_module(self, attrs: dict[str, Layout], roles: Iterable[tuple[str, Layout]] = (),
                      path: str | None = None) -> None:
        """The widths of this call's module (or of the module at ``path``: one whose
        tensors a functional op inside a traced-through ``forward`` uses) follow
        ``attrs``; ``roles`` are its ("in"/"out", layout) slices for √d proposals."""
        if path is None:
            path, module = str(self.node.target), self.module
        else:
            module = self._b.module_at(path)
        rec = self._b.modules.get(path)
        if rec is None:
            self._b.modules[path] = ModuleRecord(path, type(module).__name__, dict(attrs), list(roles))
            return
        # a module called several times: every call ties the same widths
        for attr, layout in attrs.items():
            if attr in rec.attrs:
                self.merge(rec.attrs[attr], layout, f"second call of {path}")
            else:
                rec.attrs[attr] = layout

    def set_output(self, info: Any) -> None:
        self._b.info[self.node] = info

    def tensor_owner(self, v: Any) -> tuple[str, nn.Module, str] | None:
        """``(module path, module, tensor name)`` when ``v`` is a parameter or buffer
        of the model used as is (a ``get_attr`` node)."""
        if not isinstance(v, fx.Node) or v.op != "get_attr":
            return None
        path, _, name = str(v.target).rpartition(".")
        try:
            return path, self._b.module_at(path), name
        except AttributeError:
            return None

    @property
    def constant_sizes(self) -> bool:
        """Whether every size in this graph is a constant (it was recorded from a run),
        so a constant says nothing about where it came from."""
        return self._b.traced.constant_sizes

    def owner_path(self) -> str:
        """Path of the module whose forward code created this node ("" for the root)."""
        return self.node.meta.get("owner", "")

    def follow_constant(self, value: int | tuple[int], layout: Layout) -> bool:
        """A size written as ``value`` in forward code: if it is an int attribute (or a
        one-int tuple, like ``normalized_shape``) of the module that runs the code
        (``self.head_dim``), record that the attribute must follow ``layout``'s width
        and return True."""
        size = value if isinstance(value, int) else value[0]
        if sum(self.table.width0(seg) for seg in layout) != size:
            return False  # the layout does not measure this size: nothing to follow
        path = self.owner_path()
        try:
            owner = self._b.traced.model.get_submodule(path)
        except AttributeError:
            return False
        def matches(v) -> bool:
            if isinstance(value, int):
                return type(v) is int and v == value
            return isinstance(v, (tuple, list)) and len(v) == 1 and tuple(v) == tuple(value)

        names = [k for k, v in vars(owner).items() if not k.startswith("_") and matches(v)]
        if len(names) != 1:
            return False
        key = f"{path}.{names[0]}" if path else names[0]
        if key in self._b.attributes:
            self.merge(self._b.attributes[key], layout, f"attribute {key}")
        else:
            self._b.attributes[key] = layout
        return True


def flatten_infos(info: Any) -> list[TensorInfo]:
    if isinstance(info, TensorInfo):
        return [info]
    if isinstance(info, (list, tuple)):
        return [i for item in info for i in flatten_infos(item)]
    if isinstance(info, dict):
        return [i for item in info.values() for i in flatten_infos(item)]
    if isinstance(info, SymInt) and info.layout:
        return [TensorInfo(1, {0: info.layout})]
    if isinstance(info, ShapeInfo):
        return [TensorInfo(1, {0: d}) for d in info.dims if d]
    return []


