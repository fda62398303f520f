"""reconstruct / apply_spec / DesignSpec: round trips, inheritance, tracing and errors."""
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sparsenet_design.errors import CheckpointError, SdesignError, SpecMismatchError, TraceError
from sparsenet_design.kinds.prunable import prunable_layers
from sparsenet_design import apply_spec, reconstruct
from sparsenet_design.kinds import OpKind, registered
from sparsenet_design.kinds.rules import passthrough_rule
from sparsenet_design.design.spec import DesignSpec
from sparsenet_design.tracing.trace import trace


def uniform(model, d):
    return {name: d for name, _ in prunable_layers(model)}


def n_params(m):
    return sum(p.numel() for p in m.parameters())


class TinyUNet(nn.Module):
    def __init__(self, c=16):
        super().__init__()
        self.enc1 = nn.Sequential(nn.Conv2d(3, c, 3, padding=1), nn.ReLU())
        self.enc2 = nn.Sequential(nn.Conv2d(c, 2 * c, 3, padding=1), nn.ReLU())
        self.mid = nn.Sequential(nn.Conv2d(2 * c, 2 * c, 3, padding=1), nn.ReLU())
        self.up = nn.ConvTranspose2d(2 * c, c, 2, stride=2)
        self.dec = nn.Conv2d(2 * c, c, 3, padding=1)
        self.out = nn.Conv2d(c, 1, 1)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(F.avg_pool2d(e1, 2))
        m = self.mid(e2) + e2
        d = self.dec(torch.cat([self.up(m), e1], 1))
        return torch.sigmoid(self.out(d))


def test_unet_rebuild_spec_round_trip(tmp_path):
    model = TinyUNet()
    x = torch.randn(1, 3, 16, 16)
    compact, spec = reconstruct(model, (x,), "max", densities=uniform(model, 0.2))
    assert compact(x).shape == model(x).shape
    assert n_params(compact) < n_params(model)
    path = spec.save(tmp_path / "spec.json")
    loaded = DesignSpec.load(path)
    assert loaded.modules == spec.modules
    again = apply_spec(TinyUNet(), loaded)
    assert {k: v.shape for k, v in again.state_dict().items()} == {k: v.shape for k, v in compact.state_dict().items()}
    # the consumer of the skip concat reads both segments
    assert again.dec.in_channels == again.up.out_channels + again.enc1[0].out_channels


def test_reconstruct_leaves_the_source_model_untouched():
    model = TinyUNet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    reconstruct(model, (torch.randn(1, 3, 16, 16),), densities=uniform(model, 0.1))
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("inherit", [False, True])
def test_compact_model_shares_no_memory_with_the_source(inherit):
    model = TinyUNet()
    compact, _ = reconstruct(model, (torch.randn(1, 3, 16, 16),), densities=uniform(model, 0.3), inherit=inherit)
    source = {t.data_ptr() for t in list(model.parameters()) + list(model.buffers())}
    assert not source & {t.data_ptr() for t in list(compact.parameters()) + list(compact.buffers()) if t.numel()}


def test_inherit_keeps_strongest_channels():
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv2d(3, 8, 1)
            self.c2 = nn.Conv2d(8, 4, 1)

        def forward(self, x):
            return self.c2(self.c1(x))

    model = Two()
    strong = [1, 4, 6]
    with torch.no_grad():
        model.c1.weight.mul_(0.01)
        model.c1.weight[strong] *= 1000
        model.c2.weight.mul_(0.01)
    # c1: ⌈√(9/64)·8⌉ = 3 outputs
    dens = {"c1": 9 / 64, "c2": 1.0}
    compact, _ = reconstruct(model, (torch.randn(1, 3, 2, 2),), "min", densities=dens, inherit=True)
    assert compact.c1.out_channels == 3
    assert torch.equal(compact.c1.weight, model.c1.weight[strong])
    assert torch.equal(compact.c1.bias, model.c1.bias[strong])
    assert torch.equal(compact.c2.weight, model.c2.weight[:, strong])


