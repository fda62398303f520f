"""Reconstruction on representative real architectures (torchvision + hand-written).

Fast part: a few small torchvision models at a small input and the nets of
``tests/support/zoo_models.py``. Slow part (``-m slow``): the whole zoo, as in
``benchmarks/zoo_coverage.py``.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "tests") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests"))

torchvision = pytest.importorskip("torchvision")

from support.rebuild_check import check_rebuild, random_densities  # noqa: E402
from support.zoo_models import ZOO_MODELS  # noqa: E402


def _tiny_vit():
    return torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=10
    )


FAST = {
    "resnet18": (lambda: torchvision.models.resnet18(weights=None), (1, 3, 32, 32)),
    "mobilenet_v3_small": (lambda: torchvision.models.mobilenet_v3_small(weights=None), (1, 3, 32, 32)),
    "shufflenet_v2_x0_5": (lambda: torchvision.models.shufflenet_v2_x0_5(weights=None), (1, 3, 32, 32)),
    "squeezenet1_1": (lambda: torchvision.models.squeezenet1_1(weights=None), (1, 3, 48, 48)),
    "efficientnet_b0": (lambda: torchvision.models.efficientnet_b0(weights=None), (1, 3, 32, 32)),
    "torchvision_vit": (_tiny_vit, (1, 3, 32, 32)),
    **ZOO_MODELS,
}


pytestmark = pytest.mark.usefixtures("one_thread")


def _seeded(build):
    def make():
        torch.manual_seed(0)
        return build().eval()

    return make


@pytest.mark.parametrize("strategy", ["min", "max"])
@pytest.mark.parametrize("name", sorted(FAST))
def test_rebuild_small_zoo(name, strategy):
    build, shape = FAST[name]
    make = _seeded(build)
    model = make()
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    densities = random_densities(model, seed=1)
    res = check_rebuild(make, x, densities, strategy, strict=True, model=model)
    # random densities average ~0.5, so min must cut deep; max at least a little
    assert res.params_after < res.params_before
    if strategy == "min":
        assert res.ratio < 0.9, f"{name}: min kept {res.ratio:.0%} of the parameters"


def test_min_never_wider_than_max():
    """For the same densities, every width chosen by min is ≤ the one chosen by max."""
    build, shape = ZOO_MODELS["unet"]
    model = build().eval()
    x = torch.randn(*shape)
    from sparsenet_design import reconstruct

    densities = random_densities(model, seed=3)
    _, lo = reconstruct(model, x, "min", densities, verify=False)
    _, hi = reconstruct(model, x, "max", densities, verify=False)
    for path, entry in lo.modules.items():
        for attr, w in entry["widths"].items():
            assert w <= hi.modules[path]["widths"][attr], (path, attr)


def _zoo_ids():
    try:
        from zoo_coverage import zoo_names

        return [f"{f}/{n}" for f, n in zoo_names()]
    except Exception:  # torchvision layout changed: the test reports it
        return []


@pytest.mark.slow
@pytest.mark.parametrize("model_id", _zoo_ids())
def test_full_zoo(model_id):
    from zoo_coverage import check_model, failure_reason, rebuilt

    family, name = model_id.split("/")
    row = check_model((family, name, 0))
    assert rebuilt(row), failure_reason(row)


class _ValueGate(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.c = torch.nn.Conv2d(8, 8, 1)

    def forward(self, y):
        if y.sum() > 0:  # control flow on tensor values: untraceable
            return self.c(y)
        return y


class _Gated(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.gate = _ValueGate()

    def forward(self, x):
        return self.gate(self.conv(x))


def test_value_dependent_code_is_traced_by_running_and_noted():
    from sparsenet_design import reconstruct

    _, spec = reconstruct(_Gated().eval(), torch.randn(1, 3, 8, 8), "min", {"conv": 0.5})
    assert spec.settings["tracer"] == "run"
    note = next(n for n in spec.notes if "reads tensor values" in n)
    assert f"{Path(__file__).name}:" in note and "if y.sum() > 0" in note


def test_leaf_module_way_out_works():
    """Marking the value-dependent module a leaf works (it failed before core b5ffdc0:
    the meta shape pass ran the leaf's value-dependent code on meta tensors)."""
    from sparsenet_design import reconstruct

    model, x = _Gated().eval(), torch.randn(1, 3, 8, 8)
    compact, spec = reconstruct(model, x, "min", {"conv": 0.25, "gate.c": 0.25}, leaf_modules=[_ValueGate])
    assert compact(x).shape == model(x).shape
