"""The torch PSNR/SSIM must give scikit-image's numbers (the paper's protocol)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from sdesign_adacof.imageio_utils import read_uint8, write_image
from sdesign_adacof.metrics import load_lpips, psnr, quantize_8bit, score_images, ssim

DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data"
PSNR_TOL = 1e-4  # dB
SSIM_TOL = 1e-5


def _skimage_scores(gt: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    """The reference: skimage on [0, 1] float64 images (8-bit data / 255)."""
    g, p = gt.astype(np.float64) / 255, pred.astype(np.float64) / 255
    return (peak_signal_noise_ratio(g, p, data_range=1),
            structural_similarity(g, p, data_range=1, channel_axis=-1))


def _to_tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(a)).permute(2, 0, 1).double() / 255


def _average_prediction(f0: np.ndarray, f1: np.ndarray) -> np.ndarray:
    """The frame-average baseline as an 8-bit image (as if saved to PNG)."""
    avg = (f0.astype(np.float64) + f1.astype(np.float64)) / 2
    return np.floor(avg + 0.5).astype(np.uint8)  # round half up, independent of torch


def _middlebury_triplets():
    root = DATA / "middlebury_others"
    if not root.is_dir():
        return []
    return [(d.name, d / "frame10.png", root / "gt" / d.name / "frame10i11.png", d / "frame11.png")
            for d in sorted((root / "input").iterdir())]


def _ucf_triplets():
    root = DATA / "ucf101"
    if not root.is_dir():
        return []
    return [(d.name, d / "frame_00.png", d / "frame_01_gt.png", d / "frame_02.png")
            for d in sorted(root.iterdir(), key=lambda p: int(p.name) if p.name.isdigit() else p.name)]


def _check_triplets(triplets):
    worst_p = worst_s = 0.0
    for _, a, g, b in triplets:
        f0, gt, f1 = read_uint8(a), read_uint8(g), read_uint8(b)
        pred = _average_prediction(f0, f1)
        ref_p, ref_s = _skimage_scores(gt, pred)
        ours_p = psnr(_to_tensor(gt), _to_tensor(pred)).item()
        ours_s = ssim(_to_tensor(gt), _to_tensor(pred)).item()
        worst_p = max(worst_p, abs(ours_p - ref_p))
        worst_s = max(worst_s, abs(ours_s - ref_s))
    assert worst_p < PSNR_TOL, worst_p
    assert worst_s < SSIM_TOL, worst_s


@pytest.mark.skipif(not _middlebury_triplets(), reason="../shared/data/middlebury_others not present")
def test_middlebury_all_12_equal_skimage():
    triplets = _middlebury_triplets()
    assert len(triplets) == 12
    _check_triplets(triplets)


@pytest.mark.slow
@pytest.mark.skipif(not _ucf_triplets(), reason="../shared/data/ucf101 not present")
def test_ucf101_all_379_equal_skimage():
    triplets = _ucf_triplets()
    assert len(triplets) == 379
    _check_triplets(triplets)


@pytest.mark.skipif(not _ucf_triplets(), reason="../shared/data/ucf101 not present")
def test_ucf101_every_tenth_equals_skimage():
    """Fast stand-in for the slow all-379 test (about 1/10 of its time)."""
    _check_triplets(_ucf_triplets()[::10])


def test_random_images_equal_skimage_including_odd_sizes():
    rng = np.random.default_rng(0)
    for h, w in [(7, 7), (9, 30), (33, 17), (64, 48)]:
        gt = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        noise = rng.integers(-20, 21, (h, w, 3))
        pred = np.clip(gt.astype(int) + noise, 0, 255).astype(np.uint8)
        ref_p, ref_s = _skimage_scores(gt, pred)
        assert abs(psnr(_to_tensor(gt), _to_tensor(pred)).item() - ref_p) < PSNR_TOL
        assert abs(ssim(_to_tensor(gt), _to_tensor(pred)).item() - ref_s) < SSIM_TOL


def test_batched_equals_one_by_one():
    torch.manual_seed(0)
    gt, pred = torch.rand(3, 3, 20, 24), torch.rand(3, 3, 20, 24)
    batch_p, batch_s = psnr(gt, pred), ssim(gt, pred)
    for i in range(3):
        assert torch.allclose(batch_p[i], psnr(gt[i], pred[i]))
        assert torch.allclose(batch_s[i], ssim(gt[i], pred[i]))


def test_identical_images_ssim_one():
    img = torch.rand(3, 16, 16)
    assert ssim(img, img).item() == pytest.approx(1.0, abs=1e-12)


def test_score_images_equals_png_round_trip(tmp_path):
    """score_images quantises the prediction exactly as saving an 8-bit PNG does."""
    torch.manual_seed(1)
    gt_u8 = (torch.rand(3, 30, 40) * 255).round() / 255
    pred = torch.rand(3, 30, 40)
    write_image(tmp_path / "p.png", pred)
    back = read_uint8(tmp_path / "p.png")
    ref_p, ref_s = _skimage_scores((gt_u8 * 255).round().permute(1, 2, 0).numpy().astype(np.uint8), back)
    row = score_images(gt_u8, pred)[0]
    assert abs(row["psnr"] - ref_p) < PSNR_TOL and abs(row["ssim"] - ref_s) < SSIM_TOL
    assert torch.equal(quantize_8bit(pred), _to_tensor(back))


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(torch.rand(3, 8, 8), torch.rand(3, 8, 9))


def test_lpips_unavailable_without_weights(monkeypatch, tmp_path):
    monkeypatch.setenv("SDESIGN_LPIPS_WEIGHTS", str(tmp_path / "missing.pth"))
    status = load_lpips()
    assert not status.available and "does not exist" in status.reason
    monkeypatch.delenv("SDESIGN_LPIPS_WEIGHTS")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    status = load_lpips()
    assert not status.available and "--lpips-weights" in status.reason


def test_lpips_with_local_weights_file(tmp_path):
    """With a (here randomly initialised) SqueezeNet state dict on disk, LPIPS
    loads it and scores: 0 for identical images, > 0 otherwise."""
    torchvision = pytest.importorskip("torchvision")
    pytest.importorskip("lpips")
    torch.manual_seed(0)
    trunk = torchvision.models.squeezenet1_1()
    torch.save(trunk.state_dict(), tmp_path / "squeeze.pth")
    status = load_lpips(tmp_path / "squeeze.pth")
    assert status.available, status.reason
    conv0 = status.metric.net.slice1[0]
    assert torch.equal(conv0.weight, trunk.features[0].weight)
    img = torch.rand(2, 3, 32, 32)
    rows = score_images(quantize_8bit(img), img, status)
    assert all(r["lpips"] == pytest.approx(0.0, abs=1e-6) for r in rows)
    rows = score_images(quantize_8bit(img), img.flip(-1), status)
    assert all(r["lpips"] > 0 for r in rows)


def test_lpips_rejects_a_wrong_file(tmp_path):
    torch.save({"foo": torch.zeros(1)}, tmp_path / "bad.pth")
    status = load_lpips(tmp_path / "bad.pth")
    assert not status.available and "not a SqueezeNet" in status.reason


# ------------------------------------------------- the published rounding
def test_quantize_is_save_image_rounding(tmp_path):
    """torchvision.utils.save_image writes floor(x·255 + 0.5) computed in float32;
    quantize_8bit and our PNG writer give the same bytes, exact halves included
    (where rounding half to even would differ)."""
    from PIL import Image
    from torchvision.utils import save_image

    g = torch.Generator().manual_seed(4)
    halves = (torch.randint(0, 255, (3, 16, 20), generator=g).float() + 0.5) / 255  # k + 0.5 steps
    noisy = torch.rand(3, 16, 20, generator=g) * 1.2 - 0.1  # out of range too
    for name, img in (("halves", halves), ("noisy", noisy)):
        save_image(img.unsqueeze(0), tmp_path / f"{name}_tv.png")
        expected = np.asarray(Image.open(tmp_path / f"{name}_tv.png").convert("RGB"))
        write_image(tmp_path / f"{name}_ours.png", img)
        assert np.array_equal(read_uint8(tmp_path / f"{name}_ours.png"), expected)
        assert torch.equal(quantize_8bit(img), _to_tensor(expected))
    half_even = (halves.double() * 255).round()
    assert not torch.equal(quantize_8bit(halves) * 255, half_even)  # the rule matters on halves


# ---------------------------------------------------- Gaussian-window SSIM
def _ssim_gaussian_scipy(gt: np.ndarray, pred: np.ndarray) -> float:
    """RIFE's ssim_matlab from its description: the (C, H, W) image as a volume,
    an 11-tap Gaussian (σ 1.5) along all three axes with edge replication,
    population statistics, C1 = 0.01², C2 = 0.03², mean of the map."""
    from scipy import ndimage

    x = np.arange(11) - 5
    taps = np.exp(-x * x / (2 * 1.5 ** 2))
    taps /= taps.sum()

    def blur(v):
        for axis in range(3):
            v = ndimage.correlate1d(v, taps, axis=axis, mode="nearest")
        return v

    a, b = gt.astype(np.float64), pred.astype(np.float64)
    ma, mb = blur(a), blur(b)
    va, vb, cov = blur(a * a) - ma * ma, blur(b * b) - mb * mb, blur(a * b) - ma * mb
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    return float((((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2))).mean())


def test_gaussian_ssim_matches_independent_reference():
    from sdesign_adacof.metrics import ssim_gaussian

    rng = np.random.default_rng(1)
    for h, w in [(11, 11), (20, 37), (64, 48)]:
        gt = rng.integers(0, 256, (3, h, w)).astype(np.float64) / 255
        pred = np.clip(gt + rng.normal(0, 0.05, gt.shape), 0, 1)
        ours = ssim_gaussian(torch.from_numpy(gt), torch.from_numpy(pred)).item()
        assert abs(ours - _ssim_gaussian_scipy(gt, pred)) < 1e-10
        assert abs(ours - ssim(torch.from_numpy(gt), torch.from_numpy(pred)).item()) > 1e-6  # another metric
    assert ssim_gaussian(torch.ones(3, 12, 12), torch.ones(3, 12, 12)).item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="at least 11"):
        ssim_gaussian(torch.rand(3, 10, 30), torch.rand(3, 10, 30))


def test_score_rows_carry_every_metric():
    rows = score_images(quantize_8bit(torch.rand(2, 3, 16, 16)), torch.rand(2, 3, 16, 16))
    assert all(set(r) == {"psnr", "ssim", "ssim_gaussian"} for r in rows)
    small = score_images(quantize_8bit(torch.rand(3, 8, 8)), torch.rand(3, 8, 8))[0]
    assert np.isnan(small["ssim_gaussian"])  # below the 11×11 window: reported as n/a, not an error


# -------------------------------------------------------------- LPIPS x 2
def _squeeze_file(tmp_path):
    torchvision = pytest.importorskip("torchvision")
    pytest.importorskip("lpips")
    torch.manual_seed(0)
    trunk = torchvision.models.squeezenet1_1()
    path = tmp_path / "squeeze.pth"
    torch.save(trunk.state_dict(), path)
    return path


def test_lpips_and_lpips_as_published(tmp_path):
    """'lpips' scales [0, 1] images to [−1, 1]; 'lpips_published' feeds them
    unscaled, as the published test does."""
    from sdesign_adacof.metrics import lpips_distance

    status = load_lpips(_squeeze_file(tmp_path))
    g = torch.Generator().manual_seed(2)
    gt = quantize_8bit(torch.rand(1, 3, 32, 32, generator=g))
    pred = torch.rand(1, 3, 32, 32, generator=g)
    row = score_images(gt, pred, status)[0]
    q = quantize_8bit(pred).float()
    with torch.no_grad():
        scaled = status.metric(gt.float() * 2 - 1, q * 2 - 1).item()
        raw = status.metric(gt.float(), q).item()
    assert row["lpips"] == pytest.approx(scaled, rel=1e-6) and row["lpips_published"] == pytest.approx(raw, rel=1e-6)
    assert row["lpips"] != pytest.approx(row["lpips_published"], rel=1e-3)
    assert lpips_distance(status, gt, q, normalize=False).item() == pytest.approx(raw, rel=1e-6)


def test_lpips_weights_downloaded_into_the_hub_cache_when_online(tmp_path, monkeypatch):
    path = _squeeze_file(tmp_path)
    monkeypatch.delenv("SDESIGN_LPIPS_WEIGHTS", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setenv("SDESIGN_OFFLINE", "0")
    calls = []

    def fake_download(url, model_dir=None, file_name=None, **kwargs):
        calls.append((url, file_name))
        Path(model_dir).mkdir(parents=True, exist_ok=True)
        (Path(model_dir) / file_name).write_bytes(path.read_bytes())

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fake_download)
    status = load_lpips()
    assert status.available, status.reason
    assert calls == [("https://download.pytorch.org/models/squeezenet1_1-b8a52dc0.pth",
                      "squeezenet1_1-b8a52dc0.pth")]
    assert (tmp_path / "hub" / "checkpoints" / "squeezenet1_1-b8a52dc0.pth").is_file()

    def no_network(*args, **kwargs):
        raise OSError("Name or service not known")

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub2"))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    status = load_lpips()
    assert not status.available
    assert "squeezenet1_1-b8a52dc0.pth" in status.reason and str(tmp_path / "hub2" / "checkpoints") in status.reason
    assert "--lpips-weights" in status.reason and "Name or service not known" in status.reason
