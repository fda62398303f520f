"""The one training engine (used by ``prune``, ``train``, ``compress`` and plugins).

:class:`Trainer` runs epochs over a re-iterable of batches with any optimizer
(OBProx-SG for sparsification, the model file's own for retraining), shows a
progress bar, evaluates and logs metrics each epoch, guards against a
non-finite loss, and checkpoints at each epoch end so that ``resume=True``
continues *exactly*: every epoch starts from RNG seeds derived from
``(seed, epoch)``, so the data order and any randomness in the model are the
same whether or not the run was interrupted, and the optimizer/scheduler/scaler
state comes back from the checkpoint.

Under ``torchrun`` (see :mod:`.distributed` and docs/distributed.md) the same
loop runs on every process: each loads its share of every global batch, the
gradients are averaged before ``optimizer.step`` (so OBProx-SG takes the same
step on every rank and the zero patterns stay identical), the epoch loss is
the global one, and rank 0 alone logs, evaluates, shows progress and writes
checkpoints. Checkpoints do not depend on the number of processes, so a run
can resume on another number of them.
"""
from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch import nn

from . import distributed
from .checkpoint import load_checkpoint, save_checkpoint
from .distributed import is_main_process
from .config import TrainConfig
from ..errors import CheckpointError, TrainingError
from .runs import append_jsonl, truncate_jsonl

_END = object()


__all__ = ["Trainer", "TrainResult", "default_device", "epoch_seed", "is_main_process", "move_to",
           "seed_epoch", "steps_per_epoch"]


def default_device() -> torch.device:
    """CUDA if available (``cuda:LOCAL_RANK`` under torchrun), else CPU."""
    return distributed.resolve_device(None)