def test_shape_dependent_control_flow_is_traced_by_running():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 8, 3, padding=1)
            self.fix = nn.Conv2d(3, 8, 1)
            self.b = nn.Conv2d(8, 2, 1)

        def forward(self, x):
            y = self.a(x)
            if y.shape[1] != x.shape[1]:
                x = self.fix(x)
            return self.b(y + x)

    model = Branchy()
    t = trace(model, (torch.randn(1, 3, 4, 4),))
    assert t.method == "run"
    compact, spec = reconstruct(model, (torch.randn(1, 3, 4, 4),), densities=uniform(model, 0.25))
    assert compact.a.out_channels == compact.fix.out_channels == compact.b.in_channels == 4
    assert spec.settings["tracer"] == "run"


def test_value_dependent_control_flow_is_traced_by_running_and_noted():
    class Inner(nn.Module):
        def forward(self, x):
            if x.sum() > -1e9:  # depends on values: the graph holds for this branch
                return x * 2
            return x

    class Outer(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)
            self.gate = Inner()

        def forward(self, x):
            return self.gate(self.conv(x))

    _, spec = reconstruct(Outer(), (torch.randn(1, 3, 4, 4),))
    assert spec.settings["tracer"] == "run"
    assert any("if x.sum() > -1e9" in note and "reads tensor values" in note for note in spec.notes)


def test_inputs_the_model_rejects_name_module_and_line():
    class Outer(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)
            self.head = nn.Linear(3, 2)

        def forward(self, x):
            return self.head(self.conv(x))  # the conv's 4-d output does not fit the Linear

    with pytest.raises(TraceError) as err:
        reconstruct(Outer(), (torch.randn(1, 3, 4, 4),))
    msg = str(err.value)
    assert "module 'head' (Linear)" in msg
    assert "return self.head(self.conv(x))" in msg
    assert "example inputs" in msg


def test_spec_for_another_model_names_first_mismatch():
    model = TinyUNet(16)
    _, spec = reconstruct(model, (torch.randn(1, 3, 16, 16),), densities=uniform(model, 0.2))
    with pytest.raises(SpecMismatchError) as err:
        apply_spec(TinyUNet(8), spec)
    assert "enc1.0" in str(err.value)

    class Other(nn.Module):
        def __init__(self):
            super().__init__()
            self.x = nn.Linear(2, 2)

    with pytest.raises(SpecMismatchError, match="does not have"):
        apply_spec(Other(), spec)


def test_corrupt_spec_file_gets_clear_error(tmp_path):
    bad = tmp_path / "spec.json"
    bad.write_text('{"modules": {"a": ')
    with pytest.raises(CheckpointError, match="Design spec .* is not valid JSON"):
        DesignSpec.load(bad)
    bad.write_text(json.dumps({"hello": 1}))
    with pytest.raises(CheckpointError, match="not a design spec"):
        DesignSpec.load(bad)
    with pytest.raises(CheckpointError, match="does not exist"):
        DesignSpec.load(tmp_path / "missing.json")


def test_bad_densities_are_rejected():
    model = TinyUNet()
    with pytest.raises(SdesignError, match="does not have"):
        reconstruct(model, (torch.randn(1, 3, 16, 16),), densities={"nope": 0.5})
    with pytest.raises(SdesignError, match=r"\(0, 1\]"):
        reconstruct(model, (torch.randn(1, 3, 16, 16),), densities={"out": 0.0})


def test_unknown_strategy_is_rejected():
    model = TinyUNet()
    with pytest.raises(ValueError, match="strategy"):
        reconstruct(model, (torch.randn(1, 3, 16, 16),), "median")


