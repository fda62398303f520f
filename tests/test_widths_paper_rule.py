"""On a plain chain of convolutions the generalised rule is exactly the paper's:
new width of the layer-l / layer-(l+1) interface = min (or max) of
⌈√d_l · C_l_out⌉ and ⌈√d_{l+1} · C_{l+1}_in⌉."""
import math

import pytest
import torch
from torch import nn

from sparsenet_design import reconstruct
from sparsenet_design.design.widths import proposed_slice


class Chain(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.conv3 = nn.Conv2d(64, 64, 3, padding=1)
        self.conv4 = nn.Conv2d(64, 10, 3, padding=1)

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        x = torch.relu(self.conv3(x))
        return self.conv4(x)


DENSITIES = {"conv1": 0.25, "conv2": 0.09, "conv3": 0.5, "conv4": 0.16}

# Worked by hand from the paper's formula:
#   conv1/conv2 (32): conv1 ⌈0.5·32⌉ = 16, conv2 ⌈0.3·32⌉ = ⌈9.6⌉ = 10
#   conv2/conv3 (64): conv2 ⌈0.3·64⌉ = ⌈19.2⌉ = 20, conv3 ⌈0.7071·64⌉ = ⌈45.25⌉ = 46
#   conv3/conv4 (64): conv3 46, conv4 ⌈0.4·64⌉ = ⌈25.6⌉ = 26
EXPECTED = {
    "min": (10, 20, 26),
    "max": (16, 46, 46),
    "mean": (13, 33, 36),
}


@pytest.mark.parametrize("strategy", ["min", "max", "mean"])
def test_chain_matches_paper_formula(strategy):
    model = Chain()
    compact, spec = reconstruct(model, (torch.randn(1, 3, 8, 8),), strategy, densities=DENSITIES)
    a, b, c = EXPECTED[strategy]
    assert (compact.conv1.in_channels, compact.conv1.out_channels) == (3, a)
    assert (compact.conv2.in_channels, compact.conv2.out_channels) == (a, b)
    assert (compact.conv3.in_channels, compact.conv3.out_channels) == (b, c)
    assert (compact.conv4.in_channels, compact.conv4.out_channels) == (c, 10)
    # the spec records the same numbers
    assert spec.modules["conv2"]["widths"] == {"in_channels": a, "out_channels": b}
    assert spec.strategy == strategy


def test_chain_formula_independent_computation():
    """The same numbers from a direct, independent implementation of the paper's rule."""
    widths = [(3, 32), (32, 64), (64, 64), (64, 10)]
    d = [DENSITIES[f"conv{i + 1}"] for i in range(4)]
    for strategy, pick in (("min", min), ("max", max)):
        expected = []
        for l in range(3):
            out_l = math.ceil(math.sqrt(d[l]) * widths[l][1] - 1e-9)
            in_next = math.ceil(math.sqrt(d[l + 1]) * widths[l + 1][0] - 1e-9)
            expected.append(pick(out_l, in_next))
        compact, _ = reconstruct(Chain(), (torch.randn(1, 3, 8, 8),), strategy, densities=DENSITIES)
        got = [compact.conv1.out_channels, compact.conv2.out_channels, compact.conv3.out_channels]
        assert got == expected


def test_params_follow_density_roughly():
    """A layer whose neighbours agree keeps about d of its parameters."""
    model = Chain()
    dens = {k: 0.25 for k in DENSITIES}
    compact, _ = reconstruct(model, (torch.randn(1, 3, 8, 8),), "min", densities=dens)
    w0 = model.conv3.weight.numel()
    w1 = compact.conv3.weight.numel()
    assert w1 == (64 // 2) * (64 // 2) * 9
    assert abs(w1 / w0 - 0.25) < 1e-9


def test_proposed_slice_is_ceil_of_sqrt_density():
    assert proposed_slice(0.25, 64) == 32  # exact, not pushed to 33 by rounding
    assert proposed_slice(0.09, 32) == 10
    assert proposed_slice(1.0, 7) == 7
    assert proposed_slice(1e-9, 64) == 1  # floor of one channel


def test_measured_densities_are_used_when_not_given():
    model = Chain()
    with torch.no_grad():
        # conv2 keeps a quarter of its weights: its out channels 0..15 only
        model.conv2.weight[16:] = 0
    compact, spec = reconstruct(model, (torch.randn(1, 3, 8, 8),), "max")
    assert spec.densities["conv2"] == pytest.approx(0.25)
    # conv2 proposes ⌈0.5·64⌉ = 32 for its outputs; conv3 is dense (64) → max = 64
    assert compact.conv2.out_channels == 64
    compact, _ = reconstruct(model, (torch.randn(1, 3, 8, 8),), "min")
    assert compact.conv2.out_channels == 32