def move_to(batch: Any, device: torch.device) -> Any:
    """``batch`` with every tensor inside (tuples, lists, dicts) moved to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: move_to(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        moved = [move_to(v, device) for v in batch]
        return type(batch)(*moved) if hasattr(batch, "_fields") else type(batch)(moved)
    return batch


def epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7919) % (2**63 - 1)


def seed_epoch(data: Iterable, seed: int, epoch: int) -> None:
    """Make epoch ``epoch`` reproducible: global RNGs, a DataLoader's own
    generator, and ``sampler.set_epoch`` (DistributedSampler) all derive from it."""
    s = epoch_seed(seed, epoch)
    torch.manual_seed(s)
    random.seed(s)
    np.random.seed(s % 2**32)
    generator = getattr(data, "generator", None)
    if isinstance(generator, torch.Generator):
        generator.manual_seed(s)
    sampler = getattr(data, "sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)


def steps_per_epoch(data: Iterable, accumulation: int = 1) -> int:
    """Optimizer steps in one pass over ``data`` (iterates once if it has no len)."""
    try:
        batches = len(data)  # type: ignore[arg-type]
    except TypeError:
        batches = sum(1 for _ in data)
    return max(1, math.ceil(batches / accumulation))


@dataclass
class TrainResult:
    epochs: int
    steps: int
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def final(self) -> dict[str, Any]:
        return self.history[-1] if self.history else {}


class Trainer:
    """Train ``model`` on ``data`` with ``loss_fn(model, batch)`` for ``epochs`` epochs.

    ``callbacks`` are objects with optional ``on_step(step, epoch, **metrics)``
    and ``on_epoch_end(epoch, step, **metrics)`` (e.g. a density tracker).
    ``extra_metrics(model)`` adds numbers (e.g. density) to each epoch record.
    Epoch records go to ``metrics_log`` (JSONL); the state after each epoch to
    ``checkpoint_path``.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable[[nn.Module, Any], torch.Tensor],
        data: Iterable,
        optimizer: torch.optim.Optimizer,
        *,
        epochs: int,
        scheduler: Any = None,
        evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
        extra_metrics: Callable[[nn.Module], dict[str, float]] | None = None,
        callbacks: Sequence[Any] = (),
        checkpoint_path: str | Path | None = None,
        metrics_log: str | Path | None = None,
        logs_to_truncate: Sequence[str | Path] = (),
        description: str = "train",
        config: TrainConfig | None = None,
        **options: Any,
    ):
        """``config`` (a :class:`TrainConfig`) says how the run runs; keywords named as
        its fields (``seed=1``, ``device="cpu"``) set them too."""
        config = TrainConfig.of(config, options)
        if epochs < 0:
            raise TrainingError(f"epochs must be ≥ 0, got {epochs}.")
        self.config = config
        self.device = distributed.setup(config.device)
        self.world_size = distributed.world_size()
        self.model = model.to(self.device)
        self.loss_fn = loss_fn
        self.data = distributed.shard(data)
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.epochs = epochs
        self.evaluate = evaluate
        self.extra_metrics = extra_metrics
        self.callbacks = list(callbacks)
        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path else None
        self.checkpoint_every_steps = config.checkpoint_every_steps
        self.metrics_log = Path(metrics_log) if metrics_log else None
        self.logs_to_truncate = [Path(p) for p in logs_to_truncate]
        self.seed = config.seed
        self.accumulation = config.accumulation
        self.amp = config.amp
        self.console = config.console or Console(stderr=True)
        self.progress = config.progress and is_main_process()
        self.description = description
        self.scaler = torch.amp.GradScaler("cuda") if self.amp and self.device.type == "cuda" else None
        self.epoch = 0  # completed epochs
        self.step = 0   # optimizer steps taken
        # inside an epoch: batches consumed and their summed loss (for mid-epoch checkpoints)
        self._batches_done = 0
        self._loss_sum = 0.0
        self._resume_rng: dict[str, Any] | None = None
        self.history: list[dict[str, Any]] = []

    # ---- state ----------------------------------------------------------------

    @staticmethod
    def _rng_state() -> dict[str, Any]:
        rng = {
            "torch": torch.get_rng_state(),
            "numpy": np.random.get_state(),
            "python": random.getstate(),
        }
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return rng

    def state_dict(self, rng_per_rank: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The training state. Nothing in it depends on the number of processes
        except ``rng_ranks`` (each rank's RNG, used on resume with as many)."""
        state = {
            "epoch": self.epoch,
            "step": self.step,
            "batches_done": self._batches_done,
            "loss_sum": self._loss_sum,
            "seed": self.seed,
            "optimizer": self.optimizer.state_dict(),
            "history": self.history,
            "world_size": self.world_size,
            "rng": rng_per_rank[0] if rng_per_rank else self._rng_state(),
        }
        if rng_per_rank and len(rng_per_rank) > 1:
            state["rng_ranks"] = rng_per_rank
        if self.scheduler is not None:
            state["scheduler"] = self.scheduler.state_dict()
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = int(state["epoch"])
        self.step = int(state["step"])
        self._batches_done = int(state.get("batches_done", 0))
        self._loss_sum = float(state.get("loss_sum", 0.0))
        self.history = list(state.get("history", []))
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except (ValueError, KeyError, RuntimeError) as exc:
            raise CheckpointError(
                f"The checkpoint's optimizer state does not fit this optimizer ({exc}); "
                "was the run started with other settings?"
            ) from exc
        if self.scheduler is not None and "scheduler" in state:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        rng = self._own_rng(state)
        if self._batches_done:
            # mid-epoch: the RNG state belongs after the batches already done; it is
            # restored once the resumed epoch has skipped past them (see _run_epoch)
            self._resume_rng = rng
            return
        self._restore_rng(rng)

    def _own_rng(self, state: dict[str, Any]) -> dict[str, Any]:
        """This rank's saved RNG: its own if the run had as many processes; else
        rank 0's (with one process) or a stream derived from it per rank (the
        split of each batch changed, so randomness cannot be the same anyway)."""
        per_rank = state.get("rng_ranks")
        me = distributed.rank()
        if per_rank and len(per_rank) == self.world_size:
            return per_rank[me]
        rng = state.get("rng", {})
        if self.world_size > 1:
            return {**rng, "derive_for_rank": me}
        return rng

    def _restore_rng(self, rng: dict[str, Any]) -> None:
        if "torch" in rng:
            torch.set_rng_state(rng["torch"])
        if "numpy" in rng:
            np.random.set_state(rng["numpy"])
        if "python" in rng:
            version, internal, gauss = rng["python"]
            random.setstate((version, tuple(internal), gauss))
        if "cuda" in rng and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(list(rng["cuda"]))
        if "derive_for_rank" in rng:
            distributed.decorrelate_rng(rng["derive_for_rank"])

    def save(self) -> None:
        """Checkpoint (all ranks call this; rank 0 writes, the others wait for it
        and fail with it if the write fails)."""
        if self.checkpoint_path is None:
            return
        rng = distributed.all_gather_object(self._rng_state()) if self.world_size > 1 else None
        state = self.state_dict(rng)
        distributed.on_main(lambda: save_checkpoint(self.checkpoint_path, self.model.state_dict(), state))

    def resume(self) -> None:
        if self.checkpoint_path is None or not self.checkpoint_path.is_file():
            raise CheckpointError(f"Cannot resume: no checkpoint at {self.checkpoint_path}.")
        model_state, state = load_checkpoint(self.checkpoint_path)
        try:
            self.model.load_state_dict(model_state)
        except RuntimeError as exc:
            raise CheckpointError(
                f"Checkpoint {self.checkpoint_path} does not fit this model: {str(exc).splitlines()[0]}"
            ) from exc
        self.load_state_dict(state)
        for log in [self.metrics_log, *self.logs_to_truncate]:
            if log is not None and is_main_process():
                truncate_jsonl(log, self.epoch, self.step)

    # ---- loop -----------------------------------------------------------------

    def _backward(self, loss: torch.Tensor) -> None:
        loss = loss / self.accumulation
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
        else:
            loss.backward()

    def _optimizer_step(self, epoch: int, loss_share: float = 0.0) -> float | None:
        """One optimizer step. With several processes the gradients are averaged
        first and ``loss_share`` (this rank's weighted loss of the step's
        batches) is summed into the global loss, which is returned; a non-finite
        global loss stops every rank before the weights change."""
        global_loss = None
        if self.world_size > 1:
            params = [p for group in self.optimizer.param_groups for p in group["params"]]
            summed = distributed.average_gradients(
                params, torch.tensor(loss_share, dtype=torch.float64, device=self.device))
            global_loss = float(summed)
            if not math.isfinite(global_loss):
                raise self._non_finite(global_loss, epoch)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return global_loss

    def _autocast(self):
        dtype = torch.bfloat16 if self.device.type == "cpu" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype, enabled=self.amp)

    def _run_epoch(self, epoch: int, bar: Progress | None, task) -> float:
        self.model.train()
        seed_epoch(self.data, self.seed, epoch)
        skip = self._batches_done
        total, count, pending = self._loss_sum, skip, 0
        several = self.world_size > 1
        share_of_step = 0.0  # several processes: this rank's share of the step's global loss
        self.optimizer.zero_grad(set_to_none=True)
        iterator = iter(self.data)
        for _ in range(skip):  # resumed mid-epoch: the order is the same, so skip what was done
            if next(iterator, _END) is _END:
                break
            if bar is not None:
                bar.update(task, advance=1)
        if self._resume_rng is not None:  # the RNG as it was right after those batches
            self._restore_rng(self._resume_rng)
            self._resume_rng = None
        for index, batch in enumerate(iterator, start=skip):
            batch = move_to(batch, self.device)
            with self._autocast():
                loss = self.loss_fn(self.model, batch)
            if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
                raise TrainingError(
                    f"loss(model, batch) must return a scalar tensor, got "
                    f"{type(loss).__name__}{tuple(loss.shape) if isinstance(loss, torch.Tensor) else ''}."
                )
            value = float(loss.detach())
            if several:
                # weight by this rank's share of the global batch: the averaged
                # gradient is then the one-process gradient of the whole batch
                share = self.data.share(index)
                loss = loss * (share * self.world_size)
                share_of_step += value * share
            elif not math.isfinite(value):
                raise self._non_finite(value, epoch)
            else:
                total += value
            self._backward(loss)
            pending += 1
            count += 1
            if pending == self.accumulation:
                global_loss = self._optimizer_step(epoch, share_of_step)
                if several:
                    total += global_loss
                    value = global_loss / pending
                pending, share_of_step = 0, 0.0
                if is_main_process():
                    for cb in self.callbacks:
                        if hasattr(cb, "on_step"):
                            cb.on_step(self.step, epoch, loss=value)
                if self.checkpoint_every_steps and self.step % self.checkpoint_every_steps == 0:
                    self._batches_done, self._loss_sum = index + 1, total
                    distributed.sync_buffers(self.model)
                    self.save()
            if bar is not None:
                bar.update(task, advance=1, description=f"{self.description} {epoch}/{self.epochs} loss {value:.4g}")
        if pending:
            global_loss = self._optimizer_step(epoch, share_of_step)
            if several:
                total += global_loss
        self._batches_done, self._loss_sum = 0, 0.0
        if count == 0:
            raise TrainingError("train_data() yielded no batches; training needs at least one.")
        return total / count

    def _non_finite(self, value: float, epoch: int) -> TrainingError:
        where = f"epoch {epoch}, step {self.step + 1}"
        if self.checkpoint_path and self.checkpoint_path.is_file():
            last = f"epoch {self.epoch}" + (f" + {self._batches_done} batches" if self._batches_done else "")
            kept = f"the last good checkpoint (after {last}) is kept at {self.checkpoint_path}"
        else:
            kept = "no checkpoint was written yet"
        return TrainingError(
            f"The loss became {value} at {where}; training stopped and {kept}. "
            "Lower the learning rate (or λ), check the data for NaNs, or try without --amp."
        )

    def _progress(self) -> Progress:
        return Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TimeRemainingColumn(), console=self.console, transient=True,
        )

    def fit(self, resume: bool = False) -> TrainResult:
        if resume:
            self.resume()
            if self.progress:
                self.console.print(f"[dim]resumed {self.description} after epoch {self.epoch} (step {self.step})")
        elif self.metrics_log is not None and is_main_process():
            self.metrics_log.parent.mkdir(parents=True, exist_ok=True)
            self.metrics_log.write_text("")
        distributed.broadcast_module(self.model)  # every rank starts from rank 0's weights
        try:
            n_batches = len(self.data)  # type: ignore[arg-type]
        except TypeError:
            n_batches = None
        bar = self._progress() if self.progress else None
        if bar is not None:
            bar.start()
        try:
            for epoch in range(self.epoch + 1, self.epochs + 1):
                task = bar.add_task(f"{self.description} {epoch}/{self.epochs}", total=n_batches) if bar else None
                mean_loss = self._run_epoch(epoch, bar, task)
                if bar is not None:
                    bar.remove_task(task)
                if self.scheduler is not None:
                    self.scheduler.step()
                self.epoch = epoch
                record = self._epoch_record(epoch, mean_loss)
                self.history.append(record)
                if is_main_process():
                    if self.metrics_log is not None:
                        append_jsonl(self.metrics_log, record)
                    for cb in self.callbacks:
                        if hasattr(cb, "on_epoch_end"):
                            extras = {k: v for k, v in record.items() if k not in ("epoch", "step")}
                            cb.on_epoch_end(epoch, self.step, **extras)
                    self._print_epoch(record)
                self.save()
        finally:
            if bar is not None:
                bar.stop()
        return TrainResult(self.epoch, self.step, list(self.history))

    def _epoch_record(self, epoch: int, mean_loss: float) -> dict[str, Any]:
        """Loss, extra metrics and evaluation; with several processes, the
        (identical) weights are measured and evaluated on rank 0 only and the
        record is shared with the other ranks."""
        distributed.sync_buffers(self.model)

        def measure() -> dict[str, Any]:
            record: dict[str, Any] = {"epoch": epoch, "step": self.step, "loss": mean_loss}
            if self.extra_metrics is not None:
                record.update(self.extra_metrics(self.model))
            if self.evaluate is not None:
                record.update(self.evaluate(self.model))
            return record

        return distributed.on_main(measure)

    def _print_epoch(self, record: dict[str, Any]) -> None:
        if not self.progress:
            return
        parts = [f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                 for k, v in record.items() if k not in ("epoch", "step")]
        self.console.print(f"{self.description} epoch {record['epoch']}/{self.epochs}: " + ", ".join(parts))
