"""torchvision's ResNet-18 on scikit-learn's handwritten digits (upscaled to 32×32, RGB).

Real data that ships inside scikit-learn, so nothing is downloaded:

    sdesign design examples/resnet18_digits.py --out runs/resnet18

ResNet-18 is a graph, not a chain: every residual add ties the channels of the
blocks it joins, and the downsampling shortcuts join the next stage. The core
finds these channel groups by tracing, so the rebuilt network is still a
torchvision ``ResNet`` whose ``BasicBlock``s have narrower convolutions.
"""
import torch
import torchvision
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from _toy import shrink

DEFAULTS = {
    "lr": 0.05, "lam": 2e-3, "epochs": 6, "n_p": 3,     # sparsification (OBProx-SG)
    "train_epochs": 6, "baseline_epochs": 6,          # dense baseline and compact retraining
    "strategy": "min",
}
HEADLINE_METRIC = "accuracy"
SIZE = 32
_SPLIT = {}


def _images(x):
    """8×8 grey digits in [0, 16] → 3×32×32 in [0, 1] (ImageNet-style input for a stock ResNet)."""
    x = torch.tensor(x, dtype=torch.float32).unsqueeze(1) / 16.0
    x = nn.functional.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    return x.expand(-1, 3, -1, -1).contiguous()


def _split():
    if not _SPLIT:
        digits = load_digits()
        x_tr, x_te, y_tr, y_te = train_test_split(digits.images, digits.target, test_size=0.25,
                                                  random_state=0, stratify=digits.target)
        n_tr, n_te = shrink(len(x_tr), 64), shrink(len(x_te), 32)
        _SPLIT.update(train=(_images(x_tr[:n_tr]), torch.tensor(y_tr[:n_tr])),
                      test=(_images(x_te[:n_te]), torch.tensor(y_te[:n_te])))
    return _SPLIT


def build_model():
    return torchvision.models.resnet18(num_classes=10)


def example_inputs():
    # two images: at 32×32 the last stage is 1×1, and BatchNorm in training mode needs >1 value per channel
    return (torch.randn(2, 3, SIZE, SIZE),)


def train_data():
    return DataLoader(TensorDataset(*_split()["train"]), batch_size=64, shuffle=True)


def loss(model, batch):
    x, y = batch
    return nn.functional.cross_entropy(model(x), y)


def evaluate(model):
    x, y = _split()["test"]
    device = next(model.parameters()).device
    pred = model(x.to(device)).argmax(dim=1).cpu()
    return {"accuracy": 100.0 * (pred == y).float().mean().item()}


def make_optimizer(params):
    optimizer = torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=5e-4)
    return optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=DEFAULTS["train_epochs"])
