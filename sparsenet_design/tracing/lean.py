"""A lean symbolic tracer: the graph ``torch.fx.Tracer`` makes, for the common case,
at a fraction of its cost.

fx's tracer is general, and pays for it on every call: it walks every parameter
on each parameter access, checks each argument for opaque and symbolic types,
patches some fifty ``math`` functions, and keeps a module stack per node. This
tracer reuses fx's own :class:`~torch.fx.Proxy` (so every op records exactly as
under fx) and fx's patching of ``torch.fx.wrap``-ed functions, and drops the rest.
What it does not handle (keyword-only or variadic ``forward`` arguments, tensor
constants that are not attributes of the model, modules called but not installed,
``math`` functions on traced values, any private fx API that moved) raises an
exception, and the caller falls back to fx. Where both succeed they produce the
same graph (``tests/test_fast_trace.py`` compares them node by node).
"""
from __future__ import annotations

import contextlib
import dis
import inspect
import sys
import threading
from bisect import bisect_left
from collections.abc import Callable

import torch
import torch.fx as fx
from torch import nn
from torch.fx import _symbolic_trace as _fx
from torch.fx.proxy import Attribute, Proxy, TracerBase


class Unsupported(Exception):
    """Something this tracer leaves to ``torch.fx``."""


_ATOMS = frozenset({
    int, float, bool, str, complex, type(None), type(...),
    torch.dtype, torch.device, torch.memory_format, torch.layout,
})


_RECORDING = threading.local()  # .tracer: the LeanTracer recording on this thread, if any


class _UnpackingProxy(Proxy):
    """fx's Proxy, whose ``a, b = proxy`` reads the caller's bytecode once per code
    object instead of once per unpacking (fx disassembles the whole function each time),
    and whose torch functions go straight to the one tracer recording (fx searches
    every argument with pytree for it, most of the cost of a ``torch._assert``)."""

    @classmethod
    def __torch_function__(cls, orig_method, types, args=None, kwargs=None):
        tracer = getattr(_RECORDING, "tracer", None)
        if tracer is None or isinstance(orig_method, (torch._C.ScriptMethod, torch._ops.HigherOrderOperator)):
            return Proxy.__torch_function__.__func__(cls, orig_method, types, args, kwargs)
        args = args if args else ()
        kwargs = kwargs if kwargs else {}
        if torch.overrides.is_tensor_method_or_property(orig_method):
            return tracer.create_proxy("call_method", orig_method.__name__, args, kwargs)
        return tracer.create_proxy(
            "call_function", orig_method, args, kwargs, name=tracer.graph._target_to_str(orig_method.__name__)
        )

    def __iter__(self):
        count = self.tracer.unpack_count(inspect.currentframe().f_back)
        if count is None:
            return self.tracer.iter(self)
        return (self[i] for i in range(count))

    def __getattr__(self, k: str) -> Attribute:
        return _UnpackingAttribute(self, k)


class _UnpackingAttribute(Attribute):
    __torch_function__ = classmethod(_UnpackingProxy.__torch_function__.__func__)
    __iter__ = _UnpackingProxy.__iter__
    __getattr__ = _UnpackingProxy.__getattr__


def _set_fx_tracing(value: bool) -> bool:
    """Set fx's "tracing now" flag (code checks it via ``torch.fx._symbolic_trace.is_fx_tracing``);
    returns the previous value."""
    if hasattr(_fx, "_get_is_fx_tracing"):
        previous = _fx._get_is_fx_tracing()
        _fx._set_is_fx_tracing(value)
    else:  # older torch: a module global
        previous = _fx._is_fx_tracing_flag
        _fx._is_fx_tracing_flag = value
    return previous


def _graph_internals_known() -> bool:
    g = fx.Graph()
    return all(hasattr(g, a) for a in ("_graph_namespace", "_insert", "_find_nodes_lookup_table", "_len")) and all(
        hasattr(g._graph_namespace, a) for a in ("create_name", "associate_name_with_obj")
    )


_LEAN_NODES = _graph_internals_known()


def append_node(graph: fx.Graph, op, target, args, kwargs, name, type_expr) -> fx.Node:
    """``graph.create_node`` without its per-node scan of the arguments for raw
    ``SymInt`` values (a warning about code that this tracer never produces), which
    is a third of the cost of recording a node."""
    if not _LEAN_NODES or graph.owning_module is not None:
        return graph.create_node(op, target, args, kwargs, name, type_expr)
    namespace = graph._graph_namespace
    name = namespace.create_name(name if name is not None else graph._target_to_str(target), None)
    node = fx.Node(graph, name, op, target, args, kwargs or {}, type_expr)
    namespace.associate_name_with_obj(name, node)
    graph._insert(node)
    graph._find_nodes_lookup_table.insert(node)
    graph._len += 1
    return node


