"""Frame-interpolation metrics that follow the paper's protocol.

The protocol (DESIGN.md §4): PSNR and SSIM as scikit-image computes them with
``data_range=1`` on float images in [0, 1] read back from the saved 8-bit PNG,
SSIM on the RGB image with channels; LPIPS with the SqueezeNet backbone.

PSNR and SSIM here are torch re-implementations (batched, GPU-capable) that give
scikit-image's numbers: SSIM uses skimage's defaults (7×7 uniform window,
K1 = 0.01, K2 = 0.03, sample covariance with the N/(N−1) correction, mean over
the region where the whole window fits, averaged over channels). They compute
in float64, like skimage on images read as ``uint8 / 255``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from sparsenet_design.errors import CheckpointError

SSIM_WIN = 7
SSIM_K1 = 0.01
SSIM_K2 = 0.03
LPIPS_WEIGHTS_ENV = "SDESIGN_LPIPS_WEIGHTS"


def quantize_8bit(image: torch.Tensor) -> torch.Tensor:
    """What saving as an 8-bit PNG and reading back as [0, 1] floats gives
    (PNG is lossless, so rounding to 1/255 steps is the whole round trip)."""
    return (image.detach().to(torch.float64).clamp(0, 1) * 255).round() / 255


def _as_batch(x: torch.Tensor) -> torch.Tensor:
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4:
        raise ValueError(f"expected an image (C,H,W) or a batch (B,C,H,W), got shape {tuple(x.shape)}")
    return x.to(torch.float64)


def _check_pair(gt: torch.Tensor, pred: torch.Tensor) -> None:
    if gt.shape != pred.shape:
        raise ValueError(f"ground truth {tuple(gt.shape)} and prediction {tuple(pred.shape)} differ in shape")


def psnr(gt: torch.Tensor, pred: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """PSNR in dB per image, as ``skimage.metrics.peak_signal_noise_ratio``.
    Accepts (C,H,W) or (B,C,H,W); returns a float64 tensor of shape (B,)."""
    gt, pred = _as_batch(gt), _as_batch(pred)
    _check_pair(gt, pred)
    mse = (gt - pred).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(data_range**2 / mse)


def ssim(gt: torch.Tensor, pred: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """SSIM per image, as ``skimage.metrics.structural_similarity(gt, pred,
    data_range=1, channel_axis=-1)``. Accepts (C,H,W) or (B,C,H,W) with
    H, W ≥ 7; returns a float64 tensor of shape (B,)."""
    gt, pred = _as_batch(gt), _as_batch(pred)
    _check_pair(gt, pred)
    if min(gt.shape[-2:]) < SSIM_WIN:
        raise ValueError(f"SSIM needs images of at least {SSIM_WIN}×{SSIM_WIN}, got {tuple(gt.shape[-2:])}")
    # Means over every 7×7 window that fits inside the image: exactly the valid
    # region skimage keeps after cropping (win_size − 1) / 2 pixels per border.
    n = SSIM_WIN * SSIM_WIN
    cov_norm = n / (n - 1)
    stats = _box_mean(torch.stack([gt, pred, gt * gt, pred * pred, gt * pred]))
    ux, uy, uxx, uyy, uxy = stats.unbind(0)
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.mean(dim=(-2, -1)).mean(dim=1)


def _box_mean(x: torch.Tensor, k: int = SSIM_WIN) -> torch.Tensor:
    """Mean over each k×k window that fits (no padding), as k shifted adds along
    H then W (separable; exact in float64, faster than float64 avg_pool2d)."""
    for dim in (-2, -1):
        length = x.shape[dim] - k + 1
        acc = x.narrow(dim, 0, length).clone()
        for i in range(1, k):
            acc += x.narrow(dim, i, length)
        x = acc
    return x / (k * k)


# --------------------------------------------------------------------- LPIPS
@dataclass
class LPIPSStatus:
    """An LPIPS scorer, or why there is none (``metric`` is None then)."""

    metric: object | None
    reason: str = ""

    @property
    def available(self) -> bool:
        return self.metric is not None


def _default_lpips_weights() -> Path | None:
    env = os.environ.get(LPIPS_WEIGHTS_ENV)
    if env:
        return Path(env)
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    found = sorted(hub.glob("squeezenet1_1-*.pth")) if hub.is_dir() else []
    return found[0] if found else None


def _load_state_dict(path: Path) -> dict:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(str(path), map_location="cpu", weights_only=True)


def load_lpips(weights: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> LPIPSStatus:
    """LPIPS (SqueezeNet trunk, v0.1 linear layers from the ``lpips`` package).

    The SqueezeNet 1.1 ImageNet weights cannot be downloaded here: pass a local
    file (torchvision's ``squeezenet1_1-*.pth`` state dict or a safetensors file
    with the same keys), set ``SDESIGN_LPIPS_WEIGHTS``, or keep it in the torch
    hub cache. Without one, the returned status says LPIPS is unavailable and why.
    """
    path = Path(weights) if weights else _default_lpips_weights()
    if path is None:
        return LPIPSStatus(None, "no SqueezeNet 1.1 weights: pass --lpips-weights FILE or set "
                                 f"{LPIPS_WEIGHTS_ENV} (torchvision's squeezenet1_1-b8a52dc0.pth)")
    if not path.is_file():
        return LPIPSStatus(None, f"SqueezeNet weights file {path} does not exist")
    try:
        import lpips  # noqa: F401
        import torchvision
    except ImportError as exc:
        return LPIPSStatus(None, f"the lpips package is not installed ({exc}); pip install lpips")
    try:
        state = _load_state_dict(path)
        trunk = torchvision.models.squeezenet1_1()
        trunk.load_state_dict(state)
    except Exception as exc:  # wrong file: say so, don't crash the evaluation
        return LPIPSStatus(None, f"{path} is not a SqueezeNet 1.1 state dict ({type(exc).__name__}: {exc})")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metric = lpips.LPIPS(net="squeeze", pnet_rand=True, verbose=False)
    for slice_ in (getattr(metric.net, f"slice{i}") for i in range(1, metric.net.N_slices + 1)):
        for name, module in slice_.named_children():
            module.load_state_dict(trunk.features[int(name)].state_dict())
    metric = metric.eval().to(device)
    for p in metric.parameters():
        p.requires_grad_(False)
    return LPIPSStatus(metric)


def lpips_distance(status: LPIPSStatus, gt: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """LPIPS per image for [0, 1] images; raises if LPIPS is unavailable."""
    if not status.available:
        raise CheckpointError(f"LPIPS is unavailable: {status.reason}")
    gt, pred = _as_batch(gt).float(), _as_batch(pred).float()
    dev = next(status.metric.parameters()).device
    with torch.no_grad():
        d = status.metric(gt.to(dev), pred.to(dev), normalize=True)
    return d.flatten().double().cpu()


# ------------------------------------------------------------------- scoring
def score_images(gt: torch.Tensor, pred: torch.Tensor, lpips_status: LPIPSStatus | None = None) -> list[dict]:
    """PSNR, SSIM (and LPIPS when available) per image, after the 8-bit round
    trip of the prediction. ``gt`` should already be 8-bit data in [0, 1]."""
    gt = _as_batch(gt)
    pred = quantize_8bit(_as_batch(pred))
    rows = [{"psnr": float(p), "ssim": float(s)} for p, s in zip(psnr(gt, pred), ssim(gt, pred))]
    if lpips_status is not None and lpips_status.available:
        for row, d in zip(rows, lpips_distance(lpips_status, gt, pred)):
            row["lpips"] = float(d)
    return rows


def score_triplets(triplets, predict, lpips_status: LPIPSStatus | None = None, on_item=None) -> list[dict]:
    """Score a prediction for every triplet against its ground truth.

    ``predict(triplet, frame0, frame1)`` returns the middle frame as a
    (3, H, W) tensor in [0, 1] (inputs are float32 tensors read from disk).
    Returns one row per triplet: ``{"name", "psnr", "ssim"[, "lpips"]}``.
    ``on_item(i, row)`` is called after each one (progress bars)."""
    from .imageio_utils import read_image

    rows = []
    for i, t in enumerate(triplets):
        gt = read_image(t.gt, torch.float64)
        pred = predict(t, read_image(t.frame0), read_image(t.frame1))
        if tuple(pred.shape[-2:]) != tuple(gt.shape[-2:]):
            raise ValueError(f"{t.name}: the prediction is {tuple(pred.shape[-2:])} but the ground truth is "
                             f"{tuple(gt.shape[-2:])} (H, W)")
        row = {"name": t.name, **score_images(gt, pred.cpu(), lpips_status)[0]}
        rows.append(row)
        if on_item is not None:
            on_item(i, row)
    return rows


def mean_scores(rows: list[dict]) -> dict[str, float]:
    keys = [k for k in ("psnr", "ssim", "lpips") if rows and all(k in r for r in rows)]
    return {k: sum(r[k] for r in rows) / len(rows) for k in keys}
