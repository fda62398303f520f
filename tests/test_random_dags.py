"""Property test: random DAG networks rebuild to runnable compact models.

Networks and densities come from ``tests/support/strategies.py``; the property is
``tests/support/rebuild_check.check_rebuild`` (compact runs, output shapes unchanged,
parameters ≤ original, spec → fresh copy gives the same model), for ``min`` and ``max``.
The 10,000-example run is ``benchmarks/random_dag_fuzz.py``.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT / "tests",):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from support.rebuild_check import check_rebuild, output_shapes  # noqa: E402
from support.strategies import Op, Recipe, build_net, dag_recipes, random_recipe  # noqa: E402


pytestmark = pytest.mark.usefixtures("one_thread")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(recipe=dag_recipes(max_ops=8, max_width=8))
def test_random_dag_rebuilds(recipe: Recipe):
    x = recipe.example_input()
    for strategy in ("min", "max"):
        check_rebuild(lambda: build_net(recipe), x, recipe.densities, strategy)


def test_generator_covers_every_op():
    """The generator really produces each op kind (else the property proves little)."""
    ops = [op for seed in range(300) for op in random_recipe(seed).ops]
    assert {op.kind for op in ops} >= {"conv", "gconv", "dwconv", "tconv", "bn", "bnact", "relu", "add", "shape_add",
                                       "cat", "chunk", "split", "maxpool", "avgpool", "flat_linear", "gap_linear",
                                       "linear"}
    # shape checks both ways: widths that differ (projected) and that match (no projection module)
    assert {op.args["c_in"] == op.args["c_out"] for op in ops if op.kind == "shape_add"} == {True, False}
    assert any(len(random_recipe(seed).outputs) > 1 for seed in range(50))


def test_recipe_net_matches_hand_written_model():
    """RecipeNet computes what its recipe says (checked against direct torch calls)."""
    recipe = Recipe(
        ops=[
            Op("conv", (0,), {"c_in": 3, "c_out": 6, "k": 3, "bias": True}),
            Op("chunk", (1,)),
            Op("add", (2, 3)),
            Op("cat", (1, 4)),
            Op("gap_linear", (5,), {"f_in": 9, "f_out": 4, "bias": False}),
        ],
        outputs=(6, 4),
        densities={"layers.op0": 0.5, "layers.op4": 0.5},
    )
    net = build_net(recipe)
    x = recipe.example_input()
    conv, lin = net.layers["op0"], net.layers["op4"]
    y = conv(x)
    s = y[:, :3] + y[:, 3:]
    want_head = lin(torch.cat([y, s], 1).mean(dim=(2, 3)))
    head, side = net(x)
    torch.testing.assert_close(head, want_head)
    torch.testing.assert_close(side, s)
    assert output_shapes(net(x)) == [(2, 4), (2, 3, 8, 8)]


@pytest.mark.parametrize("strategy", ["min", "max"])
def test_residual_chain_shrinks(strategy):
    """A conv chain with a residual add and a concat gets narrower, not just runnable."""
    recipe = Recipe(
        ops=[
            Op("conv", (0,), {"c_in": 3, "c_out": 8, "k": 3, "bias": True}),
            Op("conv", (1,), {"c_in": 8, "c_out": 8, "k": 3, "bias": False}),
            Op("bn", (2,), {"c_in": 8}),
            Op("add", (1, 3)),
            Op("dwconv", (4,), {"c_in": 8, "c_out": 8, "k": 3, "groups": 8, "bias": False}),
            Op("cat", (4, 5)),
            Op("conv", (6,), {"c_in": 16, "c_out": 2, "k": 1, "bias": True}),
        ],
        outputs=(7,),
        densities={"layers.op0": 0.25, "layers.op1": 0.25, "layers.op4": 0.25, "layers.op6": 0.25},
    )
    res = check_rebuild(lambda: build_net(recipe), recipe.example_input(), recipe.densities, strategy, strict=True)
    assert res.params_after < res.params_before


# -- counterexamples the fuzz found (core bugs, fixed in cb342c8): regression tests --------


class _CatThenChunk(torch.nn.Module):
    """Fuzz seed 6885, reduced: chunk(2) of a concat whose halves are the concat's parts."""

    def __init__(self):
        super().__init__()
        self.a, self.b = torch.nn.Conv2d(3, 4, 1), torch.nn.Conv2d(3, 4, 1)
        self.bn, self.head = torch.nn.BatchNorm2d(4), torch.nn.Conv2d(4, 2, 1)

    def forward(self, x):
        _, q = torch.cat([self.a(x), self.b(x)], 1).chunk(2, dim=1)
        return self.head(self.bn(q))


def test_chunk_of_concat_with_unequal_densities():
    from sparsenet_design import reconstruct

    model, x = _CatThenChunk().eval(), torch.randn(1, 3, 8, 8)
    compact, _ = reconstruct(model, x, "min", {"a": 0.1, "b": 1.0, "head": 1.0})
    assert compact(x).shape == model(x).shape


class _TupleOut(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = torch.nn.Conv2d(3, 16, 3), torch.nn.Conv2d(16, 4, 1)

    def forward(self, x):
        return (self.b(self.a(x)),)


def test_outputs_inside_containers_are_pinned_not_repaired():
    """Without the output pin the widths of ``b`` change, verification pins every
    top-level module and nothing is compressed (all detection/segmentation models)."""
    from sparsenet_design import reconstruct

    model, x = _TupleOut().eval(), torch.randn(1, 3, 8, 8)
    compact, spec = reconstruct(model, x, "min", {"a": 0.25, "b": 0.25}, verify=False)
    assert compact(x)[0].shape == model(x)[0].shape
    _, spec = reconstruct(model, x, "min", {"a": 0.25, "b": 0.25})
    assert spec.changed_modules()["a"]["out_channels"] == (16, 8)  # ⌈√0.25·16⌉ from both sides
