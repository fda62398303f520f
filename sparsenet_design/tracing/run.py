"""Trace a model by running it: one real forward pass over the example inputs,
recorded into the same module-level ``fx.Graph`` the symbolic tracers make.

Symbolic tracing cannot follow code that looks at values: a shape check after a
norm layer (``if y.shape[1] != x.shape[1]``), iterating over a tensor or over
``*args``, a list built from a chunked tensor, a branch on a tensor's contents.
Running the model follows all of them, for the example inputs. Two things watch the run:

- a :class:`~torch.overrides.TorchFunctionMode` sees every torch function and
  tensor method, and records those that take a traced tensor (an input, a
  parameter or buffer, or the output of a recorded op);
- forward hooks on every installed module keep track of which module's code is
  running (``node.meta["owner"]``) and turn each call of a leaf module into one
  ``call_module`` node, whose insides are not recorded.

Python operators on tensors reach the mode under their method names (``x + y``
arrives as ``Tensor.add``), so while tracing, the Tensor operator methods are
wrapped to say which operator was written; they record as fx records them
(``operator.add``, reflected ones with their arguments swapped).

Sizes are plain ints in this graph (``x.shape`` is not recorded), and the graph
is the path that the example inputs took through the code.
"""
from __future__ import annotations

import builtins
import contextlib
import inspect
import operator
import sys
import threading
import weakref
from collections.abc import Callable

import torch
import torch.fx as fx
from torch import nn
from torch.overrides import TorchFunctionMode

from .calls import (
    IN_PLACE_OPERATORS, OPERATORS, VALUE_READS, has_tensor, method_name, property_name, tensors_in, user_line,
)
from .lean import append_node
from .shapes import eval_mode, to_meta

_MISSING = object()


class ForwardFailed(Exception):
    """Running the model on the example inputs raised ``cause``.

    ``module_path``/``module_class``: the innermost installed module running when it
    did (``""`` for the model's own forward); ``tracer_fault``: the model runs fine
    without the tracer, so the tracer itself is to blame."""

    def __init__(self, cause: BaseException, module_path: str | None, module_class: str | None, tracer_fault: bool):
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.cause = cause
        self.module_path = module_path
        self.module_class = module_class
        self.tracer_fault = tracer_fault


class RunGraph(fx.Graph):
    """An ``fx.Graph`` recorded by running the model, with what the run saw."""

    #: ``file:line: code`` of each place that read a traced tensor's values (``bool(t)``, ``t.item()``)
    value_reads: list[str]


# -- the recorder -----------------------------------------------------------------------

