"""Turn a model plus example inputs into a module-level FX graph with shapes.

Three tracers, tried in order (``TracedModel.method`` says which one made the graph):

1. ``"lean"``: the lean symbolic tracer of :mod:`.fast_trace`, which records fx's
   graph for the common case at about half fx's cost;
2. ``"fx"``: ``torch.fx`` symbolic tracing, for what the lean tracer leaves. Both
   keep sizes symbolic, so the graph shows which reshape sizes come from tensor
   shapes and which are constants written into the code;
3. ``"run"``: :mod:`.run_trace` records one real forward pass of the example
   inputs, for code that symbolic tracing cannot follow (branches on shapes or
   values, loops over lists of tensors, ``forward(*args)``). Sizes are plain ints
   in that graph, and it holds for inputs that take the same path through the code
   as the example inputs.

Every node then gets its real output shape from one pass over the example
inputs (for real when they are small, else on the meta device; layers with a
shape rule are sized by formula instead of run), stored as
``node.meta["value"]``: a (meta) tensor, or nested tuples/lists of them. No
``GraphModule`` is generated: the graph's targets are paths in the model itself.
See ``docs/tracing.md``.
"""
from __future__ import annotations

import copy
import inspect
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
import torch.fx as fx
from torch.fx.proxy import TraceError as FxTraceError
from torch import nn

from ..errors import TraceError
from .lean import lean_trace
from ..plugins import load_plugins
from ..kinds.registry import is_leaf_module
from .calls import user_line
from .run import ForwardFailed, run_trace
from .shapes import record_shapes

#: What each value of ``TracedModel.method`` (and of a spec's ``settings["tracer"]``) means;
#: "symbolic" and "concrete" are the names older versions wrote.
TRACERS = {
    "lean": "symbolic tracing (the lean tracer)",
    "fx": "symbolic tracing (torch.fx)",
    "run": "recorded by running the model on the example inputs",
    "symbolic": "symbolic tracing",
    "concrete": "traced with concrete shapes (meta tracer)",
}


def describe_tracer(method: str | None) -> str:
    """One line on how a graph was made, for reports."""
    if not method:
        return "unknown"
    return f"{method} ({TRACERS[method]})" if method in TRACERS else method


RUN_GRAPH_NOTE = (
    "the graph was recorded by running the model on the example inputs, so it holds for inputs that take "
    "the same path through the code as those; sizes in the code are plain numbers there, so channel "
    "sizes written into reshapes are treated as constants"
)


@dataclass
class TracedModel:
    """An FX graph of ``model`` and how it was obtained."""

    model: nn.Module
    graph: fx.Graph  # its call_module / get_attr targets are paths in ``model``
    method: str  # "lean", "fx" or "run" (see TRACERS)
    notes: list[str] = field(default_factory=list)
    modules: dict[str, nn.Module] = field(default_factory=dict)  # dict(model.named_modules())

    @property
    def constant_sizes(self) -> bool:
        """Whether sizes in the graph are plain numbers (not read off tensor shapes),
        so that no size in it can be told to follow a channel width."""
        return self.method in ("run", "concrete")

    @property
    def graph_module(self) -> fx.GraphModule:
        """The graph as a runnable ``GraphModule`` (built on demand: code generation
        is a good part of tracing time, and the core never needs it)."""
        return fx.GraphModule(self.model, self.graph, type(self.model).__name__)


def _is_leaf(module: nn.Module, extra_leaves: tuple[type, ...] = ()) -> bool:
    """Whether every tracer records calls of ``module`` as one ``call_module`` node
    instead of tracing into it: ``extra_leaves``, what its layer kind says (a
    subclass with its own ``forward`` has none), else torch.nn's own layers (fx's
    rule; containers are traced into)."""
    if extra_leaves and isinstance(module, extra_leaves):
        return True
    by_kind = is_leaf_module(module)
    if by_kind is not None:
        return by_kind
    name = type(module).__module__
    return (name.startswith("torch.nn") or name.startswith("torch.ao.nn")) and not isinstance(
        module, (nn.Sequential, nn.ModuleList, nn.ModuleDict)
    )


class _LeafAwareTracer(fx.Tracer):
    """fx's tracer with :func:`_is_leaf`, whose nodes record only the innermost module
    whose code made them (``meta["owner"]``) instead of a copy of the whole module
    stack per node, which fx's default ``create_node`` makes."""

    def __init__(self, extra_leaves: tuple[type, ...]):
        super().__init__()
        self.extra_leaves = tuple(extra_leaves)
        self.proxy_buffer_attributes = True  # as the lean tracer: buffer arithmetic is recorded

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return _is_leaf(m, self.extra_leaves)

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


def _user_frame(exc: BaseException) -> str | None:
    """``file:line: code`` of the innermost frame of ``exc``'s traceback outside torch and this package."""
    return user_line(traceback.extract_tb(exc.__traceback__))


def _first_line(exc: BaseException, limit: int = 240) -> str:
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    line = text.splitlines()[0]
    return f"{type(exc).__name__}: {line if len(line) <= limit else line[:limit].rstrip() + '…'}"


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


