"""A small MLP-Mixer on scikit-learn's handwritten digits.

    sdesign design examples/mixer_digits.py --out runs/mixer

Each 8×8 digit is cut into 16 patches of 2×2 pixels; every block mixes the
tokens (an MLP across the 16 patches) and then the channels (an MLP across
the features), each behind a LayerNorm and with a residual add. The residual
adds tie all blocks' feature widths into one channel group (and the
LayerNorms with it); the hidden widths of the two MLPs in each block are free
groups of their own. The token count is fixed by the input, so it is pinned.
"""
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from _toy import shrink

DEFAULTS = {
    "lr": 0.1, "lam": 3e-3, "epochs": 10, "n_p": 5,
    "train_epochs": 20, "baseline_epochs": 20,
    "strategy": "min",
}
HEADLINE_METRIC = "accuracy"
PATCH = 2
TOKENS = (8 // PATCH) ** 2
_SPLIT = {}


class MixerBlock(nn.Module):
    def __init__(self, dim: int, tokens: int, token_hidden: int, channel_hidden: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.token_mlp = nn.Sequential(nn.Linear(tokens, token_hidden), nn.GELU(), nn.Linear(token_hidden, tokens))
        self.norm2 = nn.LayerNorm(dim)
        self.channel_mlp = nn.Sequential(nn.Linear(dim, channel_hidden), nn.GELU(), nn.Linear(channel_hidden, dim))

    def forward(self, x):  # x: (batch, tokens, dim)
        x = x + self.token_mlp(self.norm1(x).transpose(1, 2)).transpose(1, 2)
        return x + self.channel_mlp(self.norm2(x))


class Mixer(nn.Module):
    def __init__(self, dim: int = 64, depth: int = 4, classes: int = 10):
        super().__init__()
        self.patch = nn.Conv2d(1, dim, kernel_size=PATCH, stride=PATCH)  # patch embedding
        self.blocks = nn.Sequential(*[MixerBlock(dim, TOKENS, 32, 128) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)  # (batch, tokens, dim)
        x = self.norm(self.blocks(x))
        return self.head(x.mean(dim=1))


def _split():
    if not _SPLIT:
        digits = load_digits()
        x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
        y = torch.tensor(digits.target, dtype=torch.long)
        x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
        n_tr, n_te = shrink(len(x_tr), 64), shrink(len(x_te), 32)
        _SPLIT.update(train=(x_tr[:n_tr], y_tr[:n_tr]), test=(x_te[:n_te], y_te[:n_te]))
    return _SPLIT


def build_model():
    return Mixer()


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
    optimizer = torch.optim.AdamW(params, lr=3e-3, weight_decay=1e-4)
    return optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=DEFAULTS["train_epochs"])
