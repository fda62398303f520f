"""The lean tracer makes exactly the graph fx's tracer makes, or leaves the model to fx."""
from __future__ import annotations

import operator

import math
import re
import sys
from pathlib import Path

import pytest
import torch
import torch.fx as fx
from hypothesis import HealthCheck, given, settings
from torch import nn

from sparsenet_design.tracing.lean import Unsupported, lean_trace
from sparsenet_design import design_spec
from sparsenet_design.tracing.trace import _is_leaf, _LeafAwareTracer, trace

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "tests") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests"))

from support.strategies import build_net, dag_recipes  # noqa: E402
from support.zoo_models import ZOO_MODELS  # noqa: E402

torchvision = pytest.importorskip("torchvision")


def _canonical(graph: fx.Graph) -> list[tuple]:
    """Every node as plain data: op, name, target, args with nodes as indices, owner."""
    index = {node: i for i, node in enumerate(graph.nodes)}

    def arg(v):
        if isinstance(v, fx.Node):
            return ("node", index[v])
        if isinstance(v, (tuple, list)):
            return (type(v).__name__, tuple(arg(e) for e in v))
        if isinstance(v, dict):
            return ("dict", tuple((k, arg(e)) for k, e in v.items()))
        if isinstance(v, slice):
            return ("slice", arg(v.start), arg(v.stop), arg(v.step))
        return (type(v).__name__, repr(v))

    return [
        (n.op, n.name, n.target if isinstance(n.target, str) else repr(n.target),
         arg(n.args), arg(n.kwargs), n.meta.get("owner"))
        for n in graph.nodes
    ]


def _both(model: nn.Module, n_inputs: int = 1):
    lean = lean_trace(model, n_inputs, dict(model.named_modules()), _is_leaf)
    lean.lint()  # a well-formed graph: users, names and order consistent
    reference = _LeafAwareTracer(()).trace(model)
    return _canonical(lean), _canonical(reference)


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)
        self.scale = nn.Parameter(torch.ones(1, c, 1, 1))
        self.register_buffer("shift", torch.zeros(1, c, 1, 1))

    def forward(self, x):
        a, b = torch.chunk(self.conv(x), 2, dim=1)  # unpacking a proxy
        y = torch.cat([b, a], dim=1) * self.scale + self.shift
        return y.view(y.shape[0], y.size(1), -1).mean(-1, keepdim=True).unsqueeze(-1) + x


class Mixed(nn.Module):
    """Parameters, buffers, a module called twice, a dict output, MultiheadAttention."""

    def __init__(self):
        super().__init__()
        self.block = Block(8)
        self.stem = nn.Conv2d(3, 8, 1)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.Linear(8, 4)

    def forward(self, x, y):
        h = self.block(self.block(self.stem(x)))
        n, c, height, width = h.shape  # unpacking an attribute proxy
        seq = h.view(n, c, height * width).transpose(1, 2)
        seq = self.attn(seq, seq, seq)[0]
        return {"logits": self.head(seq.mean(1)), "map": h + y}


@pytest.mark.parametrize("name", sorted(ZOO_MODELS))
def test_same_graph_as_fx_on_the_hand_written_nets(name):
    build, _ = ZOO_MODELS[name]
    lean, reference = _both(build())
    assert lean == reference


@pytest.mark.parametrize("build", [
    lambda: torchvision.models.resnet18(weights=None),
    lambda: torchvision.models.mobilenet_v3_small(weights=None),
    lambda: torchvision.models.swin_t(weights=None),  # torch.fx.wrap-ped functions
    lambda: torchvision.models.squeezenet1_1(weights=None),
], ids=["resnet18", "mobilenet_v3_small", "swin_t", "squeezenet1_1"])
def test_same_graph_as_fx_on_torchvision_models(build):
    lean, reference = _both(build())
    assert lean == reference


def test_parameters_buffers_repeated_calls_and_dict_outputs():
    model = Mixed()
    lean, reference = _both(model, 2)
    assert lean == reference
    owners = {owner for *_, owner in lean}
    assert "block" in owners and not any("@" in o for o in owners)  # the second call of block is still "block"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(recipe=dag_recipes(max_ops=8, max_width=8))
def test_same_graph_as_fx_on_random_dags(recipe):
    model = build_net(recipe)
    try:
        _LeafAwareTracer(()).trace(model)
    except Exception:  # code fx cannot follow (a shape check): the lean tracer leaves it too
        with pytest.raises(Exception):
            lean_trace(model, 1, dict(model.named_modules()), _is_leaf)
        return
    lean, reference = _both(model)
    assert lean == reference


