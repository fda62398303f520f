"""Turn a model plus example inputs into a module-level FX graph with shapes.

Two tracers, tried in order:

1. ``torch.fx`` symbolic tracing: fast, keeps sizes symbolic, so the graph
   shows which reshape sizes come from tensor shapes and which are constants
   written into the code. The lean tracer of ``fast_trace`` records the same
   graph for the common case at about half the cost; what it leaves, fx does.
2. A concrete-shape tracer (``torch.fx.experimental.meta_tracer``) for code that
   branches on shapes (``if a.shape[1] != b.shape[1]``): it runs the ops on
   meta tensors while tracing, so shapes are plain ints and such branches
   resolve for the example inputs. Sizes become constants in that graph.

Either way, every node then gets its real output shape from one pass over the
example inputs (for real when they are small, else on the meta device; layers
with a shape rule are sized by formula instead of run), stored as
``node.meta["value"]``: a (meta) tensor, or nested tuples/lists of them. No
``GraphModule`` is generated: the graph's targets are paths in the model itself.
"""
from __future__ import annotations

import copy
import inspect
import linecache
import os
import traceback
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
import torch.fx as fx
from torch import nn
from torch.fx.experimental.meta_tracer import MetaTracer

from .errors import TraceError
from .fast_trace import lean_trace
from .plugins import load_plugins
from .rules import leaf_module_classes
from .shape_pass import record_shapes, to_meta

_TORCH_DIR = os.path.dirname(torch.__file__)


@dataclass
class TracedModel:
    """An FX graph of ``model`` and how it was obtained."""

    model: nn.Module
    graph: fx.Graph  # its call_module / get_attr targets are paths in ``model``
    method: str  # "symbolic" or "concrete"
    notes: list[str] = field(default_factory=list)
    modules: dict[str, nn.Module] = field(default_factory=dict)  # dict(model.named_modules())

    @property
    def graph_module(self) -> fx.GraphModule:
        """The graph as a runnable ``GraphModule`` (built on demand: code generation
        is a good part of tracing time, and the core never needs it)."""
        return fx.GraphModule(self.model, self.graph, type(self.model).__name__)


class _LeanNodes:
    """Tracer mixin: leaf rules, and nodes that record only the innermost module
    whose code made them (``meta["owner"]``) instead of a copy of the whole module
    stack per node, which fx's default ``create_node`` makes."""

    def __init__(self, extra_leaves: tuple[type, ...]):
        super().__init__()
        self.leaf_types = leaf_module_classes() + tuple(extra_leaves)

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, self.leaf_types) or super().is_leaf_module(m, qualname)

    def create_node(self, kind, target, args, kwargs, name=None, type_expr=None) -> fx.Node:
        node = self.graph.create_node(kind, target, args, kwargs, name, type_expr)
        node.meta["owner"] = _innermost_path(self.module_stack)
        return node


def _innermost_path(stack) -> str:
    """Path of the innermost module on fx's module stack ("" when empty). Its keys are
    "path", or "path@N" for a module's N-th call; its values (path, type) pairs in
    recent torch, a bare type in older ones."""
    if not stack:
        return ""
    value = next(reversed(stack.values()))
    return value[0] if isinstance(value, tuple) else next(reversed(stack)).split("@")[0]


class _LeafAwareTracer(_LeanNodes, fx.Tracer):
    pass


class _ConcreteTracer(_LeanNodes, MetaTracer):
    pass


