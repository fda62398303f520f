"""The table of layer and op kinds: one object per kind, listed, overridden and
removed; subclasses with their own forward never half-match; functional calls
inside a traced-through forward are attributed to the module whose tensors they use."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sparsenet_design import reconstruct
from sparsenet_design.kinds import LayerKind, OpKind, all_kinds, function_kind, layer_kind, registered
from sparsenet_design.kinds.prunable import is_prunable, prunable_layers
from sparsenet_design.rebuild.resize import resize_module
from sparsenet_design.kinds.rules import passthrough_rule
from sparsenet_design.tracing.shape_formulas import shape_rule

pytestmark = pytest.mark.usefixtures("one_thread")


def _uniform(model, d):
    return {name: d for name, _ in prunable_layers(model)}


def test_every_stock_layer_class_is_claimed_by_exactly_one_builtin_kind():
    claims: dict = {}
    for kind in all_kinds():
        if isinstance(kind, LayerKind):
            for cls in kind.classes:
                claims.setdefault(cls, []).append(kind.name)
    for cls in (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.LayerNorm, nn.GroupNorm, nn.PReLU, nn.ReLU):
        assert len(claims[cls]) == 1, (cls, claims[cls])
    assert layer_kind(nn.Conv2d(3, 4, 1)) is layer_kind(nn.Conv1d(3, 4, 1))  # one conv kind, listed once


def test_a_kind_is_one_object_holding_rule_shape_tensors_and_prunability():
    conv = layer_kind(nn.Conv2d(3, 8, 3))
    assert conv.prunable and conv.leaf and conv.channels is not None
    assert conv.output_shape(nn.Conv2d(3, 8, 3), torch.empty(1, 3, 10, 10)) == (1, 8, 8, 8)
    assert conv.tensor_dims()["weight"] == {0: ("out_channels", False), 1: ("in_channels", True)}
    bn = layer_kind(nn.BatchNorm2d(4))
    assert not bn.prunable and bn.tensor_dims()["running_mean"] == {0: ("num_features", False)}


class _Mixer(nn.Module):
    """A leaf that needs exactly 8 channels."""

    def forward(self, x):
        return x * torch.arange(8.0).view(1, 8, 1, 1)


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 1)
        self.mix = _Mixer()
        self.b = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        return self.b(self.mix(self.a(x)))


def test_registered_overrides_a_builtin_kind_and_removal_brings_it_back():
    model, x = nn.Sequential(nn.Conv2d(3, 16, 1), nn.ReLU(), nn.Conv2d(16, 2, 1)), torch.randn(1, 3, 4, 4)
    pin_relu = LayerKind(nn.ReLU, name="pinned ReLU")  # no channel rule: what it touches is pinned
    builtin = layer_kind(nn.ReLU())
    with registered(pin_relu):
        assert layer_kind(nn.ReLU()) is pin_relu and pin_relu in all_kinds()
        compact, _ = reconstruct(model, (x,), densities=_uniform(model, 0.1))
        assert compact[0].out_channels == 16
    assert layer_kind(nn.ReLU()) is builtin and pin_relu not in all_kinds()
    compact, _ = reconstruct(model, (x,), densities=_uniform(model, 0.1))
    assert compact[0].out_channels < 16


def test_a_plugin_kind_makes_a_leaf_with_its_own_rule():
    model, x = _Net(), torch.randn(1, 3, 4, 4)
    compact, spec = reconstruct(model, (x,), densities=_uniform(model, 0.1))
    assert compact.a.out_channels == 8  # traced through: the constant 8 pins the channels
    with registered(LayerKind(_Mixer, channels=passthrough_rule())) as (kind,):
        assert layer_kind(_Mixer()) is kind and kind.leaf
        trusting, _ = reconstruct(model, (x,), densities=_uniform(model, 0.1), verify=False)
    assert trusting.a.out_channels < 8  # the (wrong) rule was used: one call, passing channels through
    with pytest.raises(RuntimeError):
        trusting(x)


def test_dotted_names_claim_a_class_without_importing_it():
    kind = LayerKind(f"{__name__}._Mixer", channels=passthrough_rule())
    assert kind.name == "_Mixer"
    with registered(kind):
        assert layer_kind(_Mixer()) is kind
    assert layer_kind(_Mixer()) is None


def test_an_op_kind_lists_its_functions_and_methods():
    def warp(x, k):
        return x * k.sum(1, keepdim=True)

    kind = OpKind(warp, methods=["my_method"], channels=passthrough_rule(0, pinned_args=(1,)))
    with registered(kind):
        assert function_kind(warp) is kind
        assert f"{__name__}" in repr(kind) or "warp" in repr(kind)
    assert function_kind(warp) is None
    with pytest.raises(ValueError):
        OpKind(channels=passthrough_rule())
    with pytest.raises(TypeError):
        from sparsenet_design.kinds import register_kind

        register_kind(object())


class _NormAct(nn.BatchNorm2d):
    """timm's BatchNormAct2d, reduced: batch norm, then an activation, in its own forward."""

    def forward(self, x):
        x = F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                         self.training, self.momentum or 0.0, self.eps)
        return F.relu(x)


