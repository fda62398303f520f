"""The reconstruction property every coverage run and test checks.

For one model, densities and strategy: ``reconstruct`` succeeds, the compact
model runs on the example inputs with the original output shapes, has no more
parameters (fewer, with ``strict=True``), and its spec, saved and loaded again,
applied to a *fresh* model gives a model with the same tensor shapes and output
shapes as the compact one.
"""
from __future__ import annotations

import functools
import itertools
import random
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from sparsenet_design.kinds.prunable import prunable_layers
from sparsenet_design import apply_spec, reconstruct
from sparsenet_design.design.spec import DesignSpec


class RebuildCheckError(AssertionError):
    """A broken property; ``stage`` says which (reconstruct, run, shapes, params, spec)."""

    def __init__(self, stage: str, message: str):
        super().__init__(f"[{stage}] {message}")
        self.stage = stage


@dataclass
class RebuildResult:
    strategy: str
    seconds: float  # reconstruct() alone
    params_before: int
    params_after: int
    tracer: str
    repaired: list[str] = field(default_factory=list)  # modules the core pinned after a failed first rebuild

    @property
    def ratio(self) -> float:
        return self.params_after / self.params_before if self.params_before else 1.0


def as_inputs(example_inputs) -> tuple:
    if isinstance(example_inputs, tuple):
        return example_inputs
    if isinstance(example_inputs, list):
        return tuple(example_inputs)
    return (example_inputs,)


def output_shapes(value) -> list:
    """Shapes of every tensor in a (nested) output, in a fixed order."""
    if isinstance(value, torch.Tensor):
        return [tuple(value.shape)]
    if isinstance(value, (tuple, list)):
        return [s for v in value for s in output_shapes(v)]
    if isinstance(value, Mapping):
        return [s for k in sorted(value, key=str) for s in output_shapes(value[k])]
    return []


def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def tensor_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def random_densities(model: nn.Module, seed: int, low: float = 0.05) -> dict[str, float]:
    """A density in [low, 1] for every prunable layer, reproducible from ``seed``."""
    rng = random.Random(seed)
    return {path: round(low + (1 - low) * rng.random(), 4) for path, _ in prunable_layers(model)}


_counter = itertools.count()


@functools.cache
def _scratch_dir() -> Path:
    tmp = tempfile.TemporaryDirectory(prefix="rebuild-check-")
    _scratch_dir.keep = tmp  # removed when the process exits
    return Path(tmp.name)


def _repairs(spec: DesignSpec) -> list[str]:
    note = next((n for n in spec.notes if n.startswith("the first rebuild did not run")), None)
    if note is None:
        return []
    return [p for p in spec.settings.get("pinned", []) if f"'{p}'" in note]


def check_rebuild(
    build_model: Callable[[], nn.Module],
    example_inputs,
    densities: Mapping[str, float],
    strategy: str,
    *,
    strict: bool = False,
    model: nn.Module | None = None,
    expected: list | None = None,
) -> RebuildResult:
    """Check the rebuild property; raise :class:`RebuildCheckError` if it fails.

    ``model``/``expected`` let a caller reuse an already built model and its output shapes.
    """
    inputs = as_inputs(example_inputs)
    if model is None:
        model = build_model().eval()
    if expected is None:
        with torch.no_grad():
            expected = output_shapes(model(*inputs))
    before = param_count(model)
    start = time.perf_counter()
    try:
        compact, spec = reconstruct(model, inputs, strategy=strategy, densities=dict(densities))
    except Exception as exc:
        raise RebuildCheckError("reconstruct", f"{type(exc).__name__}: {exc}") from exc
    seconds = time.perf_counter() - start
    compact.eval()
    try:
        with torch.no_grad():
            got = output_shapes(compact(*inputs))
    except Exception as exc:
        raise RebuildCheckError("run", f"compact model raised {type(exc).__name__}: {exc}") from exc
    if got != expected:
        raise RebuildCheckError("shapes", f"compact output shapes {got}, original {expected}")
    after = param_count(compact)
    if after > before or (strict and after >= before):
        repaired = _repairs(spec)
        why = f" (the core pinned {', '.join(repaired)} after its first rebuild did not run)" if repaired else ""
        raise RebuildCheckError("params", f"compact model has {after} parameters, original {before}{why}")
    path = spec.save(_scratch_dir() / f"spec-{next(_counter)}.json")
    loaded = DesignSpec.load(path)
    path.unlink()
    try:
        rebuilt = apply_spec(build_model().eval(), loaded).eval()
        with torch.no_grad():
            again = output_shapes(rebuilt(*inputs))
    except Exception as exc:
        raise RebuildCheckError("spec", f"apply_spec(fresh model) failed: {type(exc).__name__}: {exc}") from exc
    if again != expected:
        raise RebuildCheckError("spec", f"spec-built model outputs {again}, original {expected}")
    if tensor_shapes(rebuilt) != tensor_shapes(compact):
        diff = sorted(k for k, v in tensor_shapes(rebuilt).items() if tensor_shapes(compact).get(k) != v)
        raise RebuildCheckError("spec", f"spec-built model differs from the compact one in {diff[:5]}")
    return RebuildResult(strategy, seconds, before, after, spec.settings.get("tracer", "?"), _repairs(spec))
