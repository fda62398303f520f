"""Turn a model plus example inputs into a module-level FX graph with shapes.

Two tracers, tried in order:

1. ``torch.fx`` symbolic tracing: fast, keeps sizes symbolic, so the graph
   shows which reshape sizes come from tensor shapes and which are constants
   written into the code.
2. A concrete-shape tracer (``torch.fx.experimental.meta_tracer``) for code that
   branches on shapes (``if a.shape[1] != b.shape[1]``): it runs the ops on
   meta tensors while tracing, so shapes are plain ints and such branches
   resolve for the example inputs. Sizes become constants in that graph.

Either way, every node then gets its real output shape from one pass over the
example inputs on the meta device (no real compute), stored as
``node.meta["value"]``: a tensor, or nested tuples/lists of them.
"""
from __future__ import annotations

import contextlib
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
from .plugins import load_plugins
from .rules import leaf_module_classes

_TORCH_DIR = os.path.dirname(torch.__file__)


@dataclass
class TracedModel:
    """An FX graph of ``model`` and how it was obtained."""

    model: nn.Module
    graph_module: fx.GraphModule
    method: str  # "symbolic" or "concrete"
    notes: list[str] = field(default_factory=list)

    @property
    def graph(self) -> fx.Graph:
        return self.graph_module.graph


def _is_leaf(module: nn.Module, extra_leaves: tuple[type, ...]) -> bool:
    return isinstance(module, leaf_module_classes() + extra_leaves)


class _LeafAwareTracer(fx.Tracer):
    def __init__(self, extra_leaves: tuple[type, ...]):
        super().__init__()
        self.extra_leaves = extra_leaves

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return _is_leaf(m, self.extra_leaves) or super().is_leaf_module(m, qualname)


class _ConcreteTracer(MetaTracer):
    def __init__(self, extra_leaves: tuple[type, ...]):
        super().__init__()
        self.extra_leaves = extra_leaves

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return _is_leaf(m, self.extra_leaves) or super().is_leaf_module(m, qualname)


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
    stack = getattr(tracer, "module_stack", None)
    if stack:
        path = next(reversed(stack))
        return path or None
    return None


def _as_tuple(example_inputs) -> tuple:
    if isinstance(example_inputs, tuple):
        return example_inputs
    if isinstance(example_inputs, list):
        return tuple(example_inputs)
    return (example_inputs,)


def to_meta(value):
    if isinstance(value, torch.Tensor):
        return torch.empty_like(value, device="meta")
    if isinstance(value, (tuple, list)):
        return type(value)(to_meta(v) for v in value)
    if isinstance(value, dict):
        return {k: to_meta(v) for k, v in value.items()}
    return value


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


def _symbolic(model: nn.Module, inputs: tuple, leaves: tuple[type, ...]) -> fx.GraphModule:
    tracer = _LeafAwareTracer(leaves)
    try:
        graph = tracer.trace(model, concrete_args=_defaults_beyond(model, inputs) or None)
    except Exception as exc:
        exc.__sdesign_module__ = _current_module(tracer)  # type: ignore[attr-defined]
        raise
    return fx.GraphModule(tracer.root, graph, type(model).__name__)


def _concrete(model: nn.Module, inputs: tuple, leaves: tuple[type, ...]) -> fx.GraphModule:
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
            graph = tracer.trace(model, meta_args=meta_args, concrete_args=concrete_args or None)
    except Exception as exc:
        exc.__sdesign_module__ = _current_module(tracer)  # type: ignore[attr-defined]
        raise
    return fx.GraphModule(tracer.root, graph, type(model).__name__)


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


class _MetaShapes(fx.Interpreter):
    """Run the graph on meta tensors, recording each node's output in ``meta['value']``."""

    def run_node(self, n: fx.Node):
        result = super().run_node(n)
        n.meta["value"] = result
        return result


# Below these sizes a real forward pass is cheaper than the same pass on meta
# tensors (whose shape functions run in Python): 1×3×224×224 is 150k inputs.
REAL_PASS_MAX_NUMEL = 300_000
REAL_PASS_MAX_PARAMS = 50_000_000


