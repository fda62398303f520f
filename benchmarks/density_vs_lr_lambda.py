"""lr·λ controls density (the paper's Fig. 5, at small scale).

A small CNN is trained on scikit-learn's digits (8×8 images), then sparsified
with OBProx-SG from that trained model for several (lr, λ) pairs, two or more
of them with the same product. Density per epoch goes to one JSON-lines log
per run; the plots go to ``docs/img``; a markdown summary is printed.

    python benchmarks/density_vs_lr_lambda.py [--epochs 30] [--out runs/density_vs_lr_lambda]

A few minutes on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch
from sklearn.datasets import load_digits
from torch import nn

from sparsenet_design.optim import OBProxSG, epochs_to_steps, l1_param_groups
from sparsenet_design.report.plots import plot_density_curves, plot_layer_density, plot_metric_vs_density
from sparsenet_design.training.tracking import DensityTracker

ROOT = Path(__file__).resolve().parents[1]
PAIRS = [  # (lr, λ): three with lr·λ = 1e-4, two with 1e-5, one with 1e-3
    (1e-1, 1e-3), (3e-2, 1e-3 / 0.3), (1e-2, 1e-2),
    (1e-1, 1e-4), (1e-2, 1e-3),
    (1e-1, 1e-2),
]


def digits_data(seed: int = 0):
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    train, test = order[:1500], order[1500:]
    return (x[train], y[train]), (x[test], y[test])


def digits_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10),
    )


def batches(data, batch_size: int, epoch: int):
    x, y = data
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(1000 + epoch))
    for i in range(0, len(y), batch_size):
        idx = order[i:i + batch_size]
        yield x[idx], y[idx]


@torch.no_grad()
def accuracy(model, data) -> float:
    model.eval()
    x, y = data
    acc = (model(x).argmax(1) == y).float().mean().item()
    model.train()
    return acc


def pretrain(train, epochs: int = 15, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = digits_cnn()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for epoch in range(epochs):
        for xb, yb in batches(train, 32, epoch):
            opt.zero_grad()
            nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()
    return model


def sparsify(model: nn.Module, train, test, lr: float, lam: float, epochs: int, log: Path,
             batch_size: int = 32) -> list[dict]:
    """OBProx-SG from ``model`` (changed in place): half the epochs P-steps, then O-steps."""
    per_epoch = -(-len(train[1]) // batch_size)
    opt = OBProxSG(l1_param_groups(model, lam), lr=lr, lam=lam, n_p=epochs_to_steps(epochs / 2, per_epoch))
    if log.exists():
        log.unlink()
    tracker = DensityTracker(model, log)
    records = [tracker.on_epoch_end(0, 0, accuracy=accuracy(model, test))]
    for epoch in range(1, epochs + 1):
        for xb, yb in batches(train, batch_size, epoch):
            opt.zero_grad()
            nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()
        records.append(tracker.on_epoch_end(epoch, opt.steps_done, accuracy=accuracy(model, test)))
    return records


def label(lr: float, lam: float) -> str:
    return f"lr={lr:g}, λ={lam:.3g} (lr·λ={lr * lam:.0e})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "density_vs_lr_lambda")
    ap.add_argument("--img", type=Path, default=ROOT / "docs" / "img")
    args = ap.parse_args()
    torch.set_num_threads(1)  # a tiny model: one thread is fastest, and immune to a busy machine
    train, test = digits_data()
    start = time.perf_counter()
    m0 = pretrain(train)
    print(f"M0 test accuracy {accuracy(m0, test):.3f}")
    runs, last_model = {}, {}
    for lr, lam in PAIRS:
        model = copy.deepcopy(m0)
        runs[label(lr, lam)] = sparsify(model, train, test, lr, lam, args.epochs,
                                        args.out / f"lr{lr:g}_lam{lam:.3g}.jsonl")
        last_model[(lr, lam)] = model
    elapsed = time.perf_counter() - start

    written = plot_density_curves(runs, args.img / "density_vs_epoch_digits",
                                  title=f"digits CNN, OBProx-SG ({args.epochs // 2} epochs P, then O)")
    written += plot_metric_vs_density(
        {k: [(r["overall_density"], r["accuracy"]) for r in v] for k, v in runs.items()},
        "test accuracy", args.img / "accuracy_vs_density_digits")
    lr, lam = PAIRS[0]
    written += plot_layer_density(runs[label(lr, lam)][-1], args.img / "layer_density_digits",
                                  title=f"digits CNN after {args.epochs} epochs, {label(lr, lam)}")

    checkpoints = sorted({1, 2, 5, 10, args.epochs // 2, args.epochs} & set(range(1, args.epochs + 1)))
    print(f"\nOverall density (%) by epoch, {args.epochs} epochs ({elapsed:.0f} s in all):\n")
    print("| lr | λ | lr·λ | " + " | ".join(f"ep {e}" for e in checkpoints) + " | final acc |")
    print("|---:|---:|---:|" + "---:|" * len(checkpoints) + "---:|")
    for (lr, lam), (name, records) in zip(PAIRS, runs.items()):
        cells = " | ".join(f"{100 * records[e]['overall_density']:.1f}" for e in checkpoints)
        print(f"| {lr:g} | {lam:.3g} | {lr * lam:.0e} | {cells} | {records[-1]['accuracy']:.3f} |")
    print("\nwrote " + ", ".join(str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p) for p in written))


if __name__ == "__main__":
    main()
