"""Per-layer density ``d = nnz / numel`` of prunable weights (biases excluded)."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from ..kinds.prunable import prunable_layers


@dataclass(frozen=True)
class LayerDensity:
    name: str
    shape: tuple[int, ...]
    numel: int
    nnz: int

    @property
    def density(self) -> float:
        return self.nnz / self.numel if self.numel else 1.0


@dataclass
class DensityReport:
    """Densities of every prunable layer, in model order."""

    layers: list[LayerDensity] = field(default_factory=list)

    def __getitem__(self, name: str) -> float:
        for layer in self.layers:
            if layer.name == name:
                return layer.density
        raise KeyError(name)

    def __iter__(self):
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    @property
    def numel(self) -> int:
        return sum(layer.numel for layer in self.layers)

    @property
    def nnz(self) -> int:
        return sum(layer.nnz for layer in self.layers)

    @property
    def overall(self) -> float:
        """Density over all prunable weights together."""
        return self.nnz / self.numel if self.numel else 1.0

    def as_dict(self) -> dict[str, float]:
        return {layer.name: layer.density for layer in self.layers}


@torch.no_grad()
def _count(weight: torch.Tensor) -> tuple[int, int]:
    return int(torch.count_nonzero(weight)), weight.numel()


def layer_density(weight: torch.Tensor) -> float:
    """``nnz / numel`` of one weight tensor."""
    nnz, numel = _count(weight)
    return nnz / numel if numel else 1.0


def density_report(model: nn.Module | Mapping[str, torch.Tensor], skip: Iterable[str] = ()) -> DensityReport:
    """Density of each prunable layer of ``model`` (layers named in ``skip`` are left out).

    ``model`` is a module, or a state dict; for a state dict every floating
    ``*.weight`` tensor of two or more dimensions counts as a layer (norm
    weights are 1-d, so they are left out as they are for a module).
    """
    report = DensityReport()
    if isinstance(model, nn.Module):
        skip = set(skip)
        for name, module in prunable_layers(model):
            if name in skip:
                continue
            nnz, numel = _count(module.weight)
            report.layers.append(LayerDensity(name, tuple(module.weight.shape), numel, nnz))
        return report
    for key, tensor in model.items():
        if key.endswith(".weight") and tensor.dim() >= 2 and tensor.is_floating_point():
            nnz, numel = _count(tensor)
            report.layers.append(LayerDensity(key[: -len(".weight")], tuple(tensor.shape), numel, nnz))
    return report