@torch.library.custom_op("sdtest::gain", mutates_args=())
def gain(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return x * w.mean(dim=1, keepdim=True)


@gain.register_fake
def _(x, w):
    return torch.empty_like(x)


class WithCustomOp(nn.Module):
    def __init__(self):
        super().__init__()
        self.feat = nn.Conv2d(3, 16, 3, padding=1)
        self.kern = nn.Conv2d(3, 9, 3, padding=1)
        self.out = nn.Conv2d(16, 3, 1)

    def forward(self, x):
        return self.out(gain(self.feat(x), self.kern(x)))


def test_custom_op_without_rule_is_pinned_and_with_rule_passes_through():
    model = WithCustomOp()
    x = torch.randn(1, 3, 8, 8)
    compact, spec = reconstruct(model, (x,), densities=uniform(model, 0.25))
    assert compact.feat.out_channels == 16  # unknown op: conservative
    assert any("gain" in n for n in spec.notes)
    with registered(OpKind(gain, channels=passthrough_rule(0, pinned_args=(1,)))):
        compact, spec = reconstruct(model, (x,), densities=uniform(model, 0.25))
    assert compact.feat.out_channels == compact.out.in_channels == 8
    assert compact.kern.out_channels == 9  # the op gives these channels fixed meaning
    assert compact(x).shape == x.shape


def test_keyword_defaults_trace_as_constants():
    class Extras(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 8, 1)
            self.b = nn.Conv2d(8, 3, 1)

        def forward(self, x, return_extras=False):
            h = self.a(x)
            out = self.b(h)
            if return_extras:
                return out, {"hidden": h}
            return out

    model = Extras()
    t = trace(model, (torch.randn(1, 3, 4, 4),))
    assert t.method == "lean"  # the defaults are traced as the constants they are
    compact, _ = reconstruct(model, (torch.randn(1, 3, 4, 4),), densities=uniform(model, 0.25))
    assert compact.a.out_channels == 4


def test_batch_of_one_with_batchnorm_on_1x1_maps_in_training_mode():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Flatten(), nn.Linear(8, 2)).train()
    compact, _ = reconstruct(model, (torch.randn(1, 3, 3, 3),), densities=uniform(model, 0.25))
    assert compact[0].out_channels == compact[1].num_features == 4
    assert model.training and compact.training  # modes are restored


def test_design_spec_alone_equals_the_spec_reconstruct_writes():
    import torchvision

    from sparsenet_design import design_spec

    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v3_small(num_classes=10)
    x = torch.randn(1, 3, 64, 64)
    dens = {name: 0.05 + 0.9 * (i % 7) / 7 for i, (name, _) in enumerate(prunable_layers(model))}
    alone = design_spec(model, x, "max", dens)
    _, spec = reconstruct(model, x, "max", dens)
    assert alone.modules == spec.modules and alone.params == spec.params and alone.attributes == spec.attributes
    assert alone.groups == spec.groups
    compact = apply_spec(torchvision.models.mobilenet_v3_small(num_classes=10), alone)
    assert compact(x).shape == (1, 10)
    assert sum(p.numel() for p in compact.parameters()) < sum(p.numel() for p in model.parameters())


class _FixedMix(nn.Module):
    """Mixes exactly 8 channels with a fixed matrix: its width cannot change."""

    def __init__(self):
        super().__init__()
        self.register_buffer("w", torch.eye(8))

    def forward(self, x):
        return torch.einsum("bchw,cd->bdhw", x, self.w)


class _WithFixedMix(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 1)
        self.mix = _FixedMix()
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        return self.head(self.mix(self.conv(x)))


def test_a_wrong_rule_is_repaired_by_pinning_the_module_that_fails():
    from sparsenet_design.kinds import LayerKind, registered

    wrong = LayerKind(_FixedMix, channels=passthrough_rule())  # wrong: the mix needs exactly 8 channels
    model, x = _WithFixedMix(), torch.randn(1, 3, 4, 4)
    with registered(wrong):
        compact, spec = reconstruct(model, (x,), densities=uniform(model, 0.1))
    assert compact(x).shape == (1, 2, 4, 4)
    assert compact.conv.out_channels == 8
    assert any("pinned 'mix'" in note for note in spec.notes)


def test_a_rebuild_that_cannot_be_repaired_names_module_class_line_and_cause(monkeypatch):
    import importlib

    from sparsenet_design.kinds import LayerKind, registered

    monkeypatch.setattr(importlib.import_module("sparsenet_design.rebuild.reconstruct"), "MAX_REPAIRS", 0)
    wrong = LayerKind(_FixedMix, channels=passthrough_rule())
    model, x = _WithFixedMix(), torch.randn(1, 3, 4, 4)
    with registered(wrong), pytest.raises(SdesignError) as info:
        reconstruct(model, (x,), densities=uniform(model, 0.1))
    message = str(info.value)
    assert "in module 'mix' (_FixedMix)" in message
    assert f"{__file__}:" in message and "RuntimeError" in message
    assert "Traceback" not in message and "\n" not in message
