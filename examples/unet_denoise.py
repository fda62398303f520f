"""A small U-Net that removes Gaussian noise from photos shipped with scikit-image.

    sdesign design examples/unet_denoise.py --out runs/unet

Training patches (32×32, grey) come from scikit-image's bundled photos
(camera, astronaut, coffee, …); the noise is added on the fly, with a fixed
seed per epoch. The skip connections concatenate encoder and decoder
features, so a decoder convolution's input is two channel groups laid end to
end; the rebuild shrinks each part by its own group's width. The one-channel
output (the residual the network predicts) is pinned as the model output.
"""
import numpy as np
import torch
from skimage import color, data
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from _toy import shrink

DEFAULTS = {
    "lr": 0.05, "lam": 5e-3, "epochs": 8, "n_p": 4,
    "train_epochs": 10, "baseline_epochs": 10,
    "strategy": "min",
}
HEADLINE_METRIC = "psnr"
PATCH = 32
SIGMA = 0.1
TRAIN_PHOTOS = ("camera", "astronaut", "coffee", "chelsea", "rocket", "coins")
TEST_PHOTOS = ("moon", "clock", "horse")
_DATA = {}


def _grey(name: str) -> np.ndarray:
    image = getattr(data, name)()
    if image.ndim == 3:
        image = color.rgb2gray(image[..., :3])
    image = image.astype(np.float32)
    return image / 255.0 if image.max() > 1.0 else image


def _patches(names, count: int, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    images = [_grey(n) for n in names]
    out = np.empty((count, 1, PATCH, PATCH), dtype=np.float32)
    for i in range(count):
        image = images[i % len(images)]
        y, x = rng.integers(0, image.shape[0] - PATCH), rng.integers(0, image.shape[1] - PATCH)
        out[i, 0] = image[y:y + PATCH, x:x + PATCH]
    return torch.from_numpy(out)


def _noisy(clean: torch.Tensor, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return clean + SIGMA * torch.randn(clean.shape, generator=g)


def _data():
    if not _DATA:
        clean = _patches(TRAIN_PHOTOS, shrink(768, 48), seed=0)
        test = _patches(TEST_PHOTOS, shrink(128, 16), seed=1)
        _DATA.update(train=clean, test=(_noisy(test, 2), test))
    return _DATA


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(),
                         nn.Conv2d(c_out, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU())


class UNet(nn.Module):
    def __init__(self, widths=(16, 32, 64)):
        super().__init__()
        w1, w2, w3 = widths
        self.enc1, self.enc2 = _block(1, w1), _block(w1, w2)
        self.bottom = _block(w2, w3)
        self.up2, self.dec2 = nn.ConvTranspose2d(w3, w2, 2, stride=2), _block(2 * w2, w2)
        self.up1, self.dec1 = nn.ConvTranspose2d(w2, w1, 2, stride=2), _block(2 * w1, w1)
        self.out = nn.Conv2d(w1, 1, 1)
        self.pool = nn.MaxPool2d(2)

    def forward(self, noisy):
        e1 = self.enc1(noisy)
        e2 = self.enc2(self.pool(e1))
        b = self.bottom(self.pool(e2))
        d2 = self.dec2(torch.cat([self.up2(b), e2], dim=1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], dim=1))
        return noisy - self.out(d1)  # predict the noise, subtract it


def build_model():
    return UNet()


def example_inputs():
    return (torch.randn(2, 1, PATCH, PATCH),)


class _NoisyPatches(torch.utils.data.Dataset):
    """Clean patches with fresh noise each time (the trainer seeds the RNG per epoch)."""

    def __init__(self, clean):
        self.clean = clean

    def __len__(self):
        return len(self.clean)

    def __getitem__(self, i):
        clean = self.clean[i]
        return clean + SIGMA * torch.randn_like(clean), clean


def train_data():
    return DataLoader(_NoisyPatches(_data()["train"]), batch_size=32, shuffle=True)


def loss(model, batch):
    noisy, clean = batch
    return nn.functional.mse_loss(model(noisy), clean)


def evaluate(model):
    noisy, clean = _data()["test"]
    device = next(model.parameters()).device
    mse = (model(noisy.to(device)).cpu().clamp(0, 1) - clean).square().flatten(1).mean(1)
    return {"psnr": (-10 * torch.log10(mse.clamp_min(1e-10))).mean().item(),
            "psnr_noisy": (-10 * torch.log10((noisy.clamp(0, 1) - clean).square().flatten(1).mean(1))).mean().item()}