def _forward_inputs(forward, n_inputs: int) -> tuple[list[inspect.Parameter], dict]:
    """The parameters the example inputs fill, and the keyword defaults of the others
    (passed as the constants they are: ``attn_mask=None``, ``return_extras=False``)."""
    params = list(inspect.signature(forward).parameters.values())[1:]  # drop self
    given, rest = params[:n_inputs], params[n_inputs:]
    if inspect.unwrap(forward) is not forward or len(given) != n_inputs or any(
        p.kind is not inspect.Parameter.POSITIONAL_OR_KEYWORD for p in given
    ):
        raise Unsupported("forward's arguments are not exactly the example inputs")
    defaults = {}
    for p in rest:
        if p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue
        if p.default is inspect.Parameter.empty or isinstance(p.default, torch.Tensor):
            raise Unsupported(f"forward's argument '{p.name}' has no example input")
        defaults[p.name] = p.default
    return given, defaults


@contextlib.contextmanager
def _methods_of(classes: set[type], **methods):
    """Give each class ``methods`` for the duration, then let it inherit them again.

    fx patches ``nn.Module`` itself, and setting an attribute on a class clears the
    method caches of all its subclasses, which for ``nn.Module`` costs a good part
    of tracing a small model. Modules of other classes are not intercepted: they run
    as plain Python (what they record is still checked, e.g. their tensors must be
    attributes of the model)."""
    for cls in classes:
        for klass in cls.__mro__[: cls.__mro__.index(nn.Module)]:
            if any(name in vars(klass) for name in methods):
                raise Unsupported(f"{cls.__name__} defines its own {' or '.join(methods)}")
    missing = object()
    patched = []
    try:
        for cls in classes:  # nn.Module itself among them (a bare container) has its own, kept below
            for name, fn in methods.items():
                patched.append((cls, name, vars(cls).get(name, missing)))
                setattr(cls, name, fn)
        yield
    finally:
        for cls, name, own in reversed(patched):
            if own is missing:
                delattr(cls, name)
            else:
                setattr(cls, name, own)


