"""The paper's loss terms against direct computations."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sparsenet_design.errors import CheckpointError
from sdesign_adacof.losses import (InterpolationLoss, build_loss, charbonnier, load_vgg_perceptual,
                                   total_variation)


def test_charbonnier_matches_formula():
    torch.manual_seed(0)
    a, b = torch.rand(2, 3, 5, 6), torch.rand(2, 3, 5, 6)
    d = (a - b).numpy().astype(np.float64)
    expected = np.mean(np.sqrt(d * d + 1e-6))
    assert charbonnier(a, b).item() == pytest.approx(expected, rel=1e-6)
    assert charbonnier(a, a).item() == pytest.approx(1e-3, rel=1e-6)  # ε at zero error


def test_total_variation_of_constant_and_ramp():
    const = torch.full((1, 25, 4, 5), 3.0)
    assert total_variation([const]).item() == pytest.approx(2e-3, rel=1e-5)
    ramp = torch.arange(5.0).view(1, 1, 1, 5).expand(1, 1, 4, 5) * 0.5  # dx = 0.5, dy = 0
    expected = math.sqrt(0.25 + 1e-6) + 1e-3
    assert total_variation([ramp]).item() == pytest.approx(expected, rel=1e-6)
    # (alpha, beta) pairs as a model returns them, nested
    pairs = [(ramp, const), (const, ramp)]
    assert total_variation(pairs).item() == pytest.approx(2 * expected + 2 * 2e-3, rel=1e-6)
    with pytest.raises(ValueError):
        total_variation([])


def test_tv_gradient_flows_to_offsets():
    alpha = torch.randn(1, 25, 6, 6, requires_grad=True)
    total_variation([(alpha, alpha * 2)]).backward()
    assert alpha.grad is not None and alpha.grad.abs().sum() > 0


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    """A randomly initialised VGG16 feature stack saved like torchvision's file."""
    from torchvision.models import vgg

    torch.manual_seed(0)
    features = vgg.make_layers(vgg.cfgs["D"])
    path = tmp_path_factory.mktemp("vgg") / "vgg16.pth"
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, path)
    return features, path


def test_perceptual_uses_conv4_3_features(vgg_file):
    features, path = vgg_file
    perceptual = load_vgg_perceptual(path)
    pred, gt = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    # independent: hook the output of the ReLU right after conv4_3 (the 10th conv)
    convs = [i for i, m in enumerate(features) if isinstance(m, torch.nn.Conv2d)]
    relu4_3 = convs[9] + 1
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    feats = {}

    def run(x, key):
        h = (x - mean) / std
        for i, layer in enumerate(features):
            h = layer(h.clone())
            if i == relu4_3:
                feats[key] = h
                return

    run(pred, "p")
    run(gt, "g")
    expected = (feats["p"] - feats["g"]).pow(2).mean()
    assert perceptual(pred, gt).item() == pytest.approx(expected.item(), rel=1e-4)
    assert perceptual(gt, gt).item() == pytest.approx(0.0, abs=1e-10)


def test_weighted_total_and_parts(vgg_file):
    _, path = vgg_file
    loss = build_loss(path)
    pred = torch.rand(1, 3, 32, 32, requires_grad=True)
    gt = torch.rand(1, 3, 32, 32)
    offsets = [(torch.randn(1, 25, 32, 32), torch.randn(1, 25, 32, 32))]
    total = loss(pred, gt, offsets)
    t = loss.last_terms
    assert total.item() == pytest.approx(t["charbonnier"] + 0.005 * t["perceptual"] + 0.01 * t["tv"], rel=1e-5)
    total.backward()
    assert pred.grad.abs().sum() > 0


def test_missing_vgg_weights_is_a_clear_error_unless_allowed(tmp_path, monkeypatch):
    monkeypatch.delenv("SDESIGN_VGG16_WEIGHTS", raising=False)
    with pytest.raises(CheckpointError, match="--vgg-weights.*--no-perceptual"):
        build_loss()
    with pytest.raises(CheckpointError, match="does not exist"):
        build_loss(tmp_path / "nope.pth")
    with pytest.warns(UserWarning, match="without the VGG16"):
        loss = build_loss(allow_no_perceptual=True)
    pred, gt = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)
    offsets = [(torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8))]
    expected = charbonnier(pred, gt) + 0.01 * total_variation(offsets)
    assert loss(pred, gt, offsets).item() == pytest.approx(expected.item(), rel=1e-6)
    assert "perceptual" not in loss.last_terms


def test_wrong_vgg_file(tmp_path):
    torch.save({"classifier.0.weight": torch.zeros(2, 2)}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="features"):
        load_vgg_perceptual(tmp_path / "bad.pth")
    torch.save({"features.0.weight": torch.zeros(2, 2)}, tmp_path / "bad2.pth")
    with pytest.raises(CheckpointError, match="do not fit"):
        load_vgg_perceptual(tmp_path / "bad2.pth")


def test_loss_without_offsets_or_perceptual():
    loss = InterpolationLoss(None, 0.0, 0.01)
    a, b = torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 4)
    assert loss(a, b).item() == pytest.approx(charbonnier(a, b).item())
