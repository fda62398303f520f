"""Run folder layout: where each command writes what, and the recorded config.

::

    RUN/
      config.json             command, arguments, versions, model file path + hash
      checkpoint/last.safetensors   latest training state (atomic)
      density.jsonl           per-epoch (and per-step) density records
      metrics.jsonl           per-epoch loss and evaluation metrics
      sparse.safetensors      final sparse weights (prune)
      weights.safetensors     final weights (train)
      spec.json               design spec (reconstruct / train of a compact model)
      summary.json            before/after numbers (reconstruct)
      plots/                  density plots (report)
"""
from __future__ import annotations

import json
import os
import platform
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from ..files import atomic_write, read_json, read_jsonl, write_json
from ..errors import CheckpointError, SdesignError


def versions() -> dict[str, str]:
    from .. import __version__

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "sparsenet_design": __version__,
        "platform": platform.platform(),
    }


@dataclass(frozen=True)
class RunFolder:
    root: Path

    @property
    def config_path(self) -> Path:
        return self.root / "config.json"

    @property
    def checkpoint_dir(self) -> Path:
        return self.root / "checkpoint"

    @property
    def checkpoint(self) -> Path:
        return self.checkpoint_dir / "last.safetensors"

    @property
    def density_log(self) -> Path:
        return self.root / "density.jsonl"

    @property
    def metrics_log(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def sparse_weights(self) -> Path:
        return self.root / "sparse.safetensors"

    @property
    def weights(self) -> Path:
        return self.root / "weights.safetensors"

    @property
    def spec(self) -> Path:
        return self.root / "spec.json"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def plots_dir(self) -> Path:
        return self.root / "plots"

    def config(self) -> dict[str, Any]:
        return read_json(self.config_path, "Run config")


def prepare_run(root: str | Path, command: str, args: dict[str, Any],
                model_file=None, resume: bool = False) -> RunFolder:
    """Create (or, with ``resume``, reopen) a run folder and record its config."""
    run = RunFolder(Path(root))
    try:
        run.root.mkdir(parents=True, exist_ok=True)
        probe = run.root / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise SdesignError(
            f"Cannot write to output folder {run.root} ({exc.strerror or exc}). "
            "Choose another --out or fix its permissions."
        ) from exc
    if resume:
        if not run.checkpoint.is_file():
            raise CheckpointError(
                f"--resume: {run.root} has no checkpoint ({run.checkpoint} is missing); "
                "start the run without --resume."
            )
        old = run.config()
        if model_file is not None and old.get("model_file", {}).get("sha256") not in (None, model_file.sha256):
            raise CheckpointError(
                f"--resume: the model file changed since {run.root} was started "
                f"({old['model_file']['path']}); resuming would mix two models. Start a new run."
            )
        # the recorded config is the run's truth; keep it, just note the resume.
        old.setdefault("resumed", []).append(datetime.now(timezone.utc).isoformat())
        write_json(run.config_path, old)
        return run
    config = {
        "command": command,
        "args": _jsonable(args),
        "argv": sys.argv,
        "cwd": os.getcwd(),
        "started": datetime.now(timezone.utc).isoformat(),
        "versions": versions(),
    }
    if model_file is not None:
        config["model_file"] = {"path": str(model_file.path), "sha256": model_file.sha256}
    write_json(run.config_path, config)
    return run


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a") as fh:
        fh.write(json.dumps(_jsonable(record)) + "\n")


def truncate_jsonl(path: Path, last_epoch: int, last_step: int | None = None) -> None:
    """Drop records written after the checkpoint an interrupted run resumes from:
    epoch records of epochs after ``last_epoch``, step records after ``last_step``."""
    if not path.is_file():
        return

    def keep(record: dict[str, Any]) -> bool:
        if record.get("event") == "step" and last_step is not None:
            return int(record.get("step", 0)) <= last_step
        return int(record.get("epoch", 0)) <= last_epoch

    kept = [r for r in read_jsonl(path) if keep(r)]
    atomic_write(path, "".join(json.dumps(r) + "\n" for r in kept))
