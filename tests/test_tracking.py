"""DensityTracker: JSON-lines density log and the rich table."""
from __future__ import annotations

import json

import pytest
import torch
from rich.console import Console
from rich.live import Live
from torch import nn

from sparsenet_design.design.density import density_report
from sparsenet_design.errors import CheckpointError, SdesignError
from sparsenet_design.training.tracking import DensityTracker, density_table, read_density_log


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3), nn.BatchNorm1d(3))


def _zero_fraction(weight, fraction):
    with torch.no_grad():
        flat = weight.view(-1)
        flat[: int(fraction * flat.numel())] = 0


def test_epoch_and_step_records(tmp_path):
    model = _model()
    log = tmp_path / "run" / "density.jsonl"
    tracker = DensityTracker(model, log, every_n_steps=3)
    first = tracker.on_epoch_end(0, 0)
    assert first["overall_density"] == 1.0 and first["layers"] == {"0": 1.0, "3": 1.0}
    logged = [tracker.on_step(step, 1, loss=torch.tensor(0.25)) for step in range(1, 8)]
    assert [r is not None for r in logged] == [False, False, True, False, False, True, False]
    _zero_fraction(model[0].weight, 0.5)
    _zero_fraction(model[3].weight, 0.25)
    last = tracker.on_epoch_end(1, 7, loss=0.2, psnr=31.5)

    conv_numel, lin_numel = model[0].weight.numel(), model[3].weight.numel()
    expected_overall = (conv_numel // 2 + (lin_numel - int(0.25 * lin_numel))) / (conv_numel + lin_numel)
    assert last["overall_density"] == pytest.approx(expected_overall)
    assert last["layers"]["0"] == pytest.approx(0.5)
    assert last["layers"] == density_report(model).as_dict()

    records = read_density_log(log)
    assert [(r["epoch"], r["step"], r["event"]) for r in records] == [
        (0, 0, "epoch"), (1, 3, "step"), (1, 6, "step"), (1, 7, "epoch")]
    assert records[1]["loss"] == 0.25 and records[-1]["psnr"] == 31.5
    assert records[-1] == json.loads(json.dumps(last))
    assert list(records[-1]["layers"]) == ["0", "3"]  # model order


def test_no_step_records_without_every_n_steps(tmp_path):
    tracker = DensityTracker(_model(), tmp_path / "d.jsonl")
    assert tracker.on_step(10, 0) is None
    assert not (tmp_path / "d.jsonl").exists()


def test_torn_last_line_is_ignored_but_broken_middle_line_is_an_error(tmp_path):
    log = tmp_path / "d.jsonl"
    tracker = DensityTracker(_model(), log)
    tracker.on_epoch_end(0, 0)
    tracker.on_epoch_end(1, 5)
    text = log.read_text()
    log.write_text(text + '{"epoch": 2, "ste')
    assert len(read_density_log(log)) == 2
    log.write_text("garbage\n" + text)
    with pytest.raises(CheckpointError, match="line 1|Line 1"):
        read_density_log(log)


def test_bad_arguments_are_clear_errors(tmp_path):
    with pytest.raises(SdesignError):
        DensityTracker(_model(), tmp_path / "d.jsonl", every_n_steps=0)
    with pytest.raises(SdesignError, match="reserved"):
        DensityTracker(_model(), tmp_path / "d.jsonl").on_epoch_end(0, 0, layers=1)
    with pytest.raises(CheckpointError):
        read_density_log(tmp_path / "missing.jsonl")


def _render(renderable, width=100):
    console = Console(width=width, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_density_table_shows_every_layer_and_the_change(tmp_path):
    model = _model()
    tracker = DensityTracker(model, tmp_path / "d.jsonl")
    before = tracker.on_epoch_end(0, 0)
    _zero_fraction(model[0].weight, 0.75)
    after = tracker.on_epoch_end(1, 10)
    text = _render(density_table(after, previous=before))
    assert "epoch 1" in text and "25.0%" in text and "-75.0%" in text and "overall" in text
    # the tracker renders its latest record (for rich.live.Live)
    assert "25.0%" in _render(tracker)
    # reports and plain mappings work too
    assert "25.0%" in _render(density_table(density_report(model)))
    assert "12.5%" in _render(density_table({"a": 0.125}))
    sparse_only = _render(density_table({"a": 0.9, "b": 0.1, "c": 0.5}, max_rows=2))
    assert "b" in sparse_only and " a " not in sparse_only


def test_live_display_with_a_console(tmp_path):
    console = Console(record=True, width=100, color_system=None, force_terminal=False)
    model = _model()
    tracker = DensityTracker(model, tmp_path / "d.jsonl", console=console)
    with Live(tracker, console=console, auto_refresh=False) as live:
        tracker.on_epoch_end(0, 0)
        live.refresh()
    assert "overall" in console.export_text()
