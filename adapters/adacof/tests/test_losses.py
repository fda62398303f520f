"""The loss terms against direct computations: the published recipe (default)
and the paper's equations (options), read back term by term."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sdesign_adacof import AdaCoF
from sdesign_adacof.losses import (InterpolationLoss, build_loss, charbonnier, g_spatial, load_vgg_perceptual,
                                   total_variation)
from sparsenet_design.plugin_api import CheckpointError, SdesignError

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


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


def _charb_mean(x: np.ndarray) -> float:
    return float(np.mean(np.sqrt(x * x + 1e-6)))


def g_spatial_by_hand(extras) -> float:
    """The published smoothness term, from its description, in numpy float64:
    for α1, β1, α2, β2, m = mean over the F² channels of W·α; Charbonnier of
    the differences of horizontal and of vertical neighbours of m."""
    total = 0.0
    for weight, (alpha, beta) in zip(extras["weights"], extras["offsets"]):
        w = weight.detach().double().numpy()
        for offset in (alpha, beta):
            m = (w * offset.detach().double().numpy()).mean(axis=1)
            total += _charb_mean(m[:, :, :-1] - m[:, :, 1:]) + _charb_mean(m[:, :-1, :] - m[:, 1:, :])
    return total


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    """A randomly initialised VGG16 feature stack saved like torchvision's file."""
    from torchvision.models import vgg

    torch.manual_seed(0)
    features = vgg.make_layers(vgg.cfgs["D"])
    path = tmp_path_factory.mktemp("vgg") / "vgg16.pth"
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, path)
    return features, path


def vgg_features_by_hand(features, x, after_relu: bool, normalise: bool):
    """Run the stack layer by layer up to the 10th conv (conv4_3), or its ReLU."""
    convs = [i for i, m in enumerate(features) if isinstance(m, torch.nn.Conv2d)]
    stop = convs[9] + (1 if after_relu else 0)
    h = (x - MEAN) / STD if normalise else x
    for i, layer in enumerate(features):
        h = layer(h.clone())
        if i == stop:
            return h
    raise AssertionError("conv4_3 not found")


@pytest.mark.parametrize("variant,after_relu,normalise", [("published", False, False), ("imagenet", True, True)])
def test_perceptual_variants(vgg_file, variant, after_relu, normalise):
    features, path = vgg_file
    perceptual = load_vgg_perceptual(path, variant)
    pred, gt = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        expected = (vgg_features_by_hand(features, pred, after_relu, normalise)
                    - vgg_features_by_hand(features, gt, after_relu, normalise)).pow(2).mean()
    assert perceptual(pred, gt).item() == pytest.approx(expected.item(), rel=1e-4)
    assert perceptual(gt, gt).item() == pytest.approx(0.0, abs=1e-10)
    assert len(perceptual.features) == (23 if after_relu else 22)


def _tiny_adacof(seed=0):
    torch.manual_seed(seed)
    widths = {n: (8, 8, 8) for n in ("conv1", "conv2", "conv3", "conv4", "conv5", "deconv5", "deconv4", "deconv3",
                                     "deconv2", "weight1", "alpha1", "beta1", "weight2", "alpha2", "beta2",
                                     "occlusion")}
    return AdaCoF(5, 1, widths=widths)


def test_published_loss_terms_read_back(vgg_file):
    """build_loss() is the published recipe: Charbonnier + 0.005 · conv4_3
    (before ReLU, raw input) + 0.01 · g_Spatial; every term read back."""
    features, path = vgg_file
    loss = build_loss(path)
    model = _tiny_adacof()
    f0, gt, f1 = (torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(i)) for i in range(3))
    pred, extras = model(f0, f1, return_extras=True)
    total = loss(pred, gt, extras)
    t = loss.last_terms
    assert set(t) == {"charbonnier", "perceptual", "g_spatial", "total"}
    d = (pred - gt).detach().double().numpy()
    assert t["charbonnier"] == pytest.approx(_charb_mean(d), rel=1e-5)
    with torch.no_grad():
        p = (vgg_features_by_hand(features, pred, False, False)
             - vgg_features_by_hand(features, gt, False, False)).pow(2).mean().item()
    assert t["perceptual"] == pytest.approx(p, rel=1e-4)
    assert t["g_spatial"] == pytest.approx(g_spatial_by_hand(extras), rel=1e-5)
    assert t["total"] == pytest.approx(total.item()) == pytest.approx(
        t["charbonnier"] + 0.005 * t["perceptual"] + 0.01 * t["g_spatial"], rel=1e-6)
    total.backward()
    assert model.unet.alpha1[-1].weight.grad.abs().sum() > 0


