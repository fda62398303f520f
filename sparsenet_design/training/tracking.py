"""Density tracking during training: a JSON-lines log with per-layer and overall
density after each epoch (and every N optimizer steps), and a rich table for
live display.

Each log line is one record::

    {"epoch": 3, "step": 120, "event": "epoch", "overall_density": 0.41,
     "layers": {"features.0": 0.93, ...}, **metrics}

``event`` is ``"epoch"`` for end-of-epoch records and ``"step"`` for the
every-N-steps ones.
"""
from __future__ import annotations

import json
import math
import numbers
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text
from torch import nn

from ..design.density import DensityReport, density_report
from ..errors import CheckpointError, SdesignError
from ..files import read_jsonl


def _plain(value: Any) -> Any:
    """A JSON-friendly version of a metric (tensors and numpy scalars become numbers)."""
    if hasattr(value, "item") and getattr(value, "ndim", getattr(value, "dim", lambda: 0)) in (0, ()):
        value = value.item()
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


_RESERVED = {"epoch", "step", "event", "overall_density", "layers"}


class DensityTracker:
    """Append density records of ``model`` to ``log_path`` (JSON lines).

    Use as a training-loop callback: :meth:`on_step` after each optimizer step
    (logs when ``every_n_steps`` divides the step), :meth:`on_epoch_end` after
    each epoch. With ``console`` (a ``rich.console.Console``), each epoch's
    table is printed there. The tracker is itself a rich renderable showing
    the latest record, so ``rich.live.Live(tracker)`` keeps a live table.
    """

    def __init__(self, model: nn.Module, log_path: str | Path, every_n_steps: int | None = None,
                 console: Console | None = None) -> None:
        if every_n_steps is not None and (isinstance(every_n_steps, bool) or not isinstance(every_n_steps, int)
                                          or every_n_steps < 1):
            raise SdesignError(f"every_n_steps must be a whole number ≥ 1 or None, got {every_n_steps!r}.")
        self.model = model
        self.log_path = Path(log_path)
        self.every_n_steps = every_n_steps
        self.console = console
        self.latest: dict[str, Any] | None = None
        self._previous: dict[str, Any] | None = None

    def record(self, epoch: int, step: int, event: str, **metrics: Any) -> dict[str, Any]:
        clash = _RESERVED & metrics.keys()
        if clash:
            raise SdesignError(f"DensityTracker: metric names {sorted(clash)} are reserved for the record itself; rename them.")
        report = density_report(self.model)
        record = {
            "epoch": int(epoch),
            "step": int(step),
            "event": event,
            "overall_density": report.overall,
            "layers": report.as_dict(),
            **{key: _plain(value) for key, value in metrics.items()},
        }
        try:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")
        except OSError as exc:
            raise CheckpointError(f"Cannot write the density log {self.log_path}: {exc}. "
                                  "Check that the run folder exists and is writable.") from exc
        self._previous, self.latest = self.latest, record
        return record

    def on_step(self, step: int, epoch: int, **metrics: Any) -> dict[str, Any] | None:
        if self.every_n_steps is None or step % self.every_n_steps != 0:
            return None
        return self.record(epoch, step, "step", **metrics)

    def on_epoch_end(self, epoch: int, step: int, **metrics: Any) -> dict[str, Any]:
        record = self.record(epoch, step, "epoch", **metrics)
        if self.console is not None:
            self.console.print(density_table(record, previous=self._previous))
        return record

    def __rich__(self):
        if self.latest is None:
            return Text("density: no record yet", style="dim")
        return density_table(self.latest, previous=self._previous)


def read_density_log(path: str | Path) -> list[dict[str, Any]]:
    """The records of a density log, in order. A torn last line (a run killed
    while writing) is ignored; a broken line elsewhere is an error."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"The density log {path} does not exist; pass the density.jsonl of a prune run.")
    records = read_jsonl(path, "density log")
    for number, record in enumerate(records, start=1):
        if not isinstance(record, dict) or "overall_density" not in record:
            raise CheckpointError(
                f"Record {number} of the density log {path} is not a density record. "
                "The file was edited or mixed with another log; remove the line or start a new run."
            )
    return records


def _as_layers(source: DensityReport | Mapping[str, Any]) -> tuple[dict[str, float], float, dict[str, Any]]:
    """(layer densities in model order, overall density, record extras)."""
    if isinstance(source, DensityReport):
        return source.as_dict(), source.overall, {}
    if isinstance(source, Mapping) and "layers" in source:
        layers = dict(source["layers"])
        overall = source.get("overall_density")
        if overall is None:
            overall = sum(layers.values()) / len(layers) if layers else 1.0
        return layers, float(overall), dict(source)
    if isinstance(source, Mapping):
        layers = {str(k): float(v) for k, v in source.items()}
        return layers, (sum(layers.values()) / len(layers) if layers else 1.0), {}
    raise SdesignError(
        f"Expected a DensityReport, a density record or a {{layer: density}} mapping, got {type(source).__name__}."
    )


def _bar(density: float, width: int) -> Text:
    filled = max(0, min(width, round(density * width)))
    style = "green" if density >= 0.5 else "yellow" if density >= 0.2 else "red"
    return Text("█" * filled + "·" * (width - filled), style=style)


def density_table(source: DensityReport | Mapping[str, Any], previous: Mapping[str, Any] | None = None,
                  *, title: str | None = None, max_rows: int | None = None, bar_width: int = 20) -> Table:
    """A rich table of per-layer density (model order) and the overall density.

    ``source`` is a :class:`DensityReport`, a log record or a ``{layer: density}``
    mapping; ``previous`` (same kinds) adds a change column. ``max_rows`` keeps
    the sparsest layers only (for big models in a live view)."""
    layers, overall, extras = _as_layers(source)
    before = _as_layers(previous)[0] if previous is not None else None
    if title is None:
        title = "density"
        if "epoch" in extras:
            title += f" — epoch {extras['epoch']}, step {extras.get('step', '?')}"
    table = Table(title=title, show_footer=True, expand=False)
    table.add_column("layer", footer="overall", no_wrap=True)
    table.add_column("density", justify="right", footer=f"{overall:6.1%}")
    table.add_column("", footer=_bar(overall, bar_width))
    if before is not None:
        old_overall = _as_layers(previous)[1]
        table.add_column("change", justify="right", footer=f"{overall - old_overall:+.1%}")
    names = list(layers)
    if max_rows is not None and len(names) > max_rows:
        keep = set(sorted(names, key=lambda n: layers[n])[:max_rows])
        names = [n for n in names if n in keep]
    for name in names:
        row = [name or "(model)", f"{layers[name]:6.1%}", _bar(layers[name], bar_width)]
        if before is not None:
            row.append(f"{layers[name] - before[name]:+.1%}" if name in before else "")
        table.add_row(*row)
    return table
