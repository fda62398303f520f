"""The run tracer: one real forward pass recorded as the module-level graph the
channel rules read (sparsenet_design/run_trace.py), and trace()'s fallback to it."""
from __future__ import annotations

import operator
import re

import sys
from pathlib import Path

import pytest
import torch
import torch.fx as fx
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from torch import nn

from sparsenet_design.errors import TraceError
from sparsenet_design import reconstruct
from sparsenet_design.tracing.run import ForwardFailed, _Recorder, run_trace
from sparsenet_design.tracing.shapes import record_shapes
from sparsenet_design.tracing.trace import _is_leaf, _symbolic, describe_tracer, trace

torchvision = pytest.importorskip("torchvision")

if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))
from support.strategies import build_net, dag_recipes  # noqa: E402

_PLAIN = {operator.iadd: operator.add, operator.isub: operator.sub, operator.imul: operator.mul}


def _has_tensor(value) -> bool:
    if isinstance(value, torch.Tensor):
        return True
    if isinstance(value, (tuple, list)):
        return any(_has_tensor(v) for v in value)
    return isinstance(value, dict) and any(_has_tensor(v) for v in value.values())


def _ops(graph: fx.Graph) -> list[tuple[str, str]]:
    """The graph's tensor ops in order: no getitem, no size arithmetic, in-place
    operators as their plain ones (fx records ``a += b`` as ``operator.add``)."""
    out = []
    for node in graph.nodes:
        if node.op not in ("call_module", "call_function", "call_method") or node.target is operator.getitem:
            continue
        if not _has_tensor(node.meta.get("value")):
            continue
        target = _PLAIN.get(node.target, node.target)
        out.append((node.op, target if isinstance(target, str) else target.__name__))
    return out


def _run(model: nn.Module, *inputs, leaves=()) -> fx.Graph:
    model.eval()
    modules = dict(model.named_modules())
    graph = run_trace(model, inputs, modules, lambda m: _is_leaf(m, leaves))
    graph.lint()
    record_shapes(graph, model, inputs, modules)
    return graph


def _output_shapes(value) -> list:
    if isinstance(value, torch.Tensor):
        return [tuple(value.shape)]
    if isinstance(value, (tuple, list)):
        return [s for v in value for s in _output_shapes(v)]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _output_shapes(v)]
    return []


def _replays(model: nn.Module, graph: fx.Graph, *inputs) -> None:
    """The recorded graph's output shapes are those of a real forward."""
    with torch.no_grad():
        real = model.eval()(*inputs)
    output = next(n for n in graph.nodes if n.op == "output")
    assert _output_shapes(output.meta["value"]) == _output_shapes(real)


# -- graph conventions -----------------------------------------------------------------

@torch.fx.wrap
def _gain(x: torch.Tensor, k: float) -> torch.Tensor:
    return x * k + 0.0  # two ops inside: fx records one call, and so must the run tracer


class Block(nn.Module):
    def __init__(self, c: int = 8):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)
        self.bn = nn.BatchNorm2d(c)
        self.scale = nn.Parameter(torch.ones(1, c, 1, 1))
        self.register_buffer("shift", torch.zeros(1, c, 1, 1))

    def forward(self, x):
        a, b = torch.chunk(self.bn(self.conv(x)), 2, dim=1)
        y = torch.cat([b, a], dim=1) * self.scale + self.shift
        y = 2 - _gain(y, 0.5)
        y = y.view(y.shape[0], y.size(1), -1).mean(-1).unsqueeze(-1).unsqueeze(-1)
        z = F.relu(y + x)
        return z @ z.transpose(2, 3)


@pytest.mark.parametrize("build, shape", [
    (Block, (1, 8, 6, 6)),
    (lambda: torchvision.models.resnet18(weights=None), (1, 3, 32, 32)),
    (lambda: torchvision.models.mobilenet_v3_small(weights=None), (1, 3, 32, 32)),
], ids=["block", "resnet18", "mobilenet_v3_small"])
def test_same_ops_in_the_same_order_as_the_symbolic_graph(build, shape):
    model, x = build().eval(), torch.randn(*shape)
    modules = dict(model.named_modules())
    symbolic, _ = _symbolic(model, (x,), (), modules)
    record_shapes(symbolic, model, (x,), modules)
    run = _run(model, x)
    assert _ops(run) == _ops(symbolic)
    owners = lambda g: [(n.op, n.target, n.meta["owner"]) for n in g.nodes if n.op == "call_module"]  # noqa: E731
    assert owners(run) == owners(symbolic)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(recipe=dag_recipes(max_ops=8, max_width=8))