def _user_frame(exc: BaseException) -> str | None:
    """``file:line: code`` of the innermost frame outside torch, if any."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(_TORCH_DIR)]
    frames = [f for f in frames if "sparsenet_design" not in f.filename]
    if not frames:
        return None
    f = frames[-1]
    code = (f.line or linecache.getline(f.filename, f.lineno)).strip()
    return f"{f.filename}:{f.lineno}: {code}"


def _current_module(tracer: fx.Tracer) -> str | None:
    return _innermost_path(getattr(tracer, "module_stack", None)) or None


def _as_tuple(example_inputs) -> tuple:
    if isinstance(example_inputs, tuple):
        return example_inputs
    if isinstance(example_inputs, list):
        return tuple(example_inputs)
    return (example_inputs,)


def _defaults_beyond(model: nn.Module, inputs: tuple) -> dict:
    """Non-tensor keyword defaults of ``forward`` that the example inputs don't set
    (``return_extras=False``): traced as the constants they are, so that code like
    ``if return_extras:`` traces."""
    params = list(inspect.signature(model.forward).parameters.values())[len(inputs):]
    return {
        p.name: p.default
        for p in params
        if p.default is not inspect.Parameter.empty and p.kind is not inspect.Parameter.VAR_KEYWORD
        and not isinstance(p.default, torch.Tensor)
    }


def _symbolic(model: nn.Module, inputs: tuple, leaves: tuple[type, ...], modules: dict[str, nn.Module]) -> fx.Graph:
    concrete_args = _defaults_beyond(model, inputs)
    if not concrete_args:
        try:
            return lean_trace(model, len(inputs), modules, leaf_module_classes() + leaves)
        except Exception:
            pass  # fx traces what the lean tracer leaves to it, and reports its own errors
    tracer = _LeafAwareTracer(leaves)
    try:
        return tracer.trace(model, concrete_args=concrete_args or None)
    except Exception as exc:
        exc.__sdesign_module__ = _current_module(tracer)  # type: ignore[attr-defined]
        raise


def _concrete(model: nn.Module, inputs: tuple, leaves: tuple[type, ...]) -> fx.Graph:
    params = list(inspect.signature(model.forward).parameters.values())
    meta_args, concrete_args = {}, {}
    for param, value in zip(params, inputs):
        if isinstance(value, torch.Tensor):
            meta_args[param.name] = to_meta(value)
        else:
            concrete_args[param.name] = value
    concrete_args.update(_defaults_beyond(model, inputs))
    tracer = _ConcreteTracer(leaves)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the meta tracer warns on every op it can't see through
            return tracer.trace(model, meta_args=meta_args, concrete_args=concrete_args or None)
    except Exception as exc:
        exc.__sdesign_module__ = _current_module(tracer)  # type: ignore[attr-defined]
        raise


def _trace_error(model: nn.Module, first: Exception, second: Exception) -> TraceError:
    where = _user_frame(second) or _user_frame(first)
    module = getattr(second, "__sdesign_module__", None) or getattr(first, "__sdesign_module__", None)
    place = f" in module '{module}'" if module else ""
    line = f" at {where}" if where else ""
    return TraceError(
        f"Could not trace {type(model).__name__} into a graph{place}{line}: "
        f"{type(second).__name__}: {str(second).splitlines()[0] if str(second) else ''} "
        "(symbolic tracing failed first with "
        f"{type(first).__name__}: {str(first).splitlines()[0] if str(first) else ''}). "
        "This usually means Python control flow that depends on tensor *values*, or an op "
        "that cannot run on meta tensors. Ways out: mark the offending module as a leaf "
        "(LEAF_MODULES in the model file, or leaf_modules=[...] in the API, and register a "
        "channel rule for it with sparsenet_design.rules.register_module_rule, otherwise its "
        "channels are pinned), wrap the op as a torch.library custom op with a fake "
        "implementation, or pin that part of the model."
    )


def meta_copy(gm: nn.Module) -> nn.Module:
    """A copy of ``gm`` whose parameters and buffers live on the meta device (cheap)."""
    memo = {}
    for t in list(gm.parameters()) + list(gm.buffers()):
        meta = torch.empty_like(t, device="meta")
        memo[id(t)] = nn.Parameter(meta, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else meta
    return copy.deepcopy(gm, memo)


def trace(
    model: nn.Module,
    example_inputs,
    leaf_modules: Iterable[type[nn.Module]] = (),
    modules: dict[str, nn.Module] | None = None,
) -> TracedModel:
    """Trace ``model`` (called as ``model(*example_inputs)``) into a module-level graph.

    Raises :class:`TraceError` naming the module and source line when neither
    tracer can handle the model.
    """
    load_plugins()
    inputs = _as_tuple(example_inputs)
    modules = dict(model.named_modules()) if modules is None else modules
    leaves = tuple(leaf_modules)
    notes: list[str] = []
    try:
        graph, method = _symbolic(model, inputs, leaves, modules), "symbolic"
    except Exception as first:
        try:
            graph, method = _concrete(model, inputs, leaves), "concrete"
        except Exception as second:
            raise _trace_error(model, first, second) from second
        notes.append(
            "symbolic tracing failed "
            f"({type(first).__name__}: {str(first).splitlines()[0] if str(first) else ''}); "
            "traced with concrete shapes instead, so reshape sizes in the code are treated as constants"
        )
    try:
        record_shapes(graph, model, inputs, modules)
    except Exception as exc:
        if method == "symbolic":
            # e.g. the symbolic graph baked in a branch that the example inputs don't take
            try:
                graph, method = _concrete(model, inputs, leaves), "concrete"
                record_shapes(graph, model, inputs, modules)
            except Exception as second:
                raise _trace_error(model, exc, second) from second
        else:
            raise _trace_error(model, exc, exc) from exc
    return TracedModel(model, graph, method, notes, modules)
