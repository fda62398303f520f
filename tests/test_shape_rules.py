"""Shape rules (layers sized by formula in the shape pass) against running the layers."""
from __future__ import annotations

import pytest
import torch
import torch.fx as fx
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from sparsenet_design.tracing.shape_formulas import output_like, shape_rule
from sparsenet_design.tracing.trace import trace


def _check(module: nn.Module, x: torch.Tensor) -> None:
    module.eval()
    with torch.no_grad():
        expected = module(x).shape
    got = output_like(module, x)
    assert got is not None, f"{module} has no rule for input {tuple(x.shape)}"
    assert got.shape == expected
    assert got.dtype == x.dtype


@settings(max_examples=150, deadline=None)
@given(
    dims=st.integers(1, 3),
    groups=st.sampled_from([1, 2]),
    kernel=st.integers(1, 4),
    stride=st.integers(1, 3),
    padding=st.one_of(st.integers(0, 2), st.sampled_from(["same", "valid"])),
    dilation=st.integers(1, 2),
    mode=st.sampled_from(["zeros", "reflect", "replicate", "circular"]),
    size=st.integers(7, 12),
    batched=st.booleans(),
)
def test_conv_rule_matches_the_layer(dims, groups, kernel, stride, padding, dilation, mode, size, batched):
    if padding == "same":
        stride = 1  # torch refuses 'same' with stride > 1
    conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[dims - 1](
        4, 6, kernel, stride=stride, padding=padding, dilation=dilation, groups=groups, padding_mode=mode)
    shape = (4,) + (size,) * dims
    _check(conv, torch.randn((2,) + shape if batched else shape))


@settings(max_examples=100, deadline=None)
@given(
    dims=st.integers(1, 3),
    kernel=st.integers(1, 4),
    stride=st.integers(1, 3),
    padding=st.integers(0, 2),
    dilation=st.integers(1, 2),
    extra=st.integers(0, 2),
    size=st.integers(3, 6),
)
def test_transposed_conv_rule_matches_the_layer(dims, kernel, stride, padding, dilation, extra, size):
    output_padding = extra % max(stride, dilation)  # torch's constraint
    conv = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)[dims - 1](
        4, 6, kernel, stride=stride, padding=padding, dilation=dilation, output_padding=output_padding)
    x = torch.randn((1, 4) + (size,) * dims)
    try:
        with torch.no_grad():
            conv(x)
    except RuntimeError:
        assert output_like(conv, x) is None  # the layer's own error must still come
        return
    _check(conv, x)


@pytest.mark.parametrize("module, shape", [
    (nn.Linear(5, 7), (3, 5)),
    (nn.Linear(5, 7), (2, 4, 5)),
    (nn.Linear(5, 7), (5,)),
    (nn.BatchNorm1d(5), (3, 5)),
    (nn.BatchNorm1d(5), (3, 5, 9)),
    (nn.BatchNorm2d(5), (2, 5, 4, 4)),
    (nn.BatchNorm3d(5), (2, 5, 3, 3, 3)),
    (nn.GroupNorm(2, 6), (2, 6, 5, 5)),
    (nn.LayerNorm(8), (2, 3, 8)),
    (nn.LayerNorm([4, 8]), (2, 4, 8)),
    (nn.ReLU6(), (2, 3, 4)),
    (nn.Hardswish(), (2, 3)),
    (nn.Dropout2d(), (2, 3, 4, 4)),
    (nn.Identity(), (2, 3)),
])
def test_other_rules_match_the_layer(module, shape):
    _check(module, torch.randn(shape))


@pytest.mark.parametrize("module, shape", [
    (nn.Conv2d(4, 6, 3), (1, 5, 8, 8)),  # wrong channel count
    (nn.Conv2d(4, 6, 5), (1, 4, 3, 3)),  # input smaller than the kernel
    (nn.Conv2d(4, 6, 3), (1, 1, 4, 8, 8)),  # wrong rank
    (nn.Linear(5, 7), (3, 6)),
    (nn.BatchNorm2d(5), (2, 5)),  # BatchNorm2d on a 2-d input
    (nn.BatchNorm1d(5), (2, 4)),
    (nn.LayerNorm(8), (2, 7)),
    (nn.ConvTranspose2d(4, 6, 3), (1, 5, 4, 4)),
])
def test_inputs_that_do_not_fit_run_the_layer(module, shape):
    """No stand-in where the real layer raises: the user gets that layer's error."""
    x = torch.randn(shape)
    with pytest.raises((RuntimeError, ValueError)):
        module(x)
    assert output_like(module, x) is None


def test_subclass_with_its_own_forward_runs():
    class Doubling(nn.Conv2d):
        def forward(self, x):
            return torch.cat([super().forward(x)] * 2, dim=1)

    class Plain(nn.Conv2d):
        pass

    assert shape_rule(Doubling(3, 4, 3)) is None
    assert shape_rule(Plain(3, 4, 3)) is not None


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU6())
        self.up = nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1)
        self.head = nn.Linear(4, 10)

    def forward(self, x):
        y = self.up(self.stem(x))
        y = torch.cat([y, x[:, :1]], dim=1)[:, :4]
        return self.head(y.mean((2, 3)))


@pytest.mark.parametrize("size", [16, 600])  # small: real pass; large: meta pass
def test_shape_pass_equals_a_plain_run(size):
    model = _Net().eval()
    x = torch.randn(1, 3, size, size)
    traced = trace(model, (x,))
    plain = fx.Interpreter(model, graph=traced.graph)
    expected = {}
    orig_run_node = plain.run_node

    def record(n):
        out = orig_run_node(n)
        expected[n] = tuple(out.shape) if isinstance(out, torch.Tensor) else None
        return out

    plain.run_node = record
    with torch.no_grad():
        plain.run(x)
    for node in traced.graph.nodes:
        value = node.meta.get("value")
        if isinstance(value, torch.Tensor):
            assert tuple(value.shape) == expected[node], node


def test_sized_layers_skip_compute_but_not_the_channel_check():
    from sparsenet_design.tracing.shapes import sized_layers

    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 5))
    x = torch.randn(2, 3, 4, 4)
    with torch.no_grad(), sized_layers(model):
        assert "forward" in model[0].__dict__
        out = model(x)
    assert out.shape == (2, 5)
    assert all("forward" not in m.__dict__ for m in model.modules())  # restored
    with torch.no_grad():
        assert model(x).shape == (2, 5)

    # a rebuilt conv whose weight no longer fits its input must still fail
    model[0].weight = nn.Parameter(torch.randn(8, 2, 3, 3))
    with pytest.raises(RuntimeError), torch.no_grad(), sized_layers(model):
        model(x)
    assert all("forward" not in m.__dict__ for m in model.modules())