class _Recorder(TorchFunctionMode):
    def __init__(self, model: nn.Module, modules: dict[str, nn.Module], is_leaf: Callable[[nn.Module], bool]):
        super().__init__()
        self.model = model
        self.graph = RunGraph()
        self.graph.value_reads = []
        self.paths = {id(m): path for path, m in reversed(list(modules.items()))}  # first path wins
        self.leaves = {
            id(m) for path, m in modules.items()
            if path and (is_leaf(m) or isinstance(m, torch.jit.ScriptModule))  # scripted code is invisible here
        }
        self.attr_names: dict[int, str] = {}
        for name, buffer in reversed(list(model.named_buffers())):
            self.attr_names[id(buffer)] = name
        for name, param in reversed(list(model.named_parameters())):
            self.attr_names[id(param)] = name
        self.attr_nodes: dict[str, fx.Node] = {}
        self.nodes: dict[int, tuple[weakref.ref, fx.Node]] = {}  # id(tensor) -> (the tensor, its node)
        # module calls in progress: [module, path, leaf?, the call's (args, kwargs) as node arguments,
        # the exception being handled when the call began]
        self.stack: list[list] = []
        self.opaque = 0  # leaf calls in progress: their ops are not recorded
        self.pending: tuple[Callable, tuple] | None = None  # set by a Tensor operator for its torch function
        self.thread = threading.get_ident()
        self.saved: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # parameters an in-place op wrote to

    # -- tensors and nodes ---------------------------------------------------------------

    def node(self, op: str, target, args=(), kwargs=None, name: str | None = None) -> fx.Node:
        if name is None and op in ("call_function", "call_method") and not isinstance(target, str):
            name = getattr(target, "__name__", None) or "op"
        node = append_node(self.graph, op, target, args, kwargs or {}, name, None)
        node.meta["owner"] = self.stack[-1][1] if self.stack else ""
        return node

    def traced(self, t: torch.Tensor) -> bool:
        entry = self.nodes.get(id(t))
        return (entry is not None and entry[0]() is t) or id(t) in self.attr_names

    def node_of(self, t: torch.Tensor) -> fx.Node | None:
        entry = self.nodes.get(id(t))
        if entry is not None and entry[0]() is t:
            return entry[1]
        name = self.attr_names.get(id(t))
        if name is None:
            return None
        node = self.attr_nodes.get(name)
        if node is None:
            node = self.attr_nodes[name] = self.node("get_attr", name)
            node.meta["value"] = self.meta(t)
        return node

    def meta(self, value):
        """``value``'s meta copy, made without recording (module hooks run while the mode is on)."""
        self.opaque += 1
        try:
            return to_meta(value)
        finally:
            self.opaque -= 1

    def arg(self, value):
        """``value`` as a node argument: traced tensors become their nodes."""
        if isinstance(value, torch.Tensor):
            node = self.node_of(value)
            return value if node is None else node
        kind = type(value)
        if kind is tuple or kind is list:
            return kind(self.arg(v) for v in value)
        if isinstance(value, torch.Size):
            return tuple(value)
        if isinstance(value, tuple) and hasattr(value, "_fields"):
            return kind(*(self.arg(v) for v in value))
        if isinstance(value, (tuple, list)):
            return (tuple if isinstance(value, tuple) else list)(self.arg(v) for v in value)
        if isinstance(value, dict):
            return {k: self.arg(v) for k, v in value.items()}
        return value

    def bind(self, value, node: fx.Node) -> None:
        """Make ``value`` (a tensor, or nested tuples/lists/dicts of them) the output of
        ``node``, and record its shapes there (``node.meta["value"]``, as the shape pass
        would)."""
        node.meta["value"] = self.meta(value)
        if isinstance(value, torch.Tensor):
            if id(value) not in self.attr_names:  # a parameter stays its get_attr
                self.nodes[id(value)] = (weakref.ref(value), node)
            return
        if isinstance(value, (tuple, list)):
            items = enumerate(value)
        elif isinstance(value, dict):
            items = value.items()
        else:
            return
        for key, item in items:
            if has_tensor(item):
                self.bind(item, self.node("call_function", operator.getitem, (node, key)))

    def output_arg(self, value):
        """The model's output as the ``output`` node's argument: like :meth:`arg`, and
        the tensors of other containers (model-output dataclasses) as a dict."""
        if isinstance(value, (torch.Tensor, torch.Size)) or (isinstance(value, tuple) and hasattr(value, "_fields")):
            return self.arg(value)
        if isinstance(value, (tuple, list)):
            return (tuple if isinstance(value, tuple) else list)(map(self.output_arg, value))
        if isinstance(value, dict):  # model-output classes that are dicts (transformers) become plain ones
            return {k: self.output_arg(v) for k, v in value.items()}
        fields = getattr(value, "__dict__", None)
        if isinstance(fields, dict) and any(has_tensor(v) for v in fields.values()):
            return {k: self.output_arg(v) for k, v in fields.items() if has_tensor(v)}
        return value

    # -- inputs ---------------------------------------------------------------------------

    def inputs(self, values: tuple) -> None:
        for name, value in zip(_input_names(self.model, len(values)), values):
            node = self.node("placeholder", name, name=name)
            self.bind(value, node)

    # -- torch functions ------------------------------------------------------------------

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        pending, self.pending = self.pending, None
        self.protect(func, pending, args, kwargs)
        out = func(*args, **kwargs)
        if not self.opaque:
            self.record(func, pending, args, kwargs, out)
        return out

    def protect(self, func, pending, args, kwargs) -> None:
        """Keep a copy of a parameter that an in-place op is about to write (restored after the run)."""
        name = getattr(func, "__name__", "") or ""  # add_, relu_, nn.init.uniform_
        in_place = (pending is not None and pending[0] in IN_PLACE_OPERATORS) or (
            name.endswith("_") and not name.endswith("__")) or "out" in kwargs or kwargs.get("inplace") is True
        if not in_place:
            return
        for t in [*args[:1], kwargs.get("out")]:
            if isinstance(t, nn.Parameter) and id(t) not in self.saved:
                self.saved[id(t)] = (t, t.detach().clone())

    def record(self, func, pending, args, kwargs, out) -> None:
        traced = any(self.traced(t) for t in tensors_in((args, kwargs)))
        if not traced:
            return
        if pending is not None:
            target, op_args = pending
            if target is operator.setitem or has_tensor(out):
                self.bind(out, self.node("call_function", target, self.arg(op_args)))
            return
        prop = property_name(func)
        if prop is not None:
            return self.record_property(prop, args[0], out)
        name = method_name(func)
        if name in VALUE_READS:
            self.note_value_read()
            return
        if name in OPERATORS:  # an operator a Tensor subclass defines itself
            target, reflected = OPERATORS[name]
            if target is operator.setitem or has_tensor(out):
                op_args = (args[1], args[0], *args[2:]) if reflected else args
                self.bind(out, self.node("call_function", target, self.arg(op_args)))
            return
        if not has_tensor(out):
            return
        if name is not None:
            node = self.node("call_method", name, self.arg(args), self.arg(kwargs))
        else:
            node = self.node("call_function", func, self.arg(args), self.arg(kwargs))
        self.bind(out, node)

    def record_property(self, name: str, x: torch.Tensor, out) -> None:
        """Tensor properties: sizes and dtypes are plain values; ``.T``-like views
        become the permutes the channel rules know, ``.data`` is the tensor itself."""
        if not isinstance(out, torch.Tensor):
            return
        source = self.node_of(x)
        if name == "data" or (name == "real" and not x.is_complex()):
            self.bind(out, source)
        elif name in ("mT", "mH") and not x.is_complex():
            self.bind(out, self.node("call_method", "transpose", (source, -2, -1)))
        elif name in ("T", "H") and not x.is_complex():
            self.bind(out, self.node("call_method", "permute", (source, tuple(reversed(range(x.dim()))))))
        else:
            self.bind(out, self.node("call_function", builtins.getattr, (source, name)))

    def note_value_read(self) -> None:
        frames = []
        frame = sys._getframe(2)
        while frame is not None and len(frames) < 64:
            frames.append(_Frame(frame))
            frame = frame.f_back
        where = user_line(reversed(frames))
        if where and where not in self.graph.value_reads:
            self.graph.value_reads.append(where)

    # -- module calls ------------------------------------------------------------------------

    def pre_hook(self, module: nn.Module, args, kwargs):
        leaf = id(module) in self.leaves
        call = (self.arg(args), self.arg(kwargs)) if leaf and not self.opaque else None
        self.stack.append([module, self.paths[id(module)], leaf, call, sys.exc_info()[1]])
        self.opaque += leaf

    def post_hook(self, module: nn.Module, args, kwargs, output):
        """After each call of an installed module, also when it raised (``always_call``):
        then the exception is tagged with the innermost module it came out of."""
        while self.stack:
            entry = self.stack.pop()
            self.opaque -= entry[2]
            if entry[0] is module:
                break
        else:
            return
        _, path, leaf, call, handled_before = entry
        raised = sys.exc_info()[1]
        if raised is not None and raised is not handled_before:  # torch runs this hook while the error propagates
            if not hasattr(raised, "__sdesign_module__"):
                raised.__sdesign_module__ = (path, type(module).__name__)  # type: ignore[attr-defined]
            return
        if leaf and call is not None:
            self.stack.append(entry)  # the call_module node's owner is the leaf itself, as under fx
            try:
                self.bind(output, self.node("call_module", path, call[0], call[1]))
            finally:
                self.stack.pop()

    @contextlib.contextmanager
    def hooks(self, modules: dict[str, nn.Module]):
        handles = []
        try:
            for m in {id(m): m for m in modules.values()}.values():
                handles.append(m.register_forward_pre_hook(self.pre_hook, with_kwargs=True, prepend=True))
                handles.append(m.register_forward_hook(self.post_hook, with_kwargs=True, always_call=True))
            yield
        finally:
            for handle in handles:
                handle.remove()

    @contextlib.contextmanager
    def operators(self):
        """Wrap the Tensor operator methods so that the torch function each calls is
        recorded as the operator written (only on this thread, only while active)."""
        originals = {name: vars(torch.Tensor).get(name, _MISSING) for name in OPERATORS}
        try:
            for name, (target, reflected) in OPERATORS.items():
                setattr(torch.Tensor, name, self._operator(getattr(torch.Tensor, name), target, reflected))
            yield
        finally:
            for name, original in originals.items():
                if original is _MISSING:
                    delattr(torch.Tensor, name)
                else:
                    setattr(torch.Tensor, name, original)

    @contextlib.contextmanager
    def wrapped_functions(self):
        """Functions registered with ``torch.fx.wrap`` record as one ``call_function``
        node, as under fx (rules may be registered for them), and run as they are."""
        table = getattr(fx._symbolic_trace, "_wrapped_fns_to_patch", {})
        patched = []
        try:
            for (_, name), namespace in list(table.items()):
                function = namespace.get(name)
                if callable(function):
                    namespace[name] = self._opaque_call(function)
                    patched.append((namespace, name, function))
            yield
        finally:
            for namespace, name, function in reversed(patched):
                namespace[name] = function

    def _opaque_call(self, function):
        recorder = self

        def wrapper(*args, **kwargs):
            if threading.get_ident() != recorder.thread or recorder.opaque or not any(
                recorder.traced(t) for t in tensors_in((args, kwargs))
            ):
                return function(*args, **kwargs)
            call = (recorder.arg(args), recorder.arg(kwargs))
            recorder.opaque += 1
            try:
                out = function(*args, **kwargs)
            finally:
                recorder.opaque -= 1
            if has_tensor(out):
                recorder.bind(out, recorder.node("call_function", function, *call))
            return out

        return wrapper

    def _operator(self, method, target, reflected: bool):
        recorder = self

        def wrapper(self, *args):
            if threading.get_ident() != recorder.thread:
                return method(self, *args)
            recorder.pending = (target, (args[0], self) if reflected else (self, *args))
            try:
                return method(self, *args)
            finally:
                recorder.pending = None

        wrapper.__name__ = method.__name__
        return wrapper



