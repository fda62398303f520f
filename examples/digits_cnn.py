"""The embedded default: a small CNN on scikit-learn's handwritten digits.

Real data that ships inside scikit-learn (1,797 8×8 images, 10 classes), so
nothing is downloaded. ``make demo`` runs

    sdesign design examples/digits_cnn.py --out runs/demo

which trains this dense CNN, sparsifies it with OBProx-SG, rebuilds a compact
CNN by the √d rule, retrains that from scratch and compares the two.
"""
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

DEFAULTS = {
    "lr": 0.1, "lam": 2.5e-3, "epochs": 12, "n_p": 6,   # sparsification (OBProx-SG)
    "train_epochs": 20, "baseline_epochs": 20,      # dense baseline and compact retraining
    "strategy": "min",
}
HEADLINE_METRIC = "accuracy"

# A model this small gains nothing from intra-op threads, and on a busy machine
# their synchronisation costs far more than it saves (measured: 0.6 s vs 24 s per
# epoch on a loaded 2-core box).
torch.set_num_threads(1)

_SPLIT = {}


def _split():
    if not _SPLIT:
        digits = load_digits()
        x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
        y = torch.tensor(digits.target, dtype=torch.long)
        x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
        _SPLIT.update(train=(x_tr, y_tr), test=(x_te, y_te))
    return _SPLIT


def build_model():
    def block(c_in, c_out):
        return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]

    return nn.Sequential(
        *block(1, 16), *block(16, 32), nn.MaxPool2d(2),      # 8×8 → 4×4
        *block(32, 64), nn.MaxPool2d(2),                     # 4×4 → 2×2
        nn.Flatten(),
        nn.Linear(64 * 2 * 2, 64), nn.ReLU(),
        nn.Linear(64, 10),
    )


def example_inputs():
    return (torch.randn(1, 1, 8, 8),)


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
    optimizer = torch.optim.Adam(params, lr=3e-3)
    return optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=DEFAULTS["train_epochs"])
