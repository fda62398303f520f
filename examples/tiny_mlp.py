"""A tiny model file (an MLP on generated data) for tests and a quick look.

    sdesign design examples/tiny_mlp.py --out runs/tiny
"""
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

DEFAULTS = {"lr": 0.1, "lam": 1e-3, "epochs": 3, "n_p": 1, "train_epochs": 3, "baseline_epochs": 3}
HEADLINE_METRIC = "accuracy"
PINNED = []


def _data(n, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 16, generator=g)
    w = torch.randn(16, 4, generator=torch.Generator().manual_seed(1234))
    y = (x @ w).argmax(dim=1)
    return x, y


def build_model():
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))


def example_inputs():
    return (torch.randn(1, 16),)


def train_data():
    return DataLoader(TensorDataset(*_data(256, 0)), batch_size=32, shuffle=True)


def loss(model, batch):
    x, y = batch
    return nn.functional.cross_entropy(model(x), y)


def evaluate(model):
    x, y = _data(256, 1)
    device = next(model.parameters()).device
    pred = model(x.to(device)).argmax(dim=1).cpu()
    return {"accuracy": (pred == y).float().mean().item()}