def _symbolic(model: nn.Module, inputs: tuple, leaves: tuple[type, ...],
              modules: dict[str, nn.Module]) -> tuple[fx.Graph, str]:
    """The graph of the lean tracer, else of fx, and which one made it. Code that
    symbolic tracing cannot follow (fx's own ``TraceError`` from its proxies: a branch
    or a loop on a traced value) fails the same way under both, so fx is not tried."""
    try:
        return lean_trace(model, len(inputs), modules, lambda m: _is_leaf(m, leaves)), "lean"
    except FxTraceError:
        raise
    except Exception:
        pass  # what the lean tracer leaves to fx (Unsupported), or fx handles better (math on sizes)
    concrete_args = _defaults_beyond(model, inputs)
    return _LeafAwareTracer(leaves).trace(model, concrete_args=concrete_args or None), "fx"


def _run_failed(model: nn.Module, failure: ForwardFailed) -> TraceError:
    cause = failure.cause
    if failure.module_path:
        place = f" in module '{failure.module_path}' ({failure.module_class})"
    elif failure.module_class:
        place = f" in its own forward ({failure.module_class})"
    else:
        place = ""
    where = _user_frame(cause)
    line = f" at {where}" if where else ""
    if failure.tracer_fault:
        return TraceError(
            f"Could not trace {type(model).__name__}: it runs on the example inputs, but not while the "
            f"run tracer records it: {_first_line(cause)}{place}{line}. This is a bug in sparsenet-design's "
            "run tracer; please report it with the model. Meanwhile, mark the module as a leaf "
            "(LEAF_MODULES in the model file, or leaf_modules=[...] in the API) so that its insides are "
            "not recorded, or pin that part of the model."
        )
    return TraceError(
        f"Could not trace {type(model).__name__}: running it on the example inputs raised "
        f"{_first_line(cause)}{place}{line}. Tracing runs the model once on the example inputs, so they must be "
        "inputs the model accepts (the right number of positional arguments, shapes, dtypes and device): fix "
        "example_inputs() in the model file (or example_inputs=... in the API) and check it with "
        "model(*example_inputs)."
    )


def _replay_failed(model: nn.Module, exc: Exception) -> TraceError:
    node = getattr(exc, "__sdesign_node__", None)
    what = ""
    if node is not None:
        target = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", node.target)
        owner = node.meta.get("owner")
        what = f" at {node.op} '{target}'" + (f" (in module '{owner}')" if owner else "")
    return TraceError(
        f"Could not trace {type(model).__name__}: the graph recorded by running it on the example inputs "
        f"does not replay{what}: {_first_line(exc)}. This is a bug in sparsenet-design's run tracer; please "
        "report it with the model. Meanwhile, mark that module as a leaf (LEAF_MODULES in the model file, "
        "or leaf_modules=[...] in the API) or pin that part of the model."
    )


def meta_copy(gm: nn.Module) -> nn.Module:
    """A copy of ``gm`` whose parameters and buffers live on the meta device (cheap)."""
    memo = {}
    for t in list(gm.parameters()) + list(gm.buffers()):
        meta = torch.empty_like(t, device="meta")
        memo[id(t)] = nn.Parameter(meta, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else meta
    return copy.deepcopy(gm, memo)


def _cause_text(exc: Exception) -> str:
    where = _user_frame(exc)
    return _first_line(exc) + (f" at {where}" if where else "")


def _run_notes(graph, fallback: str) -> list[str]:
    notes = [f"{fallback}; {RUN_GRAPH_NOTE}"]
    reads = getattr(graph, "value_reads", [])
    if reads:
        notes.append(
            "the forward reads tensor values into Python at " + "; ".join(reads[:3])
            + (f" (and {len(reads) - 3} more places)" if len(reads) > 3 else "")
            + ": inputs whose values take another branch there may need another graph"
        )
    return notes


def trace(
    model: nn.Module,
    example_inputs,
    leaf_modules: Iterable[type[nn.Module]] = (),
    modules: dict[str, nn.Module] | None = None,
) -> TracedModel:
    """Trace ``model`` (called as ``model(*example_inputs)``) into a module-level graph.

    Raises :class:`TraceError` naming the module and source line when the model
    does not run on the example inputs.
    """
    load_plugins()
    inputs = _as_tuple(example_inputs)
    modules = dict(model.named_modules()) if modules is None else modules
    leaves = tuple(leaf_modules)
    try:
        graph, method = _symbolic(model, inputs, leaves, modules)
    except Exception as exc:  # code that symbolic tracing cannot follow
        fallback = f"symbolic tracing failed ({_cause_text(exc)})"
    else:
        try:
            record_shapes(graph, model, inputs, modules)
            return TracedModel(model, graph, method, [], modules)
        except Exception as exc:  # e.g. the graph baked in a branch that the example inputs don't take
            fallback = f"the symbolic graph does not run on the example inputs ({_cause_text(exc)})"
    try:
        graph = run_trace(model, inputs, modules, lambda m: _is_leaf(m, leaves))
    except ForwardFailed as failure:
        raise _run_failed(model, failure) from failure.cause
    if not all("value" in node.meta for node in graph.nodes):  # the run recorded every shape as it went
        try:
            record_shapes(graph, model, inputs, modules)
        except Exception as exc:
            raise _replay_failed(model, exc) from exc
    return TracedModel(model, graph, "run", _run_notes(graph, fallback), modules)