def test_same_ops_as_the_symbolic_graph_on_random_dags(recipe):
    model, x = build_net(recipe).eval(), recipe.example_input()
    modules = dict(model.named_modules())
    try:
        symbolic, _ = _symbolic(model, (x,), (), modules)
    except Exception:  # a shape-checked add: only the run tracer follows it (its replay is checked below)
        symbolic = None
    run = _run(model, x)
    _replays(model, run, x)
    if symbolic is not None:
        record_shapes(symbolic, model, (x,), modules)
        assert _ops(run) == _ops(symbolic)


def test_node_kinds_targets_and_owners():
    model = Block()
    graph = _run(model, torch.randn(1, 8, 6, 6))
    nodes = list(graph.nodes)
    assert [(n.op, n.target) for n in nodes if n.op in ("placeholder", "get_attr")] == [
        ("placeholder", "x"), ("get_attr", "scale"), ("get_attr", "shift")]  # one node per tensor, reused
    ops = {(n.op, n.target if isinstance(n.target, str) else n.target) for n in nodes}
    assert {("call_module", "conv"), ("call_module", "bn"), ("call_function", torch.chunk),
            ("call_function", torch.cat), ("call_function", operator.mul), ("call_function", operator.add),
            ("call_function", _gain), ("call_method", "view"), ("call_method", "mean"),
            ("call_function", F.relu), ("call_function", operator.matmul), ("call_method", "transpose")} <= ops
    reflected = next(n for n in nodes if n.target is operator.sub)
    assert reflected.args[0] == 2  # 2 - y: the reflected operator with its arguments swapped, as fx has it
    view = next(n for n in nodes if n.target == "view")
    assert view.args[1:] == (1, 8, -1)  # sizes are plain ints
    chunk = next(n for n in nodes if n.target is torch.chunk)
    assert [u.target for u in chunk.users] == [operator.getitem] * 2
    assert all(n.meta["owner"] == (n.target if n.op == "call_module" else "") for n in nodes)  # as under fx
    assert [n.target for n in nodes].count("output") == 1


def test_inputs_nested_in_containers_and_star_args():
    class Star(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)

        def forward(self, *args):
            pair, extra = args
            return self.conv(pair[0] + pair[1]) * extra["scale"]

    model = Star()
    x = torch.randn(1, 3, 4, 4)
    graph = _run(model, [x, x.clone()], {"scale": torch.ones(1, 4, 1, 1)})
    placeholders = [n.target for n in graph.nodes if n.op == "placeholder"]
    assert placeholders == ["args_0", "args_1"]
    getitems = [n.args for n in graph.nodes if n.target is operator.getitem]
    assert [(a.target, i) for a, i in getitems] == [("args_0", 0), ("args_0", 1), ("args_1", "scale")]
    _replays(model, graph, [x, x.clone()], {"scale": torch.ones(1, 4, 1, 1)})


def test_owner_is_the_innermost_installed_module_and_parameters_keep_their_first_name():
    class Inner(nn.Module):
        def __init__(self, shared: nn.Parameter):
            super().__init__()
            self.w = shared

        def forward(self, x):
            return x * self.w

    class Outer(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(1, 3, 1, 1))
            self.inner = Inner(self.w)

        def forward(self, x):
            return self.inner(x) + self.w

    graph = _run(Outer(), torch.randn(1, 3, 2, 2))
    owners = {(n.op, str(n.target)): n.meta["owner"] for n in graph.nodes}
    assert owners[("call_function", str(operator.mul))] == "inner"
    assert owners[("call_function", str(operator.add))] == ""
    assert [n.target for n in graph.nodes if n.op == "get_attr"] == ["w"]


# -- what symbolic tracing cannot follow ------------------------------------------------

class ShapeCheck(nn.Module):
    """``if y.shape[1] != x.shape[1]: x = self.fix(x)`` after a norm layer."""

    def __init__(self, norm: str):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.norm = {"bn": nn.BatchNorm2d(8), "gn": nn.GroupNorm(2, 8), "prelu": nn.PReLU(8)}[norm]
        self.fix = nn.Conv2d(3, 8, 1)
        self.out = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        y = self.norm(self.conv(x))
        if y.shape[1] != x.shape[1]:
            x = self.fix(x)
        return self.out(y + x)


