"""Run one job per item in worker processes, with a per-item time limit.

A worker that runs past the limit (or dies) is killed and replaced, so one slow
or crashing model cannot hang or sink a whole benchmark. Workers are reused
between items (importing torch costs seconds).
"""
from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any


def _worker(func: Callable[[Any], Any], conn, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    while True:
        item = conn.recv()
        if item is None:
            return
        try:
            result = ("ok", func(item))
        except BaseException as exc:  # report, keep serving
            result = ("error", f"{type(exc).__name__}: {exc}")
        conn.send(result)


class _Slot:
    def __init__(self, ctx, func, threads):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, args=(func, child, threads), daemon=True)
        self.proc.start()
        child.close()
        self.item: Any = None
        self.started = 0.0

    def give(self, item) -> None:
        self.item, self.started = item, time.monotonic()
        self.conn.send(item)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.join()
        self.conn.close()


def run_isolated(
    func: Callable[[Any], Any],
    items: Iterable[Any],
    *,
    timeout: float,
    workers: int = 2,
    threads: int = 1,
) -> Iterator[tuple[Any, str, Any]]:
    """Yield ``(item, status, value)`` as items finish, in completion order:
    status ``ok`` (value = func's result), ``error`` (value = message),
    ``timeout`` or ``crashed``. ``func`` must be importable (module level)."""
    ctx = mp.get_context("spawn")
    pending = list(items)
    slots = [_Slot(ctx, func, threads) for _ in range(min(workers, len(pending)))]
    busy: list[_Slot] = []
    idle = list(slots)
    try:
        while pending or busy:
            while pending and idle:
                slot = idle.pop()
                slot.give(pending.pop(0))
                busy.append(slot)
            time.sleep(0.02)
            for slot in list(busy):
                outcome = None
                if slot.conn.poll():
                    try:
                        outcome = slot.conn.recv()
                    except (EOFError, OSError):
                        outcome = ("crashed", f"worker died (exit code {slot.proc.exitcode})")
                elif not slot.proc.is_alive():
                    outcome = ("crashed", f"worker died (exit code {slot.proc.exitcode})")
                elif time.monotonic() - slot.started > timeout:
                    outcome = ("timeout", f"no result within {timeout:.0f} s")
                if outcome is None:
                    continue
                busy.remove(slot)
                item = slot.item
                if outcome[0] in ("timeout", "crashed"):
                    slot.kill()
                    slot = _Slot(ctx, func, threads)
                idle.append(slot)
                yield item, outcome[0], outcome[1]
    finally:
        for slot in busy + idle:
            try:
                slot.conn.send(None)
            except (OSError, BrokenPipeError):
                pass
            slot.proc.join(timeout=2)
            if slot.proc.is_alive():
                slot.kill()