def test_paper_equations_as_options(vgg_file):
    """smoothness='tv' is the paper's eq. 9 on all F² raw offset maps;
    perceptual='imagenet' the relu4_3 reading on normalised input."""
    features, path = vgg_file
    loss = build_loss(path, smoothness="tv", perceptual="imagenet")
    model = _tiny_adacof(1)
    f0, gt, f1 = (torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(i)) for i in range(3))
    pred, extras = model(f0, f1, return_extras=True)
    loss(pred, gt, extras)
    t = loss.last_terms
    assert set(t) == {"charbonnier", "perceptual", "tv", "total"}
    by_hand = 0.0
    for alpha, beta in extras["offsets"]:
        for m in (alpha, beta):
            a = m.detach().double().numpy()
            by_hand += _charb_mean(a[..., :, 1:] - a[..., :, :-1]) + _charb_mean(a[..., 1:, :] - a[..., :-1, :])
    assert t["tv"] == pytest.approx(by_hand, rel=1e-5)
    with torch.no_grad():
        p = (vgg_features_by_hand(features, pred, True, True)
             - vgg_features_by_hand(features, gt, True, True)).pow(2).mean().item()
    assert t["perceptual"] == pytest.approx(p, rel=1e-4)
    assert g_spatial(extras).item() == pytest.approx(g_spatial_by_hand(extras), rel=1e-5)


def test_g_spatial_needs_the_extras():
    loss = InterpolationLoss(None, 0.0, 0.01, smoothness="g_spatial")
    pred, gt = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)
    with pytest.raises(SdesignError, match="extras dict"):
        loss(pred, gt, [(torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8))])
    with pytest.raises(SdesignError, match="Unknown smoothness"):
        InterpolationLoss(smoothness="laplacian")
    with pytest.raises(SdesignError, match="Unknown perceptual variant"):
        build_loss(perceptual="relu5_3", allow_no_perceptual=True)


def test_missing_vgg_weights_is_a_clear_error_unless_allowed(tmp_path, monkeypatch):
    monkeypatch.delenv("SDESIGN_VGG16_WEIGHTS", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(CheckpointError, match="vgg16-397923af.pth.*--vgg-weights.*--no-perceptual") as info:
        build_loss()
    assert str(tmp_path / "hub" / "checkpoints") in str(info.value)
    with pytest.raises(CheckpointError, match="does not exist"):
        build_loss(tmp_path / "nope.pth")
    with pytest.warns(UserWarning, match="without the VGG16"):
        loss = build_loss(allow_no_perceptual=True, smoothness="tv")
    pred, gt = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)
    offsets = [(torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8))]
    expected = charbonnier(pred, gt) + 0.01 * total_variation(offsets)
    assert loss(pred, gt, offsets).item() == pytest.approx(expected.item(), rel=1e-6)
    assert "perceptual" not in loss.last_terms


def test_vgg_weights_found_in_the_hub_cache_or_downloaded_there(tmp_path, monkeypatch, vgg_file):
    """torchvision's file name in torch.hub's cache is used without being named;
    online, a missing file is fetched into that cache (download mocked here)."""
    _, path = vgg_file
    monkeypatch.delenv("SDESIGN_VGG16_WEIGHTS", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    calls = []

    def fake_download(url, model_dir=None, file_name=None, **kwargs):
        calls.append((url, model_dir, file_name, kwargs.get("check_hash")))
        target = tmp_path / "hub" / "checkpoints"
        target.mkdir(parents=True, exist_ok=True)
        (target / file_name).write_bytes(path.read_bytes())
        return torch.load(target / file_name, weights_only=True)

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fake_download)
    monkeypatch.setenv("SDESIGN_OFFLINE", "0")
    assert load_vgg_perceptual().variant == "published"
    assert calls == [("https://download.pytorch.org/models/vgg16-397923af.pth",
                      str(tmp_path / "hub" / "checkpoints"), "vgg16-397923af.pth", True)]
    load_vgg_perceptual()  # now from the cache: no second download
    assert len(calls) == 1


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


def test_published_smoothness_is_weaker_than_the_paper_tv():
    """With offsets of a few pixels, eq. 9's TV is several times g_Spatial on
    the same model (measured: 6.0× the value, 80× the gradient norm)."""
    torch.manual_seed(0)
    model = AdaCoF(5, 1)
    with torch.no_grad():
        for name in ("alpha1", "beta1", "alpha2", "beta2"):
            getattr(model.unet, name)[7].weight.mul_(25)
            getattr(model.unet, name)[7].bias.mul_(25)
    f0, f1 = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        _, extras = model(f0, f1, return_extras=True)
    assert total_variation(extras["offsets"]).item() > 3 * g_spatial(extras).item()