def cheap_to_run(model: nn.Module, inputs) -> bool:
    tensors = [t for t in _flat(inputs) if isinstance(t, torch.Tensor)]
    if sum(t.numel() for t in tensors) > REAL_PASS_MAX_NUMEL:
        return False
    return sum(p.numel() for p in model.parameters()) <= REAL_PASS_MAX_PARAMS


def _flat(value):
    if isinstance(value, (tuple, list)):
        return [x for v in value for x in _flat(v)]
    if isinstance(value, dict):
        return [x for v in value.values() for x in _flat(v)]
    return [value]


def _record_shapes(gm: fx.GraphModule, model: nn.Module, inputs: tuple) -> None:
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    # placeholders that the example inputs don't cover keep their defaults
    defaults = [node.args[0] if node.args else None for node in placeholders[len(inputs):]]

    def on_meta_device():
        with torch.no_grad(), on_meta(gm), eval_mode(gm):
            _MetaShapes(gm).run(*to_meta(inputs), *defaults)

    def for_real():
        # keep only meta shadows of the values
        with torch.no_grad(), eval_mode(gm):
            _MetaShapes(gm).run(*inputs, *defaults)
        for node in gm.graph.nodes:
            node.meta["value"] = to_meta(node.meta.get("value"))

    first, second = (for_real, on_meta_device) if cheap_to_run(gm, inputs) else (on_meta_device, for_real)
    try:
        first()
    except Exception:
        # e.g. a leaf module that branches on values cannot run on meta tensors
        second()


@contextlib.contextmanager
def eval_mode(module: nn.Module):
    """Run in eval mode (BatchNorm on a batch of one 1×1 map, dropout) and restore
    each submodule's own mode afterwards."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, training in modes:
            m.training = training


@contextlib.contextmanager
def on_meta(module: nn.Module):
    """Temporarily swap every parameter and buffer of ``module`` for a meta tensor of
    the same shape, so that running it computes shapes only (no copy of the model)."""
    saved = []
    seen: dict[int, torch.Tensor] = {}
    for m in module.modules():
        for table in (m._parameters, m._buffers):
            for name, t in table.items():
                if t is None:
                    continue
                meta = seen.get(id(t))
                if meta is None:
                    meta = torch.empty_like(t, device="meta")
                    if isinstance(t, nn.Parameter):
                        meta = nn.Parameter(meta, requires_grad=t.requires_grad)
                    seen[id(t)] = meta
                saved.append((table, name, t))
                table[name] = meta
    try:
        yield module
    finally:
        for table, name, t in reversed(saved):
            table[name] = t


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
) -> TracedModel:
    """Trace ``model`` (called as ``model(*example_inputs)``) into a module-level graph.

    Raises :class:`TraceError` naming the module and source line when neither
    tracer can handle the model.
    """
    load_plugins()
    inputs = _as_tuple(example_inputs)
    leaves = tuple(leaf_modules)
    notes: list[str] = []
    try:
        gm, method = _symbolic(model, inputs, leaves), "symbolic"
    except Exception as first:
        try:
            gm, method = _concrete(model, inputs, leaves), "concrete"
        except Exception as second:
            raise _trace_error(model, first, second) from second
        notes.append(
            "symbolic tracing failed "
            f"({type(first).__name__}: {str(first).splitlines()[0] if str(first) else ''}); "
            "traced with concrete shapes instead, so reshape sizes in the code are treated as constants"
        )
    try:
        _record_shapes(gm, model, inputs)
    except Exception as exc:
        if method == "symbolic":
            # e.g. the symbolic graph baked in a branch that the example inputs don't take
            try:
                gm, method = _concrete(model, inputs, leaves), "concrete"
                _record_shapes(gm, model, inputs)
            except Exception as second:
                raise _trace_error(model, exc, second) from second
        else:
            raise _trace_error(model, exc, exc) from exc
    return TracedModel(model, gm, method, notes)
