"""Multi-process training under ``torchrun`` (one process per GPU, or per CPU
worker with gloo), with no change to the model file.

What the training loop (:class:`~sparsenet_design.training.trainer.Trainer`) uses:

* :func:`setup` reads the torchrun environment (``WORLD_SIZE``, ``RANK``,
  ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``) and starts the process group
  once: ``cpu:gloo,cuda:nccl`` when CUDA is in use (gradients over NCCL, small
  CPU objects over gloo), plain ``gloo`` on CPU; ``SDESIGN_DIST_BACKEND``
  overrides it. Without that environment everything here is a no-op for one
  process.
* :func:`shard` splits each *global* batch of the model file's data across the
  processes (see :class:`ShardedLoader`), so the model file's batch size stays
  the global batch size and a run on N processes follows the same trajectory
  as a run on one (to float tolerance).
* :func:`average_gradients` averages gradients with a few flattened all-reduces
  before the optimizer step. We do not wrap the model in
  ``DistributedDataParallel``: the model file's ``loss(model, batch)`` gets the
  user's own module (attributes and sub-modules work as in one process),
  gradient accumulation needs no ``no_sync``, communication happens once per
  optimizer step rather than per micro-batch, and OBProx-SG sees exactly the
  averaged gradient. The price is no overlap of communication with the
  backward pass (DDP overlaps per bucket); for the convolutional models this
  toolkit targets, the step is compute-bound.
* :func:`on_main` runs a side effect (a checkpoint write, an evaluation) on rank
  0 and hands its result, or its error, to every rank, so that all processes
  fail together instead of waiting for one that is gone.
"""
from __future__ import annotations

import atexit
import os
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import timedelta
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from ..errors import SdesignError, TrainingError

T = TypeVar("T")

BACKEND_ENV = "SDESIGN_DIST_BACKEND"
TIMEOUT_ENV = "SDESIGN_DIST_TIMEOUT"  # seconds a collective may wait (rank 0 evaluating, writing)
_DEFAULT_TIMEOUT_S = 3600
_BUCKET_BYTES = 256 * 2**20

_we_initialised = False


# ---- who am I -------------------------------------------------------------------

def _dist_ready() -> bool:
    dist = torch.distributed
    return dist.is_available() and dist.is_initialized()


def launched_by_torchrun() -> bool:
    """Whether this process was started by torchrun with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1 and "RANK" in os.environ


def world_size() -> int:
    if _dist_ready():
        return torch.distributed.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1") or 1) if launched_by_torchrun() else 1


def rank() -> int:
    if _dist_ready():
        return torch.distributed.get_rank()
    return int(os.environ.get("RANK", "0") or 0) if launched_by_torchrun() else 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0") or 0) if launched_by_torchrun() else 0


def is_main_process() -> bool:
    """Rank 0 (or the only process): the one that logs, shows progress and writes files."""
    return rank() == 0


def is_distributed() -> bool:
    return world_size() > 1


# ---- process group ----------------------------------------------------------------

def resolve_device(device: str | torch.device | None) -> torch.device:
    """The device of this process: ``cuda`` means ``cuda:LOCAL_RANK`` under torchrun."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda" and device.index is None and launched_by_torchrun():
        device = torch.device("cuda", local_rank())
    return device


def _backend(device: torch.device) -> str:
    chosen = os.environ.get(BACKEND_ENV)
    if chosen:
        return chosen
    return "cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo"


def setup(device: str | torch.device | None = None) -> torch.device:
    """Start the process group if torchrun launched us and nobody started it yet;
    return this process's device. Safe to call many times."""
    global _we_initialised
    device = resolve_device(device)
    if not launched_by_torchrun() or _dist_ready():
        return device
    dist = torch.distributed
    if not dist.is_available():
        raise TrainingError(
            "This process was started by torchrun (WORLD_SIZE > 1) but this PyTorch build has no "
            "torch.distributed; install a build with distributed support or run one process."
        )
    if device.type == "cuda":
        torch.cuda.set_device(device)
    timeout = timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, _DEFAULT_TIMEOUT_S)))
    backend = _backend(device)
    try:
        dist.init_process_group(backend=backend, timeout=timeout)
    except (RuntimeError, ValueError) as exc:
        raise TrainingError(
            f"Could not start the process group (backend {backend!r}, rank {rank()} of {world_size()}, "
            f"master {os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}): {exc}. "
            f"Check that every node can reach the master address, or pick a backend with {BACKEND_ENV}."
        ) from exc
    _we_initialised = True
    atexit.register(teardown)
    return device


