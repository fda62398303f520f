"""The shape pass: every node of a traced graph gets its output shape.

One run over the example inputs records ``node.meta["value"]``: a meta tensor
(or nested tuples/lists/dicts of them) with the node's output shape. Small
inputs run for real, larger ones on the meta device; either way the layers
with a shape rule (:mod:`.shape_rules`: convolutions, linear layers, norms,
activations) are sized by formula instead of run.
"""
from __future__ import annotations

import contextlib
import operator

import torch
import torch.fx as fx
from torch import nn

from .shape_formulas import shape_rule, stand_in_for_call

# Below this size a real pass is cheaper than the same pass on meta tensors
# (whose shape functions run in Python, up to 1 ms per op): 1×3×224×224 is 150k inputs.
REAL_PASS_MAX_NUMEL = 300_000


class ShapePass:
    """Run ``graph`` (whose targets are paths in ``model``) on some inputs,
    recording each node's output as a meta tensor in ``node.meta["value"]``.

    A plain loop over the nodes rather than ``fx.Interpreter``, whose per-node
    bookkeeping costs more than the ops themselves here.
    """

    def __init__(self, model: nn.Module, graph: fx.Graph, modules: dict[str, nn.Module] | None = None):
        self.model = model
        self.graph = graph
        self.modules = dict(model.named_modules()) if modules is None else modules

    def run(self, *inputs) -> None:
        env: dict[fx.Node, object] = {}
        pending = list(inputs)
        load = env.__getitem__
        for node in self.graph.nodes:
            op = node.op
            if op == "placeholder":
                if str(node.target).startswith("*"):
                    value, pending = tuple(pending), []
                elif pending:
                    value = pending.pop(0)
                elif node.args:
                    value = node.args[0]  # the parameter's default
                else:
                    raise TypeError(f"no example input for the model's argument '{node.target}'")
            elif op == "get_attr":
                value = operator.attrgetter(node.target)(self.model)
            elif op == "output":
                node.meta["value"] = to_meta(fx.node.map_arg(node.args[0], load))
                return
            else:
                args = fx.node.map_arg(node.args, load)
                kwargs = fx.node.map_arg(node.kwargs, load)
                try:
                    if op == "call_module":
                        value = self._call_module(self.modules[node.target], args, kwargs)
                    elif op == "call_function":
                        value = node.target(*args, **kwargs)
                    else:  # call_method
                        value = getattr(args[0], node.target)(*args[1:], **kwargs)
                except Exception as exc:
                    exc.__sdesign_node__ = node  # type: ignore[attr-defined]  (for error messages)
                    raise
            env[node] = value
            node.meta["value"] = to_meta(value)

    @staticmethod
    def _call_module(module: nn.Module, args, kwargs):
        stand_in = stand_in_for_call(module, args, kwargs)
        return module(*args, **kwargs) if stand_in is None else stand_in


def cheap_to_run(model: nn.Module, inputs, modules: dict[str, nn.Module] | None = None) -> bool:
    """Whether a real pass over ``inputs`` is cheap: small inputs. The model's size
    hardly matters, since its layers with a shape formula are sized, not run; ops on
    the meta device cost Python per call, whatever the model."""
    tensors = [t for t in _flat(inputs) if isinstance(t, torch.Tensor)]
    return sum(t.numel() for t in tensors) <= REAL_PASS_MAX_NUMEL


def record_shapes(graph: fx.Graph, model: nn.Module, inputs: tuple,
                  modules: dict[str, nn.Module] | None = None) -> None:
    """Fill ``node.meta["value"]`` for every node of ``graph`` (``modules``:
    ``dict(model.named_modules())`` if the caller has it)."""
    modules = dict(model.named_modules()) if modules is None else modules
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    # placeholders that the example inputs don't cover keep their defaults
    defaults = [node.args[0] if node.args else None for node in placeholders[len(inputs):]]
    shape_pass = ShapePass(model, graph, modules)

    def on_meta_device():
        with torch.no_grad(), on_meta(model, modules), eval_mode(model, modules):
            shape_pass.run(*to_meta(inputs), *defaults)

    def for_real():
        with torch.no_grad(), eval_mode(model, modules):
            shape_pass.run(*inputs, *defaults)

    small = cheap_to_run(model, inputs, modules)
    first, second = (for_real, on_meta_device) if small else (on_meta_device, for_real)
    try:
        first()
    except Exception:
        # e.g. a leaf module that branches on values cannot run on meta tensors
        second()


def _flat(value):
    if isinstance(value, (tuple, list)):
        return [x for v in value for x in _flat(v)]
    if isinstance(value, dict):
        return [x for v in value.values() for x in _flat(v)]
    return [value]


def to_meta(value):
    """``value`` with every tensor replaced by a meta tensor of the same shape and dtype."""
    if isinstance(value, torch.Tensor):
        return value if value.is_meta else torch.empty_like(value, device="meta")
    if isinstance(value, (tuple, list)):
        return type(value)(to_meta(v) for v in value) if not hasattr(value, "_fields") else \
            type(value)(*(to_meta(v) for v in value))
    if isinstance(value, dict):
        return {k: to_meta(v) for k, v in value.items()}
    return value


@contextlib.contextmanager
def eval_mode(module: nn.Module, named: dict[str, nn.Module] | None = None):
    """Run in eval mode (BatchNorm on a batch of one 1×1 map, dropout) and restore
    each submodule's own mode afterwards."""
    modules = list(module.modules() if named is None else named.values())
    modes = [m.training for m in modules]
    for m in modules:
        if type(m).train is nn.Module.train:
            m.__dict__["training"] = False  # what eval() does, without its recursion per module
        else:
            m.train(False)  # a module with its own train() logic
    try:
        yield module
    finally:
        for m, training in zip(modules, modes):
            m.__dict__["training"] = training


@contextlib.contextmanager
def on_meta(module: nn.Module, named: dict[str, nn.Module] | None = None):
    """Temporarily swap every parameter and buffer of ``module`` for a meta tensor of
    the same shape, so that running it computes shapes only (no copy of the model)."""
    saved = []
    seen: dict[int, torch.Tensor] = {}
    for m in (module.modules() if named is None else named.values()):
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


@contextlib.contextmanager
def sized_layers(module: nn.Module):
    """While active, every submodule with a shape rule answers a one-tensor call
    with a stand-in of the right shape instead of computing (and still runs, and
    raises, when its tensors do not fit the input). For checking that a rebuilt
    model runs end to end without paying for its convolutions."""
    patched = []
    for m in module.modules():
        if shape_rule(m) is not None and "forward" not in m.__dict__:
            m.__dict__["forward"] = _SizedForward(m)
            patched.append(m)
    try:
        yield module
    finally:
        for m in patched:
            m.__dict__.pop("forward", None)


class _SizedForward:
    def __init__(self, module: nn.Module):
        self.module = module

    def __call__(self, *args, **kwargs):
        stand_in = stand_in_for_call(self.module, args, kwargs)
        return type(self.module).forward(self.module, *args, **kwargs) if stand_in is None else stand_in