class _PlainSubclass(nn.BatchNorm2d):
    pass


class _StdConv(nn.Conv2d):
    """A weight-standardised conv (timm's StdConv2d): its weight is computed from the parameter."""

    def forward(self, x):
        w = F.batch_norm(self.weight.reshape(1, self.out_channels, -1), None, None,
                         training=True, momentum=0.0, eps=1e-6).reshape_as(self.weight)
        return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)


def test_subclass_with_own_forward_matches_no_call_kind_but_keeps_its_tensor_kind():
    bn = layer_kind(nn.BatchNorm2d(4))
    assert layer_kind(_NormAct(4)) is None and shape_rule(_NormAct(4)) is None
    assert layer_kind(_NormAct(4), call=False) is bn
    assert layer_kind(_PlainSubclass(4)) is bn and shape_rule(_PlainSubclass(4)) is not None
    assert is_prunable(_StdConv(3, 4, 1)) and layer_kind(_StdConv(3, 4, 1)) is None
    new = resize_module(_NormAct(8), {"num_features": 3})
    assert type(new) is _NormAct and new.running_var.shape == (3,) and new.num_features == 3


class _Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = _StdConv(3, 16, 3, padding=1)
        self.bn1 = _NormAct(16)
        self.conv2 = nn.Conv2d(16, 16, 3, padding=1, groups=16)  # depthwise: follows bn1
        self.bn2 = _NormAct(16)
        self.head = nn.Conv2d(16, 4, 1)

    def forward(self, x):
        return self.head(self.bn2(self.conv2(self.bn1(self.conv1(x)))))


def test_functional_calls_in_a_traced_through_forward_resize_their_module():
    model, x = _Block().eval(), torch.randn(1, 3, 8, 8)
    compact, spec = reconstruct(model, (x,), densities={"conv1": 0.25, "conv2": 1.0, "head": 1.0})
    width = compact.conv1.out_channels
    assert width == 8  # ⌈√0.25·16⌉ from the standardised conv's own density: it proposed a width
    for bn in (compact.bn1, compact.bn2):
        assert type(bn) is _NormAct and bn.num_features == width
        assert all(t.shape == (width,) for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var))
    assert compact.conv2.groups == compact.conv2.in_channels == width
    assert spec.modules["bn1"]["widths"] == {"num_features": width}
    assert compact(x).shape == (1, 4, 8, 8)


def test_sdesign_kinds_lists_the_table_with_what_each_kind_provides():
    from click.testing import CliRunner

    from sparsenet_design.cli import main
    from sparsenet_design.kinds.listing import kind_rows

    rows = {row.name: row for row in kind_rows()}
    assert rows["Conv"].facts == ("channels", "shape", "resize", "prunable", "leaf")
    assert rows["Conv"].targets == ("nn.Conv1d", "nn.Conv2d", "nn.Conv3d")
    assert rows["InstanceNorm"].facts == ("channels", "resize", "leaf")  # runs: no shape formula
    assert "torch.cat" in rows["cat"].targets and "Tensor.view" in rows["view"].targets
    with registered(LayerKind(_Mixer, name="test mixer")):
        result = CliRunner().invoke(main, ["kinds", "--all"])
    assert result.exit_code == 0, result.output
    for name in ("Conv", "BatchNorm", "functional conv", "test mixer"):
        assert name in result.output


