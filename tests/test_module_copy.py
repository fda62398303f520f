"""copy_module must behave like copy.deepcopy."""
from __future__ import annotations

import copy

import torch
import torchvision
from torch import nn

from sparsenet_design.rebuild.module_copy import copy_module


def _same_state(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_copy_equals_deepcopy_and_shares_no_tensor():
    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v3_small(num_classes=7).train()
    ours, ref = copy_module(model), copy.deepcopy(model)
    _same_state(ours, ref)
    originals = {t.data_ptr() for t in list(model.parameters()) + list(model.buffers())}
    assert not originals & {t.data_ptr() for t in list(ours.parameters()) + list(ours.buffers()) if t.numel()}
    assert [type(m) for m in ours.modules()] == [type(m) for m in ref.modules()]
    assert [n for n, _ in ours.named_modules()] == [n for n, _ in model.named_modules()]
    assert ours.training and all(m.training for m in ours.modules())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(ours.eval()(x), ref.eval()(x))
    # copies are independent: changing the copy leaves the model alone
    with torch.no_grad():
        next(ours.parameters()).add_(1)
    assert not torch.equal(next(ours.parameters()), next(model.parameters()))


def test_tied_weights_and_shared_modules_stay_tied():
    shared = nn.Linear(4, 4)
    model = nn.Sequential(shared, nn.ReLU(), shared, nn.Linear(4, 4))
    model[3].weight = model[0].weight
    out = copy_module(model)
    assert out[0] is out[2]
    assert out[3].weight is out[0].weight
    assert out[0] is not shared


def test_memo_entries_replace_parts_of_the_tree():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Conv2d(8, 4, 1))
    replacement = nn.Conv2d(3, 5, 3)
    out = copy_module(model, {id(model[0]): replacement})
    assert out[0] is replacement
    assert out[2] is not model[2] and torch.equal(out[2].weight, model[2].weight)


def test_hooks_and_mutable_attributes_are_copied_not_shared():
    calls = []
    model = nn.Sequential(nn.Linear(3, 3))
    model[0].register_forward_hook(lambda m, i, o: calls.append(1))
    model[0].notes = ["a"]
    model[0].scratch = torch.zeros(2)
    out = copy_module(model)
    out(torch.randn(1, 3))
    assert calls == [1]  # the hook came along
    out[0].notes.append("b")
    assert model[0].notes == ["a"]
    assert out[0].scratch is not model[0].scratch


def test_modules_with_their_own_copy_logic_use_deepcopy():
    class Custom(nn.Module):
        def __init__(self):
            super().__init__()
            self.copied = False

        def __deepcopy__(self, memo):
            new = Custom()
            new.copied = True
            return new

    model = nn.Sequential(Custom(), nn.LSTM(3, 4))
    out = copy_module(model)
    assert out[0].copied
    y, _ = out[1](torch.randn(2, 1, 3))  # the LSTM's flat weights were rebuilt by its own __setstate__
    y_ref, _ = model[1](torch.randn(2, 1, 3) * 0 + 0)  # runs too
    assert y.shape == y_ref.shape == (2, 1, 4)
    _same_state(out[1], model[1])
