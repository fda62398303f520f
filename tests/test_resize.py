"""resize_module: the fast fresh initialisation matches reset_parameters; resized copies
share no tensor with their source."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from sparsenet_design import reconstruct
from sparsenet_design.kinds import layer_kind
from sparsenet_design.rebuild.resize import fresh_init, resize_module

STOCK_LAYERS = [
    nn.Conv1d(4, 6, 3),
    nn.Conv2d(6, 8, 3, groups=2),
    nn.Conv2d(8, 8, 3, groups=8, bias=False),
    nn.Conv2d(3, 5, (1, 7), padding=(0, 3)),
    nn.Conv3d(2, 4, 2),
    nn.ConvTranspose1d(4, 6, 3),
    nn.ConvTranspose2d(6, 4, 2, stride=2, groups=2),
    nn.ConvTranspose2d(5, 3, 3, bias=False),
    nn.ConvTranspose3d(2, 4, 2),
    nn.Linear(7, 3),
    nn.Linear(1, 5, bias=False),
    # in float64 the bounds' last bits show: kaiming_uniform_'s arithmetic, not 1/√fan_in
    nn.Conv2d(4, 6, 3, dtype=torch.float64),
    nn.ConvTranspose2d(4, 6, 3, groups=2, dtype=torch.float64),
    nn.Linear(7, 3, dtype=torch.float64),
    nn.BatchNorm1d(5),
    nn.BatchNorm2d(6, affine=False),
    nn.BatchNorm2d(6, track_running_stats=False),
    nn.BatchNorm3d(3),
    nn.SyncBatchNorm(4),
    nn.InstanceNorm1d(4),
    nn.InstanceNorm2d(4, affine=True, track_running_stats=True),
    nn.InstanceNorm3d(3, affine=True),
    nn.LayerNorm(6),
    nn.LayerNorm([3, 4], bias=False),
    nn.LayerNorm(5, elementwise_affine=False),
    nn.GroupNorm(2, 6),
    nn.GroupNorm(3, 6, affine=False),
]


def _scramble(module: nn.Module) -> None:
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            t.copy_(torch.randint_like(t, 0, 7) if not t.is_floating_point() else torch.randn_like(t))


def _bits(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("layer", STOCK_LAYERS, ids=lambda m: repr(m))
def test_fast_fresh_init_is_bit_identical_to_reset_parameters(layer):
    assert layer_kind(layer, call=False) is not None
    _scramble(layer)
    ours, ref = copy.deepcopy(layer), copy.deepcopy(layer)
    torch.manual_seed(3)
    fresh_init(ours)
    after_ours = torch.rand(1)  # the same number of random draws
    torch.manual_seed(3)
    ref.reset_parameters()
    after_ref = torch.rand(1)
    got, want = _bits(ours), _bits(ref)
    assert got.keys() == want.keys()
    for k in want:
        assert got[k].dtype == want[k].dtype and torch.equal(got[k], want[k]), k
    assert torch.equal(after_ours, after_ref)


def test_subclasses_keep_their_own_reset_parameters():
    class Custom(nn.Conv2d):
        def reset_parameters(self):
            nn.init.constant_(self.weight, 0.5)

    new = resize_module(Custom(4, 8, 3), {"out_channels": 6, "in_channels": 2})
    assert new.weight.shape == (6, 2, 3, 3) and torch.all(new.weight == 0.5)


def test_zero_width_layers_fall_back_to_reset_parameters():
    with pytest.warns(UserWarning, match="zero-element"):
        new = resize_module(nn.Linear(4, 3), {"in_features": 0})
    assert new.weight.shape == (3, 0)


@pytest.mark.parametrize("fresh", [True, False])
def test_resized_copy_shares_no_tensor_with_its_source(fresh):
    bn = nn.BatchNorm2d(8)
    bn.num_batches_tracked += 5
    new = resize_module(bn, {"num_features": 4}, fresh=fresh)
    assert int(bn.num_batches_tracked) == 5
    assert int(new.num_batches_tracked) == (0 if fresh else 5)
    source = {t.data_ptr() for t in list(bn.parameters()) + list(bn.buffers())}
    assert not source & {t.data_ptr() for t in list(new.parameters()) + list(new.buffers())}


def test_reconstruct_leaves_batch_norm_counters_alone():
    model = nn.Sequential(nn.Conv2d(3, 16, 3), nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 4, 1))
    model[1].num_batches_tracked += 7
    compact, _ = reconstruct(model, torch.randn(1, 3, 8, 8), densities={"0": 0.25, "3": 1.0})
    assert compact[1].num_features < 16
    assert int(model[1].num_batches_tracked) == 7 and int(compact[1].num_batches_tracked) == 0
    compact[1].num_batches_tracked += 1
    assert int(model[1].num_batches_tracked) == 7


@pytest.mark.parametrize("cls", [nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.InstanceNorm2d, nn.SyncBatchNorm])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("track", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fresh_batch_norm_equals_a_new_layer_of_that_width(cls, affine, track, dtype):
    source = cls(12, eps=1e-3, momentum=0.3, affine=affine, track_running_stats=track, dtype=dtype)
    with torch.no_grad():
        for t in list(source.parameters()) + list(source.buffers()):
            t.add_(3)  # trained values, which a fresh layer must not keep
    source.weight.requires_grad_(False) if affine else None
    new = resize_module(source, {"num_features": 5}, fresh=True)
    reference = cls(5, eps=1e-3, momentum=0.3, affine=affine, track_running_stats=track, dtype=dtype)
    assert new.state_dict().keys() == reference.state_dict().keys()
    for key, value in reference.state_dict().items():
        assert torch.equal(new.state_dict()[key], value) and new.state_dict()[key].dtype == value.dtype
    assert [p.requires_grad for p in new.parameters()] == [p.requires_grad for p in source.parameters()]
    assert (new.num_features, new.eps, new.momentum) == (5, 1e-3, 0.3)


def test_batch_norm_whose_flags_were_changed_takes_the_general_path():
    bn = nn.BatchNorm2d(8)
    bn.track_running_stats = False  # buffers still there: reset_parameters leaves them alone
    with torch.no_grad():
        bn.running_mean.fill_(2.0)
    new = resize_module(bn, {"num_features": 4}, fresh=True)
    assert torch.equal(new.running_mean, torch.full((4,), 2.0))


class _ScaledConv(nn.Conv2d):
    """A layer whose reset_parameters leaves one of its buffers alone."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register_buffer("scale", torch.arange(float(self.out_channels)))


def test_fresh_init_never_leaves_uninitialised_memory():
    from sparsenet_design.kinds import LayerKind, registered

    kind = LayerKind(_ScaledConv, tensors={"weight": {0: "out_channels", 1: ("in_channels", True)},
                                           "bias": {0: "out_channels"}, "scale": {0: "out_channels"}})
    with registered(kind):
        new = resize_module(_ScaledConv(3, 8, 1), {"out_channels": 4}, fresh=True)
    assert torch.equal(new.scale, torch.arange(4.0))  # the kept channels, not whatever memory held