class _TiedLM(nn.Module):
    """Input and output embeddings share one matrix (GPT-2, BERT's MLM head)."""

    def __init__(self, vocab=50, dim=32):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.mix = nn.Linear(dim, dim)
        self.head = nn.Linear(dim, vocab, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, ids):
        return self.head(torch.relu(self.mix(self.embed(ids))))


def test_tied_weights_keep_one_width_and_stay_tied():
    model, ids = _TiedLM(), torch.randint(0, 50, (2, 7))
    compact, _ = reconstruct(model, (ids,), densities={"mix": 0.25, "head": 1.0})
    assert compact.head.weight is compact.embed.weight
    assert compact.embed.embedding_dim == compact.head.in_features == compact.mix.in_features < 32
    assert compact(ids).shape == (2, 7, 50)


def _conv1d_class():
    """A class spelled as transformers' ``Conv1D`` (weight stored (in, out)), without transformers."""

    class Conv1D(nn.Module):
        def __init__(self, nf, nx):
            super().__init__()
            self.nf, self.nx = nf, nx
            self.weight = nn.Parameter(torch.randn(nx, nf) * 0.02)
            self.bias = nn.Parameter(torch.zeros(nf))

        def forward(self, x):
            size_out = x.size()[:-1] + (self.nf,)
            return torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight).view(size_out)

    Conv1D.__module__, Conv1D.__qualname__ = "transformers.pytorch_utils", "Conv1D"
    return Conv1D


def test_a_kind_named_by_dotted_path_covers_transformers_conv1d():
    Conv1D = _conv1d_class()
    model = nn.Sequential(Conv1D(48, 16), nn.GELU(), Conv1D(16, 48))
    kind = layer_kind(model[0])
    assert kind is not None and kind.name == "TransposedLinear" and is_prunable(model[0])
    x = torch.randn(2, 5, 16)
    compact, spec = reconstruct(model, (x,), densities={"0": 0.25, "2": 0.25})
    assert (compact[0].nf, compact[0].weight.shape, compact[2].weight.shape) == (24, (16, 24), (24, 16))
    assert compact[0].weight.std() < 0.1 and torch.all(compact[0].bias == 0)  # initialised as the class does
    assert compact(x).shape == (2, 5, 16)


class _ScaledStdConv(nn.Conv2d):
    """timm's ScaledStdConv2d: a per-output-channel gain the Conv kind does not know."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.gain = nn.Parameter(torch.ones(self.out_channels, 1, 1, 1))

    def forward(self, x):
        w = F.batch_norm(self.weight.reshape(1, self.out_channels, -1), None, None,
                         weight=self.gain.view(-1), training=True, momentum=0.0, eps=1e-6).reshape_as(self.weight)
        return F.conv2d(x, w, self.bias, self.stride, self.padding)


def test_a_tensor_the_kind_does_not_know_is_resized_with_its_module():
    model = nn.Sequential(_ScaledStdConv(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 4, 1))
    x = torch.randn(1, 3, 8, 8)
    compact, _ = reconstruct(model, (x,), densities={"0": 0.25, "2": 1.0})
    assert compact[0].out_channels == 8 and compact[0].gain.shape == (8, 1, 1, 1)
    assert compact(x).shape == (1, 4, 8, 8)


class _RelativePositions(nn.Module):
    """ConViT-style: a non-persistent buffer the forward fills from the token count."""

    def __init__(self, dim=16):
        super().__init__()
        self.proj = nn.Linear(dim, dim)
        self.pos = nn.Linear(3, dim)
        self.out = nn.Linear(dim, 4)
        self.register_buffer("rel", torch.zeros(1, 1, 3), persistent=False)

    def forward(self, x):
        if self.rel.shape[1] != x.shape[1]:
            self.rel = torch.rand(1, x.shape[1], 3)
        return self.out(self.proj(x) + self.pos(self.rel))


def test_non_persistent_buffers_are_data_not_weights():
    model, x = _RelativePositions(), torch.randn(1, 5, 16)
    model(x)  # the buffer now has the run's shape
    compact, spec = reconstruct(model, (x,), densities={"proj": 0.25, "pos": 0.25, "out": 1.0})
    assert "rel" not in spec.params and compact.pos.in_features == 3
    assert compact.proj.out_features == compact.pos.out_features < 16
    from sparsenet_design import apply_spec

    assert apply_spec(_RelativePositions(), spec)(x).shape == (1, 5, 4)
