"""How a training run runs, whatever it trains: one object instead of the same
keywords on every entry point (``sparsify``, ``train``, ``Trainer``, the CLI)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from ..errors import TrainingError


@dataclass(frozen=True)
class TrainConfig:
    """``seed``: data order, dropout and init draws; ``accumulation``: batches per
    optimizer step; ``amp``: autocast (bf16 on CPU, fp16 on CUDA); ``device``: where
    to train (default: CUDA if available); ``checkpoint_every_steps``: also
    checkpoint mid-epoch; ``progress``/``console``: bars and epoch lines;
    ``run_dir``: log and checkpoint into this run folder; ``resume``: continue it."""

    seed: int = 0
    accumulation: int = 1
    amp: bool = False
    device: str | torch.device | None = None
    checkpoint_every_steps: int | None = None
    progress: bool = True
    console: Console | None = None
    run_dir: str | Path | None = None
    resume: bool = False

    def __post_init__(self) -> None:
        if self.accumulation < 1:
            raise TrainingError(f"gradient accumulation must be ≥ 1, got {self.accumulation}.")
        if self.checkpoint_every_steps is not None and self.checkpoint_every_steps < 1:
            raise TrainingError(f"checkpoint_every_steps must be ≥ 1, got {self.checkpoint_every_steps}.")

    @classmethod
    def of(cls, config: TrainConfig | None = None, options: Mapping[str, Any] | None = None) -> TrainConfig:
        """``config`` (or the defaults) with ``options`` (keywords named as the fields) applied."""
        options = dict(options or {})
        unknown = sorted(set(options) - {f.name for f in fields(cls)})
        if unknown:
            raise TypeError(f"unknown training option(s) {', '.join(unknown)}; "
                            f"TrainConfig has {', '.join(f.name for f in fields(cls))}")
        return replace(config or cls(), **options)