@pytest.mark.parametrize("norm", ["bn", "gn", "prelu"])
def test_shape_check_after_a_norm_layer(norm):
    model, x = ShapeCheck(norm), torch.randn(1, 3, 8, 8)
    traced = trace(model, (x,))
    assert traced.method == "run" and traced.constant_sizes
    assert any("same path through the code" in note for note in traced.notes)
    assert [n.target for n in traced.graph.nodes if n.op == "call_module"] == ["conv", "norm", "fix", "out"]
    _replays(model, traced.graph, x)
    densities = {"conv": 0.25, "fix": 0.25, "out": 1.0}
    compact, spec = reconstruct(model, (x,), densities=densities)
    assert spec.settings["tracer"] == "run"
    assert compact.conv.out_channels == compact.fix.out_channels == compact.out.in_channels < 8
    assert compact(x).shape == (1, 2, 8, 8)


class YoloStyle(nn.Module):
    """ultralytics' C2f: chunk, then a list extended with the outputs of several
    modules, each reading the last entry, then cat."""

    def __init__(self, c: int = 8, n: int = 2):
        super().__init__()
        self.cv1 = nn.Conv2d(c, 2 * c, 1)
        self.m = nn.ModuleList(nn.Conv2d(c, c, 3, padding=1) for _ in range(n))
        self.cv2 = nn.Conv2d((2 + n) * c, c, 1)

    def forward(self, x):
        y = list(self.cv1(x).chunk(2, 1))
        y.extend(m(y[-1]) for m in self.m)
        return self.cv2(torch.cat(y, 1))


class ListLoop(nn.Module):
    """A loop over a list of tensors, and one over a tensor's first dimension."""

    def __init__(self):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(3, 4, 1) for _ in range(3))

    def forward(self, x):
        feats = [conv(x) for conv in self.convs]
        total = feats[0]
        for f in feats[1:]:
            total = total + f
        rows = [row.sum(0) for row in total]  # iterating a tensor
        return total, torch.stack(rows)


