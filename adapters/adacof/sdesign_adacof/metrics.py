"""Frame-interpolation metrics that follow the published evaluation.

The published test (CDFI ``test.py``) saves each interpolated frame with
``torchvision.utils.save_image`` (``floor(x·255 + 0.5)``, rounding half up, in
the frame's float dtype), reads the PNG back as [0, 1] floats, and scores it
with ``skimage.metrics`` (PSNR and SSIM, ``data_range=1``, SSIM on the RGB
image with channels) and LPIPS (SqueezeNet). Here:

- :func:`quantize_8bit` is ``save_image``'s rounding, so in-memory scores equal
  scores of the saved PNGs, and both equal the published path's;
- :func:`psnr`, :func:`ssim` are torch re-implementations (batched, any device,
  float64) that give scikit-image's numbers: SSIM with skimage's defaults (7×7
  uniform window, K1 = 0.01, K2 = 0.03, sample covariance N/(N−1), mean over
  the region where the whole window fits, averaged over channels);
- :func:`ssim_gaussian` is the Gaussian-window SSIM that RIFE, IFRNet and
  EMA-VFI report (their ``ssim_matlab``): an 11-tap Gaussian (σ = 1.5) over
  rows, columns *and* the three colour channels (the image as a volume),
  replicate padding of 5, population covariance, mean over the whole map;
- LPIPS (SqueezeNet trunk, v0.1 linear layers of the ``lpips`` package) twice:
  ``lpips`` scales [0, 1] images to [−1, 1] as the LPIPS authors specify
  (``normalize=True``); ``lpips_published`` feeds the [0, 1] images unscaled,
  as the published test does, so it compares with the paper's LPIPS column.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from sparsenet_design.plugin_api import CheckpointError

SSIM_WIN = 7
SSIM_K1 = 0.01
SSIM_K2 = 0.03
GAUSSIAN_WIN = 11
GAUSSIAN_SIGMA = 1.5
LPIPS_WEIGHTS_ENV = "SDESIGN_LPIPS_WEIGHTS"

#: Per-image metrics, in table order: CSV field → table heading.
METRICS = {"psnr": "PSNR", "ssim": "SSIM", "ssim_gaussian": "SSIM (Gaussian)", "lpips": "LPIPS",
           "lpips_published": "LPIPS as published"}


def quantize_8bit(image: torch.Tensor) -> torch.Tensor:
    """What ``torchvision.utils.save_image`` writes, read back as [0, 1] float64:
    ``floor(x·255 + 0.5)`` clamped to [0, 255], computed in the image's dtype
    (float32 for a model's output; half types in float32). Rounds halves up."""
    dtype = image.dtype if image.dtype in (torch.float32, torch.float64) else torch.float32
    q = image.detach().to(dtype).mul(255).add_(0.5).clamp_(0, 255).floor_()
    return q.to(torch.float64) / 255


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
    data_range=1, channel_axis=-1)`` (the published protocol). Accepts (C,H,W)
    or (B,C,H,W) with H, W ≥ 7; returns a float64 tensor of shape (B,)."""
    gt, pred = _as_batch(gt), _as_batch(pred)
    _check_pair(gt, pred)
    if min(gt.shape[-2:]) < SSIM_WIN:
        raise ValueError(f"SSIM needs images of at least {SSIM_WIN}×{SSIM_WIN}, got {tuple(gt.shape[-2:])}")
    # Means over every 7×7 window that fits inside the image: exactly the valid
    # region skimage keeps after cropping (win_size − 1) / 2 pixels per border.
    n = SSIM_WIN * SSIM_WIN
    cov_norm = n / (n - 1)
    stats = _box_mean(torch.stack([gt, pred, gt * gt, pred * pred, gt * pred]))
    s = _ssim_map(*stats.unbind(0), cov_norm, data_range)
    return s.mean(dim=(-2, -1)).mean(dim=1)


def _ssim_map(ux, uy, uxx, uyy, uxy, cov_norm: float, data_range: float) -> torch.Tensor:
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    return ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))


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


def gaussian_window(size: int = GAUSSIAN_WIN, sigma: float = GAUSSIAN_SIGMA) -> torch.Tensor:
    """The normalised 1-D Gaussian taps (float64)."""
    x = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-x * x / (2 * sigma * sigma))
    return g / g.sum()


def ssim_gaussian(gt: torch.Tensor, pred: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Gaussian-window SSIM per image as RIFE / IFRNet / EMA-VFI report it
    (``ssim_matlab``): the (C, H, W) image is a volume filtered by a separable
    11-tap Gaussian (σ = 1.5) along channels, rows and columns after replicate
    padding by 5, population (co)variances, K1 = 0.01, K2 = 0.03, mean over the
    whole map. Accepts (C,H,W) or (B,C,H,W) with H, W ≥ 11; float64; shape (B,)."""
    gt, pred = _as_batch(gt), _as_batch(pred)
    _check_pair(gt, pred)
    if min(gt.shape[-2:]) < GAUSSIAN_WIN:
        raise ValueError(f"Gaussian SSIM needs images of at least {GAUSSIAN_WIN}×{GAUSSIAN_WIN}, "
                         f"got {tuple(gt.shape[-2:])}")
    b = gt.shape[0]
    x = torch.cat([gt, pred, gt * gt, pred * pred, gt * pred])  # (5B, C, H, W)
    taps = gaussian_window().tolist()
    pad = GAUSSIAN_WIN // 2
    # along the channels (few of them): the filter with replicate padding is a C×C mixing matrix
    c = x.shape[1]
    mix = torch.zeros(c, c, dtype=torch.float64)
    for out in range(c):
        for k, tap in enumerate(taps):
            mix[out, min(max(out + k - pad, 0), c - 1)] += tap
    x = torch.einsum("oc,bchw->bohw", mix.to(x.device), x)
    for dim in (2, 3):  # rows, columns: separable, as shifted weighted adds (exact in float64)
        n = x.shape[dim]
        index = torch.arange(-pad, n + pad, device=x.device).clamp_(0, n - 1)  # replicate padding
        padded = x.index_select(dim, index)
        acc = padded.narrow(dim, 0, n) * taps[0]
        for k in range(1, GAUSSIAN_WIN):
            acc.add_(padded.narrow(dim, k, n), alpha=taps[k])
        x = acc
    ux, uy, uxx, uyy, uxy = x.split(b)
    return _ssim_map(ux, uy, uxx, uyy, uxy, 1.0, data_range).flatten(1).mean(1)


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
    from .hub import SQUEEZENET1_1, cached

    env = os.environ.get(LPIPS_WEIGHTS_ENV)
    if env:
        return Path(env)
    return cached(SQUEEZENET1_1)