def teardown() -> None:
    """Destroy the process group if :func:`setup` created it."""
    global _we_initialised
    if _we_initialised and _dist_ready():
        torch.distributed.destroy_process_group()
    _we_initialised = False


# ---- collectives --------------------------------------------------------------------

def barrier() -> None:
    if is_distributed() and _dist_ready():
        torch.distributed.barrier()


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` averaged over all processes, in place (and returned)."""
    if is_distributed():
        torch.distributed.all_reduce(tensor)
        tensor.div_(world_size())
    return tensor


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    if is_distributed():
        torch.distributed.all_reduce(tensor)
    return tensor


def broadcast_object(obj: T, src: int = 0) -> T:
    if not is_distributed():
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_object(obj: Any) -> list[Any]:
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * world_size()
    torch.distributed.all_gather_object(out, obj)
    return out


def on_main(fn: Callable[[], T]) -> T:
    """Run ``fn`` on rank 0 only; every rank returns its result or raises its error
    (an :class:`SdesignError` keeps its class and message on the other ranks)."""
    if not is_distributed():
        return fn()
    outcome: tuple[str, Any] = ("ok", None)
    if is_main_process():
        try:
            outcome = ("ok", fn())
        except BaseException as exc:  # re-raised below, after the other ranks heard of it
            failure = exc
            outcome = ("error", _portable_error(exc))
            broadcast_object(outcome)
            raise failure
    outcome = broadcast_object(outcome)
    if outcome[0] == "error":
        error = outcome[1]
        error.from_rank0 = True  # already reported by rank 0
        raise error
    return outcome[1]


def _portable_error(exc: BaseException) -> BaseException:
    if isinstance(exc, SdesignError):
        try:
            return type(exc)(str(exc))
        except Exception:
            pass
    return SdesignError(f"rank 0 failed ({type(exc).__name__}: {exc}); see its output for the traceback.")


def average_gradients(params: Iterable[nn.Parameter], loss_sum: torch.Tensor | None = None,
                      bucket_bytes: int = _BUCKET_BYTES) -> torch.Tensor | None:
    """Average the gradients of ``params`` over all processes, in place, with one
    all-reduce per flat bucket; also sum ``loss_sum`` (a scalar) over processes.

    A parameter without a gradient on some ranks (unused in their forward) gets
    the average with zeros there; one without a gradient on every rank keeps
    ``grad = None``, as it would in one process.
    """
    params = [p for p in params if p.requires_grad]
    if not is_distributed():
        return loss_sum
    n = world_size()
    groups: dict[tuple[torch.device, torch.dtype], list[nn.Parameter]] = {}
    for p in params:
        groups.setdefault((p.device, p.dtype), []).append(p)
    pending = []  # (work, flat buffer, params in it)
    for (device, dtype), members in groups.items():
        for bucket in _buckets(members, bucket_bytes):
            grads = [p.grad.reshape(-1) if p.grad is not None else torch.zeros(p.numel(), device=device, dtype=dtype)
                     for p in bucket]
            present = torch.tensor([p.grad is not None for p in bucket], device=device, dtype=dtype)
            flat = torch.cat([*grads, present])
            pending.append((torch.distributed.all_reduce(flat, async_op=True), flat, bucket))
    loss_work = None
    if loss_sum is not None:
        loss_work = torch.distributed.all_reduce(loss_sum, async_op=True)
    for work, flat, bucket in pending:
        work.wait()
        present = flat[-len(bucket):]
        offset = 0
        for i, p in enumerate(bucket):
            size = p.numel()
            if present[i] > 0:
                averaged = flat[offset:offset + size].view_as(p).div_(n)
                if p.grad is None:
                    p.grad = averaged.clone()
                else:
                    p.grad.copy_(averaged)
            offset += size
    if loss_work is not None:
        loss_work.wait()
    return loss_sum


def _buckets(params: Sequence[nn.Parameter], bucket_bytes: int) -> Iterator[list[nn.Parameter]]:
    bucket: list[nn.Parameter] = []
    size = 0
    for p in params:
        nbytes = p.numel() * p.element_size()
        if bucket and size + nbytes > bucket_bytes:
            yield bucket
            bucket, size = [], 0
        bucket.append(p)
        size += nbytes
    if bucket:
        yield bucket


def broadcast_module(model: nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers to every rank (a model built
    with a different random init per process starts in sync)."""
    if not is_distributed():
        return
    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            torch.distributed.broadcast(t.data, src=src)


def sync_buffers(model: nn.Module) -> None:
    """Average floating-point buffers (BatchNorm running statistics, which each
    rank updates from its own share of the batch) so every rank holds the same."""
    if not is_distributed():
        return
    with torch.no_grad():
        for b in model.buffers():
            if b.is_floating_point():
                all_reduce_mean(b.data)


# ---- data -----------------------------------------------------------------------------

def _mix(base: int, r: int) -> int:
    return (base * 6364136223846793005 + (r + 1) * 1442695040888963407) % (2**63 - 1)


def decorrelate_rng(r: int | None = None) -> None:
    """Give this rank its own random stream (dropout, augmentation), derived from
    the shared one so that it is still reproducible from the run's seed."""
    r = rank() if r is None else r
    base = int(torch.empty((), dtype=torch.int64).random_().item())
    s = _mix(base, r)
    torch.manual_seed(s)
    random.seed(s)
    np.random.seed(s % 2**32)


class _Indices(torch.utils.data.Dataset):
    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


def _identity(batch):
    return batch


class _RankBatches:
    """The batch sampler of this rank's loader: its index lists for the current epoch."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


_LOADER_SETTINGS = ("num_workers", "collate_fn", "pin_memory", "timeout", "worker_init_fn",
                    "multiprocessing_context", "prefetch_factor", "persistent_workers", "pin_memory_device",
                    "in_order")


class ShardedLoader:
    """One rank's part of a map-style ``DataLoader``.

    Each epoch, the original loader's batch sampler is run exactly as that
    loader would run it in one process (same RNG draws: the global RNG or the
    loader's ``generator``, both seeded per epoch), giving the list of global
    batches; rank ``r`` of ``N`` loads ``batch[r::N]`` of each. The model
    file's batch size is thus the global batch size, the epoch has as many
    steps as in one process, and the data position of a checkpoint (global
    batches done) means the same on any number of processes.

    :meth:`share` is the fraction of global batch ``i`` this rank holds; the
    trainer weights each rank's loss by it so the averaged gradient equals the
    one-process gradient even when the last batch does not split evenly. A rank
    whose share of a tiny last batch is empty reloads one sample with weight 0.
    """

    def __init__(self, loader: torch.utils.data.DataLoader, rank: int, world_size: int):
        self.original = loader
        self.rank, self.world_size = rank, world_size
        self._rank_batches = _RankBatches()
        self._shares: list[float] = []
        kwargs = {k: getattr(loader, k) for k in _LOADER_SETTINGS if hasattr(loader, k)}
        if not kwargs.get("num_workers"):
            kwargs.pop("prefetch_factor", None)
            kwargs["persistent_workers"] = False
        self._loader = torch.utils.data.DataLoader(loader.dataset, batch_sampler=self._rank_batches, **kwargs)

    @property
    def sampler(self):
        return self.original.sampler

    @property
    def generator(self):
        return self.original.generator

    @property
    def batch_size(self):
        return self.original.batch_size

    @property
    def dataset(self):
        return self.original.dataset

    def __len__(self) -> int:
        return len(self.original)

    def share(self, index: int) -> float:
        return self._shares[index] if index < len(self._shares) else 1.0 / self.world_size

    def _global_batches(self) -> list[list[int]]:
        # An index-only twin of the original loader draws from the RNGs exactly as it would.
        twin = torch.utils.data.DataLoader(
            _Indices(len(self.original.dataset)), batch_sampler=self.original.batch_sampler,
            collate_fn=_identity, generator=self.original.generator,
        )
        return [list(b) for b in twin]

    def __iter__(self):
        batches = self._global_batches()
        mine, shares = [], []
        for batch in batches:
            part = batch[self.rank::self.world_size]
            shares.append(len(part) / len(batch) if batch else 0.0)
            mine.append(part if part else batch[:1])
        self._rank_batches.batches, self._shares = mine, shares
        decorrelate_rng(self.rank)  # after the shared draws: own dropout and worker seeds
        return iter(self._loader)


class SplitBatches:
    """Fallback for data that is not a map-style ``DataLoader`` (an
    ``IterableDataset`` loader, a list, a generator function): every rank loads
    every batch and keeps its slice along dim 0 of each tensor. Correct, but the
    loading is not shared; prefer a map-style ``DataLoader`` for big data."""

    def __init__(self, data: Iterable, rank: int, world_size: int):
        self.original = data
        self.rank, self.world_size = rank, world_size
        self._shares: dict[int, float] = {}

    @property
    def sampler(self):
        return getattr(self.original, "sampler", None)

    @property
    def generator(self):
        return getattr(self.original, "generator", None)

    def __len__(self) -> int:
        return len(self.original)  # type: ignore[arg-type]

    def share(self, index: int) -> float:
        return self._shares.get(index, 1.0 / self.world_size)

    def __iter__(self):
        for index, batch in enumerate(self.original):
            total = _batch_len(batch)
            if total is None:
                raise TrainingError(
                    f"Cannot split a batch of type {type(batch).__name__} across {self.world_size} processes: "
                    "it holds no tensor with a batch dimension. Return a DataLoader from train_data(), "
                    "or batches of tensors (tuples, lists or dicts of them)."
                )
            part = _slice_batch(batch, self.rank, self.world_size)
            n = _batch_len(part) or 0
            self._shares[index] = n / total if total else 0.0
            yield part if n else _slice_batch(batch, 0, total)  # empty share: one sample, weight 0


def _batch_len(batch: Any) -> int | None:
    if isinstance(batch, torch.Tensor):
        return batch.shape[0] if batch.dim() else None
    values = batch.values() if isinstance(batch, dict) else batch if isinstance(batch, (list, tuple)) else ()
    for v in values:
        n = _batch_len(v)
        if n is not None:
            return n
    return None


def _slice_batch(batch: Any, r: int, n: int) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch[r::n] if batch.dim() else batch
    if isinstance(batch, dict):
        return {k: _slice_batch(v, r, n) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        parts = [_slice_batch(v, r, n) for v in batch]
        return type(batch)(*parts) if hasattr(batch, "_fields") else type(batch)(parts)
    return batch


def shard(data: Iterable) -> Iterable:
    """This rank's part of ``data`` (unchanged in one process); see :class:`ShardedLoader`."""
    n = world_size()
    if n == 1 or isinstance(data, (ShardedLoader, SplitBatches)):
        return data
    if isinstance(data, torch.utils.data.DataLoader) and not isinstance(
            data.dataset, torch.utils.data.IterableDataset) and data.batch_sampler is not None:
        return ShardedLoader(data, rank(), n)
    return SplitBatches(data, rank(), n)


# ---- launching -----------------------------------------------------------------------

def torchrun_command(nproc: int, module_args: Sequence[str], module: str = "sparsenet_design.cli") -> list[str]:
    """``python -m torch.distributed.run --standalone --nproc_per_node N -m MODULE ARGS``."""
    import sys

    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", module, *module_args]
