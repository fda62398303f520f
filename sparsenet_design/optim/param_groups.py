"""Parameter groups for OBProx-SG: the l1 penalty on prunable weights only."""
from __future__ import annotations

from typing import Any

from torch import nn

from ..kinds.prunable import prunable_layers


def l1_param_groups(model: nn.Module, lam: float, lr: float | None = None) -> list[dict[str, Any]]:
    """Two param groups for ``model``: the weights of its prunable layers
    (convolutions, linear layers, registered plugin layers) with ``lam``, and
    every other parameter (biases, norm affine params, embeddings, …) with
    ``lam=0``, which OBProx-SG updates with plain SGD steps. Shared parameters
    appear once; empty groups are left out. ``lr``, when given, is set on both
    groups (otherwise they take the optimizer's default)."""
    penalised: list[nn.Parameter] = []
    seen: set[int] = set()
    for _, module in prunable_layers(model):
        if id(module.weight) not in seen:
            seen.add(id(module.weight))
            penalised.append(module.weight)
    others = []
    for param in model.parameters():  # parameters() already skips duplicates
        if id(param) not in seen:
            seen.add(id(param))
            others.append(param)
    groups = [
        {"params": penalised, "lam": float(lam), "name": "l1"},
        {"params": others, "lam": 0.0, "name": "no_l1"},
    ]
    if lr is not None:
        for group in groups:
            group["lr"] = float(lr)
    return [group for group in groups if group["params"]]