class MadeInForward(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        return nn.ReLU()(self.conv(x))  # not installed: traced through, not a call_module


class TupleLeaf(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        out, weights = self.attn(x, x, x)
        return self.head(out), weights


class InPlace(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 1)
        self.b = nn.Conv2d(3, 4, 1)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        y = self.a(x)
        y += self.b(x)
        y.mul_(2)
        y[:, :1] = 0
        return self.act(y)


class ValueBranch(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.other = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        if x.mean() > -100:  # a branch on a value: the run takes this one
            return self.conv(x)
        return self.other(x)


@pytest.mark.parametrize("build, inputs", [
    (YoloStyle, lambda: (torch.randn(1, 8, 6, 6),)),
    (ListLoop, lambda: (torch.randn(2, 3, 4, 4),)),
    (MadeInForward, lambda: (torch.randn(1, 3, 4, 4),)),
    (TupleLeaf, lambda: (torch.randn(1, 5, 8),)),
    (InPlace, lambda: (torch.randn(1, 3, 4, 4),)),
    (ValueBranch, lambda: (torch.randn(1, 3, 4, 4),)),
], ids=lambda v: getattr(v, "__name__", ""))
def test_hard_cases_trace_and_replay(build, inputs):
    model, args = build(), inputs()
    traced = trace(model, args)
    traced.graph.lint()
    _replays(model, traced.graph, *args)
    if build is YoloStyle:
        assert traced.method == "run"
        cat = next(n for n in traced.graph.nodes if n.target is torch.cat)
        assert [a.target for a in cat.args[0]] == [operator.getitem, operator.getitem, "m.0", "m.1"]
    if build is MadeInForward:
        assert [n.target for n in traced.graph.nodes if n.op == "call_module"] == ["conv"]
        assert any(n.target is F.relu for n in traced.graph.nodes)


def test_a_tuple_returning_leaf_gets_one_getitem_per_tensor():
    graph = _run(TupleLeaf(), torch.randn(1, 5, 8))
    attn = next(n for n in graph.nodes if n.target == "attn")
    assert sorted(u.args[1] for u in attn.users) == [0, 1]
    head = next(n for n in graph.nodes if n.target == "head")
    assert head.args[0].target is operator.getitem and head.args[0].args == (attn, 0)


def test_in_place_ops_rebind_the_tensor_to_their_node():
    graph = _run(InPlace(), torch.randn(1, 3, 4, 4))
    chain = [(n.op, n.target) for n in graph.nodes if n.op not in ("placeholder", "output")]
    assert chain == [("call_module", "a"), ("call_module", "b"), ("call_function", operator.iadd),
                     ("call_method", "mul_"), ("call_function", operator.setitem), ("call_module", "act")]
    act = next(n for n in graph.nodes if n.target == "act")
    assert act.args[0].target == "mul_"  # the tensor after its in-place updates


def test_a_value_branch_is_recorded_as_taken_and_noted():
    traced = trace(ValueBranch(), (torch.randn(1, 3, 4, 4),))
    assert traced.method == "run"
    assert [n.target for n in traced.graph.nodes if n.op == "call_module"] == ["conv"]
    assert any(re.search(r"test_run_trace.py:\d+: if x.mean\(\) > -100", note) for note in traced.notes)


def test_an_exception_the_code_catches_leaves_owners_and_leaves_right():
    class Strict(nn.Module):
        def forward(self, x):
            raise ValueError("not this input")

    class Fallback(nn.Module):
        def __init__(self):
            super().__init__()
            self.strict = Strict()
            self.inner = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU())

        def forward(self, x):
            try:
                return self.strict(x)
            except ValueError:
                return self.inner(x) * 2

    graph = _run(Fallback(), torch.randn(1, 3, 4, 4), leaves=(Strict,))
    ops = [(n.op, str(n.target), n.meta["owner"]) for n in graph.nodes if n.op.startswith("call")]
    assert ops == [("call_module", "inner.0", "inner.0"), ("call_module", "inner.1", "inner.1"),
                   ("call_function", str(operator.mul), "")]


def test_extra_leaf_classes_are_leaves_for_the_run_tracer_too():
    model = nn.Sequential(YoloStyle(), nn.ReLU())
    graph = _run(model, torch.randn(1, 8, 6, 6), leaves=(YoloStyle,))
    assert [n.target for n in graph.nodes if n.op == "call_module"] == ["0", "1"]
    traced = trace(YoloStyle(), (torch.randn(1, 8, 6, 6),), leaf_modules=[YoloStyle])
    assert traced.method == "run" and len(traced.graph.find_nodes(op="call_module")) == 4  # the root is no leaf


def test_tensor_properties():
    class Props(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(4, 6))

        def forward(self, x):
            assert x.shape[-1] == 4 and x.dtype == torch.float32 and x.ndim == 3
            return (x @ self.w).mT + self.w.T.data.sum()

    model = Props()
    graph = _run(model, torch.randn(2, 5, 4))
    ops = [(n.op, n.target) for n in graph.nodes if n.op in ("call_method", "call_function")]
    assert ops == [("call_function", operator.matmul), ("call_method", "transpose"), ("call_method", "permute"),
                   ("call_method", "sum"), ("call_function", operator.add)]
    assert next(n for n in graph.nodes if n.target == "permute").args[1] == (1, 0)
    _replays(model, graph, torch.randn(2, 5, 4))


# -- the model is left as it was -------------------------------------------------------

class Mutating(nn.Module):
    """Writes to a buffer and a parameter in forward, and swaps a buffer."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.bn = nn.BatchNorm2d(4)
        self.register_buffer("calls", torch.zeros(()))
        self.register_buffer("last", torch.zeros(1, 4, 1, 1))

    def forward(self, x):
        self.calls += 1
        self.conv.weight.mul_(1.5)
        y = self.bn(self.conv(x))
        self.last = y.mean((2, 3), keepdim=True)
        return y


def _state(model: nn.Module):
    return {k: v.clone() for k, v in model.state_dict(keep_vars=True).items()}, {
        k: v for k, v in model.state_dict(keep_vars=True).items()}


def test_model_left_unchanged():
    model = Mutating().train()
    values, objects = _state(model)
    run_trace(model, (torch.randn(2, 3, 4, 4),), dict(model.named_modules()), _is_leaf)
    after = model.state_dict(keep_vars=True)
    assert all(after[k] is objects[k] and torch.equal(after[k], values[k]) for k in values)
    assert all(m.training for m in model.modules())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_model_left_unchanged_when_forward_raises():
    model = Mutating().train()
    values, _ = _state(model)
    add = vars(torch.Tensor).get("__add__")
    with pytest.raises(ForwardFailed):
        run_trace(model, (torch.randn(2, 5, 4, 4),), dict(model.named_modules()), _is_leaf)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in values.items())
    assert all(m.training for m in model.modules())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    assert vars(torch.Tensor).get("__add__") is add
    assert torch.ones(2) + 1 is not None  # operators work as before


# -- errors ----------------------------------------------------------------------------

class Rejects(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 1)
        self.body = nn.Sequential(nn.Conv2d(4, 4, 1), nn.Linear(3, 2))

    def forward(self, x):
        return self.body(self.stem(x))


def test_error_names_module_line_and_cause():
    with pytest.raises(TraceError) as err:
        trace(Rejects(), (torch.randn(1, 3, 5, 5),))
    msg = str(err.value)
    assert "module 'body.1' (Linear)" in msg
    assert re.search(r"test_run_trace.py:\d+: return self.body\(self.stem\(x\)\)", msg)
    assert "RuntimeError: mat1 and mat2 shapes cannot be multiplied" in msg
    assert "example inputs" in msg and "model(*example_inputs)" in msg
    assert "control flow" not in msg and "Traceback" not in msg and "\n" not in msg


def test_error_in_the_models_own_forward():
    class Own(nn.Module):
        def forward(self, x):
            raise ValueError("expects two inputs")

    with pytest.raises(TraceError, match=r"in its own forward \(Own\) at .*test_run_trace.py:\d+: raise Value"):
        trace(Own(), (torch.randn(1),))


def test_a_failure_of_the_tracer_itself_is_not_blamed_on_the_inputs(monkeypatch):
    def broken(self, *args):
        raise RuntimeError("recorder bug")

    monkeypatch.setattr(_Recorder, "record", broken)
    with pytest.raises(TraceError, match="bug in sparsenet-design's run tracer") as err:
        trace(ShapeCheck("bn"), (torch.randn(1, 3, 8, 8),))
    assert "recorder bug" in str(err.value)


def test_tracer_names():
    assert describe_tracer("run").startswith("run (recorded by running")
    assert "concrete" in describe_tracer("concrete") and describe_tracer("symbolic").startswith("symbolic")


# -- reports say which tracer made the graph ----------------------------------------------

def test_cli_report_and_html_name_the_tracer_and_its_note(tmp_path):
    import textwrap
    from pathlib import Path

    from click.testing import CliRunner

    from sparsenet_design.cli import main

    examples = Path(__file__).resolve().parents[1] / "examples"
    model_file = tmp_path / "model.py"
    model_file.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(examples)!r})
        import torch
        from torch import nn
        from tiny_mlp import example_inputs, train_data, loss

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.a, self.fix, self.out = nn.Linear(16, 32), nn.Linear(16, 32), nn.Linear(32, 4)

            def forward(self, x):
                y = torch.relu(self.a(x))
                if y.shape[-1] != x.shape[-1]:  # symbolic tracing cannot follow this
                    x = self.fix(x)
                return self.out(y + x)

        def build_model():
            return Net()
    """))
    run = tmp_path / "run"
    invoke = lambda *args: CliRunner().invoke(main, ["-q", *map(str, args)], env={"COLUMNS": "400"})  # noqa: E731
    assert invoke("prune", model_file, "--epochs", 1, "--out", run).exit_code == 0
    result = invoke("report", run, "--no-plots", "--html")
    assert result.exit_code == 0, result.output
    assert "graph: run (recorded by running the model on the example inputs)" in result.output
    assert "same path through the code" in result.output
    page = (run / "report.html").read_text()
    assert "traced by: <b>run (recorded by running the model on the example inputs)</b>" in page
    assert "same path through the code" in page


@pytest.mark.parametrize("old", ["symbolic", "concrete"])
def test_specs_of_older_versions_still_load_and_show_their_tracer(tmp_path, old):
    from sparsenet_design.report.html import _tracing_section
    from sparsenet_design.training.runs import RunFolder
    from sparsenet_design.design.spec import DesignSpec

    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    _, spec = reconstruct(model, (torch.randn(1, 4),), densities={"0": 0.5, "2": 1.0})
    spec.settings["tracer"] = old
    spec.save(tmp_path / "spec.json")
    loaded = DesignSpec.load(tmp_path)
    assert loaded.settings["tracer"] == old
    assert f"traced by: <b>{describe_tracer(old)}</b>" in _tracing_section(RunFolder(tmp_path), RunFolder(tmp_path))


def test_the_random_number_generator_is_left_as_it_was():
    class Noisy(nn.Module):
        def forward(self, x):
            return x + torch.randn_like(x)

    model, x = Noisy(), torch.randn(2, 2)
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    run_trace(model, (x,), {"": model}, _is_leaf)
    assert torch.equal(torch.rand(3), expected)