class _Frame:
    """A live frame as the ``FrameSummary`` fields :func:`user_line` reads."""

    def __init__(self, frame):
        self.filename = frame.f_code.co_filename
        self.lineno = frame.f_lineno
        self.line = None


def _input_names(model: nn.Module, n: int) -> list[str]:
    """Placeholder names: forward's positional parameters, ``args_0``... for ``*args``."""
    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        params = []
    names: list[str] = []
    for p in params:
        if len(names) == n:
            break
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            names.append(p.name)
        elif p.kind is p.VAR_POSITIONAL:
            names += [f"{p.name}_{i}" for i in range(n - len(names))]
    names += [f"input_{i}" for i in range(len(names), n)]
    return names


@contextlib.contextmanager
def _model_kept(modules: dict[str, nn.Module], recorder: _Recorder):
    """Leave every parameter and buffer as it was: the same tensor objects in the same
    slots, with the same values. Buffers (running statistics, counters) are copied
    before the run, parameters when an in-place op is about to write to them."""
    slots = [(m, table, name, t) for m in modules.values() for table in (m._parameters, m._buffers)
             for name, t in table.items()]
    buffers = {id(t): (t, t._version, t.clone()) for m in modules.values() for t in m._buffers.values()
               if t is not None and not t.is_inference()}
    try:
        yield
    finally:
        for _, table, name, t in slots:
            table[name] = t
        with torch.no_grad():
            for buffer, version, copy in buffers.values():
                if buffer._version != version:
                    buffer.copy_(copy)
            for param, copy in recorder.saved.values():
                param.copy_(copy)


