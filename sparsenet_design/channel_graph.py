"""Build the channel-dependency graph of a traced model.

One pass over the FX graph in topological order (in the spirit of
``torch.fx.passes.shape_prop``): each node's rule (from :mod:`.rules`) reads
the channel layouts of its inputs, ties or pins channel groups, and gives the
layouts of its output. Shapes come from ``node.meta["value"]`` (see
:mod:`.trace`).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from .groups import GroupTable, Layout, Segment
from .kinds.registry import layer_kind
from .rules import function_rule, method_rule, module_rule
from .trace import TracedModel


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


@dataclass
class ChannelGraph:
    traced: TracedModel
    table: GroupTable
    modules: dict[str, ModuleRecord]
    params: dict[str, ParamRecord]
    notes: list[str]
    attributes: dict[str, Layout] = field(default_factory=dict)  # "module.attr" -> layout of its int value

    def groups_of(self, path: str) -> set[int]:
        rec = self.modules.get(path)
        if rec is None:
            return set()
        return {self.table.root(s.group) for layout in rec.attrs.values() for s in layout}

    def to_networkx(self):
        """A bipartite networkx graph: layer nodes ``("layer", path)`` and group
        nodes ``("group", root)`` joined by the role of the slice."""
        import networkx as nx

        g = nx.Graph()
        for root in self.table.roots():
            info = self.table.groups[root]
            g.add_node(("group", root), label=info.label, width=info.width, pinned=bool(info.pinned))
        for rec in self.modules.values():
            g.add_node(("layer", rec.path), cls=rec.cls)
            for attr, layout in rec.attrs.items():
                for seg in layout:
                    g.add_edge(("layer", rec.path), ("group", self.table.root(seg.group)), attr=attr)
        return g


class RuleContext:
    """What a channel rule sees of one node; see :mod:`sparsenet_design.rules`."""

    def __init__(self, builder: "_Builder", node: fx.Node, module: nn.Module | None):
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
        for info in _flatten_infos(self.info(v) if isinstance(v, fx.Node) else v):
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


def _flatten_infos(info: Any) -> list[TensorInfo]:
    if isinstance(info, TensorInfo):
        return [info]
    if isinstance(info, (list, tuple)):
        return [i for item in info for i in _flatten_infos(item)]
    if isinstance(info, dict):
        return [i for item in info.values() for i in _flatten_infos(item)]
    if isinstance(info, SymInt) and info.layout:
        return [TensorInfo(1, {0: info.layout})]
    if isinstance(info, ShapeInfo):
        return [TensorInfo(1, {0: d}) for d in info.dims if d]
    return []


def _node_args(node: fx.Node) -> list[fx.Node]:
    out: list[fx.Node] = []
    fx.node.map_arg((node.args, node.kwargs), lambda n: out.append(n) or n)
    return out


class _Builder:
    def __init__(self, traced: TracedModel, pinned_modules: Iterable[str]):
        self.traced = traced
        self.table = GroupTable()
        self.info: dict[fx.Node, Any] = {}
        self.modules: dict[str, ModuleRecord] = {}
        self.params: dict[str, ParamRecord] = {}
        self.notes: list[str] = list(traced.notes)
        self.pinned_modules = tuple(pinned_modules)
        self.unknown: dict[str, int] = {}
        self.attributes: dict[str, Layout] = {}

    def module_at(self, path: str) -> nn.Module:
        modules = self.traced.modules
        return modules[path] if path in modules else self.traced.model.get_submodule(path)

    def run(self) -> ChannelGraph:
        modules = self.traced.modules or dict(self.traced.model.named_modules())
        for node in self.traced.graph.nodes:
            if node.op == "placeholder":
                value = node.meta.get("value")
                self.info[node] = TensorInfo(value.dim()) if isinstance(value, torch.Tensor) else None
            elif node.op == "get_attr":
                self._get_attr(node)
            elif node.op == "output":
                ctx = RuleContext(self, node, None)
                # outputs may sit in tuples, lists and dicts
                fx.node.map_arg(node.args[0], lambda n: ctx.pin(n, "model output") or n)
            else:
                module = modules.get(node.target) if node.op == "call_module" else None
                self._apply_rule(node, module)
        self._tie_module_tensors()
        self._pin_user_modules()
        return ChannelGraph(self.traced, self.table, self.modules, self.params, self.notes, self.attributes)

    def _get_attr(self, node: fx.Node) -> None:
        value = node.meta.get("value")
        if not isinstance(value, torch.Tensor) or value.dim() == 0:
            self.info[node] = None
            return
        state = self._state_kind(str(node.target))
        why = {
            "constant": f"{node.target} is a tensor made by forward code, not a parameter or buffer",
            "derived": f"{node.target} is a non-persistent buffer (data derived from sizes, not weights)",
        }.get(state)
        dims = {
            d: (Segment(self.table.new(size, f"{node.target}[dim {d}]", pinned=why)),)
            for d, size in enumerate(value.shape)
            if size > 1
        }
        if state == "state":
            self.params[str(node.target)] = ParamRecord(str(node.target), tuple(value.shape), dims)
        self.info[node] = TensorInfo(value.dim(), dict(dims))

    def _state_kind(self, target: str) -> str:
        """"state" for a parameter or persistent buffer, whose widths may follow the
        channels; "derived" for a non-persistent buffer (position indices, masks: the
        model computes it, often in forward, from sizes); "constant" for anything else
        (fx stores tensor constants made in ``forward`` on the model as attributes)."""
        path, _, name = target.rpartition(".")
        try:
            module = self.module_at(path)
        except AttributeError:
            return "constant"
        if name in module._parameters:
            return "state"
        if name in module._buffers:
            return "derived" if name in module._non_persistent_buffers_set else "state"
        return "constant"

    def _apply_rule(self, node: fx.Node, module: nn.Module | None) -> None:
        if node.op == "call_module":
            rule = module_rule(module)
            what = type(module).__name__
        elif node.op == "call_method":
            rule = method_rule(node.target)
            what = f"Tensor.{node.target}"
        else:
            rule = function_rule(node.target)
            what = getattr(node.target, "__name__", str(node.target))
        ctx = RuleContext(self, node, module)
        if rule is None:
            self.unknown[what] = self.unknown.get(what, 0) + 1
            for arg in _node_args(node):
                ctx.pin(arg, f"used by {ctx.describe()}, which has no channel rule")
            self.info[node] = None
            return
        try:
            rule(ctx)
        except Exception as exc:  # a rule that cannot cope pins instead of failing
            self.notes.append(f"rule for {ctx.describe()} failed ({type(exc).__name__}: {exc}); its channels are pinned")
            for arg in _node_args(node):
                ctx.pin(arg, f"rule for {ctx.describe()} failed")
            self.info[node] = None

    def _tie_module_tensors(self) -> None:
        """A module's tensors used directly in forward code (``get_attr``: tied weights,
        a functional call inside a traced-through ``forward``) follow the module's
        width attributes, as its layer kind declares."""
        ctx = RuleContext(self, None, None)
        shared: dict[int, tuple[str, dict[int, Layout]]] = {}  # a tensor two modules hold: tied weights
        for rec in self.modules.values():
            module = self.module_at(rec.path)
            kind = layer_kind(module, call=False)
            if kind is None:
                continue
            grouped = getattr(module, "groups", 1) != 1
            for name, spec in kind.tensor_dims().items():
                layouts = {dim: rec.attrs[attr] for dim, (attr, per_group) in spec.items()
                           if attr in rec.attrs and not (per_group and grouped)}
                where = f"{rec.path}.{name}" if rec.path else name
                tensor = getattr(module, name, None)
                if isinstance(tensor, torch.Tensor):
                    first = shared.setdefault(id(tensor), (where, layouts))
                    for dim in first[1].keys() & layouts.keys():
                        ctx.merge(first[1][dim], layouts[dim], f"{where} is the same tensor as {first[0]}")
                param = self.params.get(where)
                if param is not None:
                    for dim, layout in layouts.items():
                        if dim in param.dims:
                            ctx.merge(param.dims[dim], layout, f"{param.path} follows {rec.path}")

    def _pin_user_modules(self) -> None:
        for path in self.pinned_modules:
            hits = [p for p in self.modules if p == path or p.startswith(path + ".")]
            if not hits and path not in (self.traced.modules or dict(self.traced.model.named_modules())):
                from .errors import SpecMismatchError

                raise SpecMismatchError(
                    f"Pinned module '{path}' does not exist in {type(self.traced.model).__name__}. "
                    "Check the spelling against model.named_modules() (paths look like 'layer1.0.conv1')."
                )
            layouts = [lay for p in hits for lay in self.modules[p].attrs.values()]
            layouts += [lay for key, lay in self.attributes.items() if key.startswith(path + ".") or not path]
            for layout in layouts:
                for seg in layout:
                    self.table.pin(seg.group, f"module '{path}' pinned")
            self._pin_calls_of(path)

    def _pin_calls_of(self, path: str) -> None:
        """Pin what flows into and out of each call of module ``path`` (or a module in
        it), so that pinning also holds a layer that has no width of its own (one with
        a rule but a fixed channel count inside, say)."""
        for node in self.traced.graph.nodes:
            target = node.target
            if node.op == "call_module" and (target == path or target.startswith(path + ".") or not path):
                ctx = RuleContext(self, node, None)
                for v in [*_node_args(node), node]:
                    ctx.pin(v, f"module '{path}' pinned")


def build_channel_graph(traced: TracedModel, pinned_modules: Iterable[str] = ()) -> ChannelGraph:
    """Run every node's channel rule and return the channel groups."""
    builder = _Builder(traced, pinned_modules)
    graph = builder.run()
    if builder.unknown:
        names = ", ".join(f"{k} ×{v}" if v > 1 else k for k, v in sorted(builder.unknown.items()))
        graph.notes.append(f"ops without a channel rule (their channels are pinned): {names}")
    return graph