class OneConv(nn.Module):
    """A 3→4 channel 1×1 conv; the subclasses below differ in their forward only."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)


class KeywordOnly(OneConv):
    def forward(self, x, *, scale=2.0):
        return self.conv(x) * scale


class MadeConstant(OneConv):
    def forward(self, x):
        return self.conv(x) + torch.ones(1, 4, 1, 1)  # a tensor fx stores on the model


class MathOnSizes(OneConv):
    def forward(self, x):
        return self.conv(x) / math.sqrt(x.shape[1])  # fx wraps math functions; the lean tracer does not


class CallsAStranger(OneConv):
    def __init__(self):
        super().__init__()
        self.act = nn.ReLU()

    def forward(self, x):
        return nn.ReLU()(self.act(self.conv(x)))  # a module of a known class that is not installed


class OwnGetattr(OneConv):
    def __getattr__(self, name):
        return super().__getattr__(name)

    def forward(self, x):
        return self.conv(x)


def test_keyword_defaults_beyond_the_inputs_are_constants():
    model = KeywordOnly()
    graph = lean_trace(model, 1, dict(model.named_modules()), _is_leaf)
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    muls = [n for n in graph.nodes if n.op == "call_function" and n.target is operator.mul]
    assert [n.target for n in placeholders] == ["x"] and muls and muls[0].args[1] == 2.0


@pytest.mark.parametrize("model", [MadeConstant(), CallsAStranger(), OwnGetattr()],
                         ids=lambda m: type(m).__name__)
def test_leaves_unusual_models_to_fx(model):
    call, getattr_ = nn.Module.__call__, nn.Module.__getattr__
    with pytest.raises(Unsupported):
        lean_trace(model, 1, dict(model.named_modules()), _is_leaf)
    assert nn.Module.__call__ is call and nn.Module.__getattr__ is getattr_
    for m in model.modules():  # the classes inherit nn.Module's methods again
        assert "__call__" not in vars(type(m)) and ("__getattr__" not in vars(type(m)) or type(m) is OwnGetattr)


def test_a_bare_module_container_is_traced_and_nn_module_restored():
    class WithNamespace(nn.Module):
        def __init__(self):
            super().__init__()
            self.ns = nn.Module()  # a plain nn.Module used as a namespace
            self.ns.conv = nn.Conv2d(3, 4, 1)

        def forward(self, x):
            return self.ns.conv(x)

    call, getattr_ = nn.Module.__call__, nn.Module.__getattr__
    lean, reference = _both(WithNamespace())
    assert lean == reference
    assert vars(nn.Module)["__call__"] is call and vars(nn.Module)["__getattr__"] is getattr_


def test_a_module_of_another_class_runs_as_plain_python():
    class Stranger(OneConv):
        def forward(self, x):
            return nn.ReLU()(self.conv(x))  # ReLU is not a class of the model: its forward is recorded

    model = Stranger()
    graph = lean_trace(model, 1, dict(model.named_modules()), _is_leaf)
    assert [(n.op, n.meta["owner"]) for n in graph.nodes] == [
        ("placeholder", ""), ("call_module", "conv"), ("call_function", ""), ("output", "")
    ]
    block = Block(4)  # and fx's own patching still works afterwards
    assert _canonical(_LeafAwareTracer(()).trace(block)) == _canonical(
        lean_trace(block, 1, dict(block.named_modules()), _is_leaf)
    )


@pytest.mark.parametrize("model", [MadeConstant(), MathOnSizes()], ids=lambda m: type(m).__name__)
def test_trace_falls_back_to_fx_and_still_designs(model):
    x = torch.randn(1, 3, 8, 8)
    traced = trace(model, (x,))
    assert traced.method == "fx"
    assert {n.op for n in traced.graph.nodes} >= {"placeholder", "call_module", "output"}
    spec = design_spec(model, x, "min", {"conv": 0.25})
    assert spec.modules["conv"]["widths"]["out_channels"] <= 4


def test_value_dependent_code_is_left_to_the_run_tracer():
    class ValueBranch(OneConv):
        def forward(self, x):
            if x.sum() > 1e9:  # control flow on values: no symbolic tracer can follow it
                return x
            return self.conv(x)

    model = ValueBranch()
    with pytest.raises(fx.proxy.TraceError):
        lean_trace(model, 1, dict(model.named_modules()), _is_leaf)
    traced = trace(model, (torch.randn(1, 3, 4, 4),))
    assert traced.method == "run"
    assert any(re.search(r"test_fast_trace.py:\d+: if x.sum\(\) > 1e9", note) for note in traced.notes)
