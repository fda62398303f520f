"""Density plots: files written, one line per run, one bar per layer in model order."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from sparsenet_design.design.density import density_report
from sparsenet_design.errors import SdesignError
from sparsenet_design.report.plots import (
    density_curves_figure,
    layer_density_figure,
    plot_density_curves,
    plot_layer_density,
    plot_metric_vs_density,
)
from sparsenet_design.training.tracking import DensityTracker


def _records(densities):
    return [{"epoch": e, "step": 10 * e, "event": "epoch", "overall_density": d, "layers": {}}
            for e, d in enumerate(densities)]


def _check_files(paths, stem):
    assert [p.name for p in paths] == [stem.name + ".png", stem.name + ".svg"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in paths[1].read_text()


def test_density_curves_from_records_and_logs(tmp_path):
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    log = tmp_path / "run.jsonl"
    tracker = DensityTracker(model, log, every_n_steps=1)
    tracker.on_epoch_end(0, 0)
    tracker.on_step(1, 1)  # step records are left out when epoch records exist
    with torch.no_grad():
        model[0].weight[:2] = 0
    tracker.on_epoch_end(1, 2)
    runs = {"lr·λ=1e-6": _records([1.0, 0.6, 0.3]), "from log": log}
    fig = density_curves_figure(runs)
    lines = fig.axes[0].get_lines()
    assert [line.get_label() for line in lines] == list(runs)
    assert list(lines[1].get_xdata()) == [0, 1]
    assert list(lines[1].get_ydata()) == pytest.approx([100.0, 100 * (8 + 8) / 24])
    _check_files(plot_density_curves(runs, tmp_path / "out" / "curves"), tmp_path / "out" / "curves")


def test_metric_vs_density(tmp_path):
    paths = plot_metric_vs_density({"a": [(1.0, 35.7), (0.5, 35.2), (0.2, 34.0)]}, "PSNR (dB)", tmp_path / "m.png")
    _check_files(paths, tmp_path / "m")


def test_layer_density_bars_in_model_order(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1), nn.Flatten())
    model.head = nn.Linear(2, 2)
    with torch.no_grad():
        model[2].weight.zero_()
    report = density_report(model)
    fig = layer_density_figure(report)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "2", "head"]
    assert [p.get_height() for p in ax.patches] == pytest.approx([100.0, 0.0, 100.0])
    _check_files(plot_layer_density(report, tmp_path / "bars", title="run"), tmp_path / "bars")
    mapping_fig = layer_density_figure({"enc.conv": 0.3, "dec.conv": 0.1})
    assert [p.get_height() for p in mapping_fig.axes[0].patches] == pytest.approx([30.0, 10.0])


def test_bad_inputs_are_clear_errors(tmp_path):
    with pytest.raises(SdesignError):
        plot_density_curves({}, tmp_path / "x")
    with pytest.raises(SdesignError, match="no density records"):
        plot_density_curves({"a": []}, tmp_path / "x")
    with pytest.raises(SdesignError):
        plot_layer_density({}, tmp_path / "x")
    with pytest.raises(SdesignError):
        plot_layer_density(42, tmp_path / "x")