def _load_state_dict(path: Path) -> dict:
    from .hub import read_state_dict

    return read_state_dict(path)


def load_lpips(weights: str | os.PathLike | None = None, device: str | torch.device = "cpu",
               download: bool = True) -> LPIPSStatus:
    """LPIPS (SqueezeNet trunk, v0.1 linear layers from the ``lpips`` package).

    The SqueezeNet 1.1 ImageNet weights come from ``weights``, else
    ``SDESIGN_LPIPS_WEIGHTS``, else the torch hub cache (where torchvision
    keeps ``squeezenet1_1-b8a52dc0.pth``), else — with ``download`` and unless
    ``SDESIGN_OFFLINE=1`` — they are downloaded into that cache as torchvision
    and the ``lpips`` package do. When none of that works the returned status
    says LPIPS is unavailable, and which file to place where.
    """
    from .hub import SQUEEZENET1_1, fetch

    path = Path(weights) if weights else _default_lpips_weights()
    if path is None:
        if not download:
            from .hub import place_hint

            return LPIPSStatus(None, f"no SqueezeNet 1.1 weights: {place_hint(SQUEEZENET1_1)}")
        try:
            path = fetch(SQUEEZENET1_1)
        except CheckpointError as exc:
            return LPIPSStatus(None, str(exc))
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


def lpips_distance(status: LPIPSStatus, gt: torch.Tensor, pred: torch.Tensor,
                   normalize: bool = True) -> torch.Tensor:
    """LPIPS per image for [0, 1] images; raises if LPIPS is unavailable.
    ``normalize=True`` scales them to [−1, 1] first (LPIPS's input range);
    ``False`` feeds them as they are, as the published CDFI test does."""
    if not status.available:
        raise CheckpointError(f"LPIPS is unavailable: {status.reason}")
    gt, pred = _as_batch(gt).float(), _as_batch(pred).float()
    dev = next(status.metric.parameters()).device
    with torch.no_grad():
        d = status.metric(gt.to(dev), pred.to(dev), normalize=normalize)
    return d.flatten().double().cpu()


# ------------------------------------------------------------------- scoring
def score_images(gt: torch.Tensor, pred: torch.Tensor, lpips_status: LPIPSStatus | None = None) -> list[dict]:
    """Per image: ``psnr``, ``ssim``, ``ssim_gaussian`` (and ``lpips``,
    ``lpips_published`` when LPIPS is available), after the prediction's 8-bit
    round trip (:func:`quantize_8bit`). ``gt`` should already be 8-bit data in [0, 1]."""
    gt = _as_batch(gt)
    pred = quantize_8bit(pred.unsqueeze(0) if pred.dim() == 3 else pred)  # in the prediction's own dtype
    pred = _as_batch(pred)
    gaussian = ssim_gaussian(gt, pred) if min(gt.shape[-2:]) >= GAUSSIAN_WIN else \
        torch.full((gt.shape[0],), math.nan, dtype=torch.float64)
    rows = [{"psnr": float(p), "ssim": float(s), "ssim_gaussian": float(g)}
            for p, s, g in zip(psnr(gt, pred), ssim(gt, pred), gaussian)]
    if lpips_status is not None and lpips_status.available:
        for row, d, dp in zip(rows, lpips_distance(lpips_status, gt, pred),
                              lpips_distance(lpips_status, gt, pred, normalize=False)):
            row["lpips"] = float(d)
            row["lpips_published"] = float(dp)
    return rows


def score_triplets(triplets, predict, lpips_status: LPIPSStatus | None = None, on_item=None) -> list[dict]:
    """Score a prediction for every triplet against its ground truth.

    ``predict(triplet, frame0, frame1)`` returns the middle frame as a
    (3, H, W) tensor in [0, 1] (inputs are float32 tensors read from disk).
    Returns one row per triplet: ``{"name", "psnr", "ssim", "ssim_gaussian"[,
    "lpips", "lpips_published"]}``. ``on_item(i, row)`` is called after each one."""
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
    keys = [k for k in METRICS if rows and all(k in r for r in rows)]
    return {k: sum(r[k] for r in rows) / len(rows) for k in keys}