def run_trace(model: nn.Module, inputs: tuple, modules: dict[str, nn.Module],
              is_leaf: Callable[[nn.Module], bool]) -> RunGraph:
    """Record one forward pass of ``model(*inputs)`` (no grad, eval mode) as a
    module-level graph; ``modules`` is ``dict(model.named_modules())``.

    Installed modules for which ``is_leaf`` holds become ``call_module`` nodes.
    The model is left as it was, and so is the random number generator. Raises :class:`ForwardFailed` when the model
    raises on ``inputs``."""
    recorder = _Recorder(model, modules, is_leaf)
    cuda = sorted({t.device.index or 0 for t in tensors_in(inputs) if t.is_cuda})
    # random ops in forward (noise, sampling) draw as they would have: the run leaves the RNG as it found it
    with torch.random.fork_rng(devices=cuda), torch.no_grad(), eval_mode(model, modules), \
            _model_kept(modules, recorder):
        try:
            with recorder.hooks(modules), recorder.operators(), recorder.wrapped_functions(), recorder:
                recorder.inputs(inputs)
                out = model(*inputs)
        except Exception as exc:
            path, cls = getattr(exc, "__sdesign_module__", (None, None))
            raise ForwardFailed(exc, path, cls, tracer_fault=_runs_untraced(model, inputs)) from exc
    result = recorder.output_arg(out)
    output = recorder.node("output", "output", (result,))
    output.meta["value"] = to_meta(fx.node.map_arg(result, lambda n: n.meta.get("value")))
    return recorder.graph


def _runs_untraced(model: nn.Module, inputs: tuple) -> bool:
    """Whether the model runs on ``inputs`` without the tracer (called after a failure)."""
    try:
        model(*inputs)
    except Exception:
        return False
    return True
