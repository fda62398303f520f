"""Build the channel-dependency graph of a traced model.

One pass over the FX graph in topological order (in the spirit of
``torch.fx.passes.shape_prop``): each node's rule (from its kind, see
:mod:`sparsenet_design.kinds`) reads the channel layouts of its inputs, ties or
pins channel groups, and gives the layouts of its output, through a
:class:`~sparsenet_design.channels.context.RuleContext`. Shapes come from
``node.meta["value"]`` (see :mod:`sparsenet_design.tracing`).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from ..kinds.registry import layer_kind
from ..kinds.rules import function_rule, method_rule, module_rule
from ..tracing.trace import TracedModel
from .context import ModuleRecord, ParamRecord, RuleContext, TensorInfo
from .groups import GroupTable, Layout, Segment

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
                from ..errors import SpecMismatchError

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