class LeanTracer(TracerBase):
    """Trace ``root`` (an ``nn.Module``) into an ``fx.Graph`` whose nodes carry
    ``meta["owner"]``: the path of the module whose code made them."""

    def __init__(self, root: nn.Module, modules: dict[str, nn.Module], is_leaf: Callable[[nn.Module], bool]):
        self.root = root
        self.graph = fx.Graph()
        self._leaf_rule = is_leaf
        self.paths = {id(m): path for path, m in modules.items()}
        self.modules = modules
        self.owners: list[str] = []
        self._leaf_by_module: dict[int, bool] = {}
        self._param_names: dict[int, str] | None = None
        self._param_proxies: dict[str, Proxy] = {}
        self._tensor_names: dict[int, str] | None = None
        self._instructions: dict = {}  # code object -> (offsets, instructions)

    # -- what fx's Tracer decides ---------------------------------------------

    def is_leaf(self, module: nn.Module) -> bool:
        leaf = self._leaf_by_module.get(id(module))
        if leaf is None:
            leaf = self._leaf_by_module[id(module)] = bool(self._leaf_rule(module))
        return leaf

    def _parameter_name(self, p: torch.Tensor) -> str | None:
        if self._param_names is None:
            names: dict[int, str] = {}
            for name, param in self.root.named_parameters():
                names.setdefault(id(param), name)
            self._param_names = names
        return self._param_names.get(id(p))

    def _tensor_name(self, t: torch.Tensor) -> str | None:
        """A buffer's path (first in ``named_buffers``), else a plain tensor attribute's."""
        if self._tensor_names is None:
            names: dict[int, str] = {}
            for path, m in self.modules.items():
                for k, v in m.__dict__.items():
                    if isinstance(v, torch.Tensor):
                        names[id(v)] = f"{path}.{k}" if path else k
            for name, buf in reversed(list(self.root.named_buffers())):
                names[id(buf)] = name
            self._tensor_names = names
        return self._tensor_names.get(id(t))

    # -- recording --------------------------------------------------------------

    def create_node(self, kind, target, args, kwargs, name=None, type_expr=None) -> fx.Node:
        node = append_node(self.graph, kind, target, args, kwargs, name, type_expr)
        node.meta["owner"] = self.owners[-1] if self.owners else ""
        return node

    def create_proxy(self, kind, target, args, kwargs, name=None, type_expr=None, proxy_factory_fn=None):
        node = self.create_node(kind, target, self.create_arg(args), self.create_arg(kwargs), name, type_expr)
        return _UnpackingProxy(node, self)

    def unpack_count(self, frame) -> int | None:
        """How many values the instruction ``frame`` is at unpacks (``a, b = ...``), as fx's ``Proxy.__iter__``."""
        code = frame.f_code
        known = self._instructions.get(code)
        if known is None:
            instructions = list(dis.get_instructions(code))
            known = self._instructions[code] = ([i.offset for i in instructions], instructions)
        offsets, instructions = known
        index = bisect_left(offsets, frame.f_lasti) if sys.version_info >= (3, 11) else frame.f_lasti // 2
        instruction = instructions[index]
        return instruction.argval if instruction.opname == "UNPACK_SEQUENCE" else None

    def create_arg(self, a):
        kind = type(a)
        if kind in _ATOMS:
            return a
        if isinstance(a, Proxy):
            return a.node
        if kind is tuple or kind is list:
            return kind([self.create_arg(v) for v in a])
        if kind is dict and all(type(k) is str for k in a):
            return {k: self.create_arg(v) for k, v in a.items()}
        if isinstance(a, torch.Tensor):
            name = self._parameter_name(a) if isinstance(a, nn.Parameter) else self._tensor_name(a)
            if name is None:
                raise Unsupported("a tensor constant that is not an attribute of the model")
            return self.create_node("get_attr", name, (), {})
        if isinstance(a, nn.Module) or (isinstance(a, tuple) and hasattr(a, "_fields")):
            raise Unsupported(f"a {type(a).__name__} as an argument")
        return super().create_arg(a)

    def _call_module(self, module: nn.Module, *args, **kwargs):
        path = self.paths.get(id(module))
        if path is None:
            raise Unsupported(f"{type(module).__name__} is called but not installed in the model")
        self.owners.append(path)
        try:
            if self.is_leaf(module):
                return self.create_proxy("call_module", path, args, kwargs)
            return _fx._orig_module_call(module, *args, **kwargs)
        finally:
            self.owners.pop()

    def _module_getattr(self, module: nn.Module, attr: str):
        value = _fx._orig_module_getattr(module, attr)
        if isinstance(value, nn.Parameter):
            name = self._parameter_name(value)
        elif isinstance(value, torch.Tensor) and attr in module._buffers:
            # buffers as proxies too (fx's proxy_buffer_attributes): arithmetic on them is
            # recorded, not folded into a constant (a FrozenBatchNorm2d's scale and shift)
            name = self._tensor_name(value)
        else:
            return value
        if name is None:
            return value
        proxy = self._param_proxies.get(name)
        if proxy is None:
            proxy = self._param_proxies[name] = self.create_proxy("get_attr", name, (), {})
        return proxy

    def trace(self, n_inputs: int) -> fx.Graph:
        root = self.root
        if isinstance(root, fx.GraphModule):
            raise Unsupported("a GraphModule root")
        forward = type(root).forward
        params, defaults = _forward_inputs(forward, n_inputs)
        code = forward.__code__
        self.graph._co_fields = {
            "co_name": code.co_name, "co_filename": code.co_filename, "co_firstlineno": code.co_firstlineno,
        }
        previous = _set_fx_tracing(True)
        _RECORDING.tracer = self
        try:
            # plain functions (not bound methods): they become methods of the model's classes
            def module_getattr(module, attr):
                return self._module_getattr(module, attr)

            def module_call(module, *args, **kwargs):
                return self._call_module(module, *args, **kwargs)

            classes = {type(m) for m in self.modules.values()}
            with _fx._new_patcher() as patcher, _methods_of(classes, __call__=module_call, __getattr__=module_getattr):
                _fx._patch_wrapped_functions(patcher)
                annotations = getattr(forward, "__annotations__", {})
                inputs = [
                    self.create_proxy(
                        "placeholder", p.name, () if p.default is inspect.Parameter.empty else (p.default,), {},
                        type_expr=annotations.get(p.name),
                    )
                    for p in params
                ]
                out = forward(root, *inputs, **defaults)
                self.create_node("output", "output", (self.create_arg(out),), {}, type_expr=annotations.get("return"))
        finally:
            _RECORDING.tracer = None
            _set_fx_tracing(previous)
        return self.graph

def lean_trace(
    model: nn.Module, n_inputs: int, modules: dict[str, nn.Module], is_leaf: Callable[[nn.Module], bool]
) -> fx.Graph:
    """The graph ``fx.Tracer`` (with this leaf rule) makes of ``model`` called with
    ``n_inputs`` positional arguments; raises where it leaves the work to fx."""
    return LeanTracer(model, modules, is_leaf).trace(n_inputs)
