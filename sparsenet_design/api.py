"""The library entry points: :func:`compress` (the whole method) and its stages
:func:`sparsify` and :func:`train` (``density_report``, ``reconstruct`` and
``apply_spec`` live in their own modules).

    from sparsenet_design import compress
    result = compress(model, loader, loss_fn, example_inputs=(x,), lr=0.1, lam=1e-4, epochs=10)
    result.compact_model, result.spec, result.density, result.sparse_model
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .design.density import DensityReport, density_report
from .training.distributed import is_main_process
from .training.config import TrainConfig
from .training.trainer import Trainer, TrainResult, steps_per_epoch

LossFn = Callable[[nn.Module, Any], torch.Tensor]


def default_n_p(epochs: int) -> int:
    """Epochs of P-steps when none are given: half the run, as the paper compares
    equal numbers of P- and O-steps."""
    return math.ceil(epochs / 2)


def obproxsg_for(model: nn.Module, *, lr: float, lam: float, n_p_steps: int, momentum: float = 0.0):
    """OBProx-SG over ``model`` with the l1 penalty on prunable weights only."""
    from .optim import OBProxSG, l1_param_groups

    return OBProxSG(l1_param_groups(model, lam, lr=lr), lr=lr, lam=lam, n_p=n_p_steps, momentum=momentum)


@dataclass
class SparsifyResult:
    model: nn.Module
    density: DensityReport
    history: list[dict[str, Any]] = field(default_factory=list)


def sparsify(
    model: nn.Module,
    data: Iterable,
    loss_fn: LossFn,
    *,
    lr: float,
    lam: float,
    epochs: int,
    n_p: int | None = None,
    momentum: float = 0.0,
    evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
    every_n_steps: int | None = None,
    training: TrainConfig | None = None,
    **options: Any,
) -> SparsifyResult:
    """Train ``model`` in place with OBProx-SG (``n_p`` epochs of P-steps, then
    O-steps) and return it with its density report.

    ``training`` (a :class:`~sparsenet_design.training.config.TrainConfig`), or its
    fields as keywords (``seed=1``, ``run_dir=...``), says how the run runs. With a
    ``run_dir`` the run is logged (``density.jsonl``, ``metrics.jsonl``) and
    checkpointed each epoch (and every ``checkpoint_every_steps`` optimizer steps),
    and ``resume=True`` continues it exactly; ``every_n_steps`` also logs density
    every N steps.
    """
    from .training.runs import RunFolder

    config = TrainConfig.of(training, options)
    n_p = default_n_p(epochs) if n_p is None else n_p
    per_epoch = steps_per_epoch(data, config.accumulation)
    optimizer = obproxsg_for(model, lr=lr, lam=lam, n_p_steps=n_p * per_epoch, momentum=momentum)
    run = RunFolder(Path(config.run_dir)) if config.run_dir is not None else None
    callbacks = []
    if run is not None:
        from .training.tracking import DensityTracker

        tracker = DensityTracker(model, run.density_log, every_n_steps=every_n_steps)
        if not config.resume and is_main_process():  # under torchrun, rank 0 writes the logs
            run.density_log.unlink(missing_ok=True)
            tracker.on_epoch_end(0, 0)
        callbacks.append(tracker)
    trainer = Trainer(
        model, loss_fn, data, optimizer, epochs=epochs, evaluate=evaluate,
        extra_metrics=lambda m: {"density": density_report(m).overall},
        callbacks=callbacks,
        checkpoint_path=run.checkpoint if run else None,
        metrics_log=run.metrics_log if run else None,
        logs_to_truncate=[run.density_log] if run else (),
        description="sparsify", config=config,
    )
    result = trainer.fit(resume=config.resume)
    return SparsifyResult(model, density_report(model), result.history)


def default_optimizer(params) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=1e-3)


def train(
    model: nn.Module,
    data: Iterable,
    loss_fn: LossFn,
    *,
    epochs: int,
    make_optimizer: Callable | None = None,
    evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
    description: str = "train",
    training: TrainConfig | None = None,
    **options: Any,
) -> TrainResult:
    """Plain training (e.g. of the compact model). ``make_optimizer(params)``
    returns an optimizer or ``(optimizer, scheduler)``; default Adam(lr=1e-3).
    ``training`` / keywords: as for :func:`sparsify`."""
    from .training.runs import RunFolder

    config = TrainConfig.of(training, options)
    made = (make_optimizer or default_optimizer)(model.parameters())
    optimizer, scheduler = made if isinstance(made, tuple) else (made, None)
    run = RunFolder(Path(config.run_dir)) if config.run_dir is not None else None
    trainer = Trainer(
        model, loss_fn, data, optimizer, epochs=epochs, scheduler=scheduler, evaluate=evaluate,
        checkpoint_path=run.checkpoint if run else None,
        metrics_log=run.metrics_log if run else None,
        description=description, config=config,
    )
    return trainer.fit(resume=config.resume)


def check_traceable(model: nn.Module, example_inputs: Sequence, leaf_modules: Sequence[type] = ()):
    """Trace ``model`` on ``example_inputs`` (which runs it on them) before any
    training, so that inputs that do not fit, or code no tracer can follow, fail
    now with a :class:`~sparsenet_design.errors.TraceError` instead of after the
    sparsification epochs. Returns the :class:`~sparsenet_design.tracing.trace.TracedModel`."""
    from .tracing.trace import trace

    device = next((t.device for t in [*model.parameters(), *model.buffers()]), torch.device("cpu"))
    inputs = tuple(x.to(device) if isinstance(x, torch.Tensor) else x for x in example_inputs)
    return trace(model, inputs, leaf_modules=tuple(leaf_modules))


@dataclass
class CompressResult:
    compact_model: nn.Module
    spec: Any  # DesignSpec
    density: DensityReport
    sparse_model: nn.Module
    history: list[dict[str, Any]] = field(default_factory=list)
    retrain_history: list[dict[str, Any]] = field(default_factory=list)


def compress(
    model: nn.Module,
    data: Iterable,
    loss_fn: LossFn,
    *,
    example_inputs: Sequence,
    lr: float = 0.1,
    lam: float = 1e-5,
    epochs: int = 10,
    n_p: int | None = None,
    momentum: float = 0.0,
    strategy: str = "min",
    inherit: bool = False,
    pinned: Sequence[str] = (),
    leaf_modules: Sequence[type] = (),
    evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
    retrain_epochs: int = 0,
    make_optimizer: Callable | None = None,
    training: TrainConfig | None = None,
    **options: Any,
) -> CompressResult:
    """Sparsify a copy of ``model`` with OBProx-SG, read its per-layer density,
    rebuild a compact dense model by the √d rule (``strategy`` min/max/mean) and
    optionally retrain it from scratch for ``retrain_epochs``.

    ``model`` itself is left untouched; ``example_inputs`` are the positional
    arguments of one ``forward`` call, used to trace the model. The model is traced
    first, so inputs that do not fit fail before any training. ``training`` (or its
    fields as keywords: ``seed``, ``device``, ``progress``, …) applies to both the
    sparsification and the retraining.
    """
    from .rebuild.reconstruct import reconstruct

    check_traceable(model, example_inputs, leaf_modules)
    sparse = copy.deepcopy(model)
    config = TrainConfig.of(training, options)
    sparsified = sparsify(
        sparse, data, loss_fn, lr=lr, lam=lam, epochs=epochs, n_p=n_p, momentum=momentum,
        evaluate=evaluate, training=config,
    )
    sparse_cpu = sparse.to("cpu")
    inputs = tuple(x.cpu() if isinstance(x, torch.Tensor) else x for x in example_inputs)
    compact, spec = reconstruct(
        sparse_cpu, inputs, strategy=strategy, inherit=inherit,
        pinned=tuple(pinned), leaf_modules=tuple(leaf_modules),
    )
    retrain_history: list[dict[str, Any]] = []
    if retrain_epochs > 0:
        retrain_history = train(
            compact, data, loss_fn, epochs=retrain_epochs, make_optimizer=make_optimizer,
            evaluate=evaluate, description="retrain", training=config,
        ).history
    return CompressResult(compact, spec, sparsified.density, sparse, sparsified.history, retrain_history)
