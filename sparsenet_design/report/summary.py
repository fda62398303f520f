"""Cost of a model: parameters, size, MACs for the example input, CPU latency;
and the before/after tables the CLI prints."""
from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch
from rich.table import Table
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass
class ModelSummary:
    params: int
    size_mb: float
    macs: int | None = None
    latency_ms: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def count_params(model: nn.Module) -> int:
    """Distinct parameters (tied weights count once)."""
    return sum(p.numel() for p in model.parameters())


def size_mb(model: nn.Module) -> float:
    """Bytes of parameters and buffers, in MB (10⁶ bytes)."""
    tensors = {id(t): t for t in [*model.parameters(), *model.buffers()]}
    return sum(t.numel() * t.element_size() for t in tensors.values()) / 1e6


def count_macs(model: nn.Module, example_inputs: Sequence) -> int | None:
    """Multiply-accumulates of one forward pass on ``example_inputs`` (FLOPs / 2),
    or None where the counter cannot run the model."""
    was_training = model.training
    model.eval()
    try:
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(*example_inputs)
        return counter.get_total_flops() // 2
    except Exception:
        return None
    finally:
        model.train(was_training)


def cpu_latency_ms(model: nn.Module, example_inputs: Sequence, repeats: int = 20, warmup: int = 3,
                   max_seconds: float = 5.0) -> float:
    """Median wall time of one forward pass on CPU, in milliseconds."""
    model = copy.deepcopy(model).cpu().eval()
    inputs = tuple(x.cpu() if isinstance(x, torch.Tensor) else x for x in example_inputs)
    times: list[float] = []
    with torch.inference_mode():
        for _ in range(warmup):
            model(*inputs)
        budget = time.perf_counter() + max_seconds
        for _ in range(repeats):
            start = time.perf_counter()
            model(*inputs)
            times.append((time.perf_counter() - start) * 1e3)
            if time.perf_counter() > budget:
                break
    return statistics.median(times)


def summarize(model: nn.Module, example_inputs: Sequence, latency: bool = True,
              metrics: dict[str, float] | None = None) -> ModelSummary:
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    inputs = tuple(x.to(device) if isinstance(x, torch.Tensor) else x for x in example_inputs)
    return ModelSummary(
        params=count_params(model),
        size_mb=size_mb(model),
        macs=count_macs(model, inputs),
        latency_ms=cpu_latency_ms(model, example_inputs) if latency else None,
        metrics=dict(metrics or {}),
    )


def _human(n: float | None, unit: str = "") -> str:
    if n is None:
        return "–"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{suffix}{unit}"
    return f"{n:.0f}{unit}" if float(n).is_integer() else f"{n:.3g}{unit}"


def _ratio(before: float | None, after: float | None) -> str:
    if not before or not after:
        return ""
    return f"{before / after:.2f}×"


def comparison_table(before: ModelSummary, after: ModelSummary, title: str = "before / after",
                     labels: tuple[str, str] = ("dense", "compact")) -> Table:
    """Rows: params, size, MACs, latency, then every metric either side has."""
    table = Table(title=title)
    table.add_column("")
    table.add_column(labels[0], justify="right")
    table.add_column(labels[1], justify="right")
    table.add_column("change", justify="right")
    table.add_row("parameters", _human(before.params), _human(after.params), _ratio(before.params, after.params))
    table.add_row("size (MB)", f"{before.size_mb:.3f}", f"{after.size_mb:.3f}", _ratio(before.size_mb, after.size_mb))
    table.add_row("MACs", _human(before.macs), _human(after.macs), _ratio(before.macs, after.macs))
    if before.latency_ms is not None or after.latency_ms is not None:
        table.add_row(
            "CPU latency (ms)",
            "–" if before.latency_ms is None else f"{before.latency_ms:.3f}",
            "–" if after.latency_ms is None else f"{after.latency_ms:.3f}",
            _ratio(before.latency_ms, after.latency_ms),
        )
    for name in dict.fromkeys([*before.metrics, *after.metrics]):
        b, a = before.metrics.get(name), after.metrics.get(name)
        diff = f"{a - b:+.4g}" if a is not None and b is not None else ""
        table.add_row(name, "–" if b is None else f"{b:.4g}", "–" if a is None else f"{a:.4g}", diff)
    return table
