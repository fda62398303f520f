import torch
from rich.console import Console
from torch import nn

from sparsenet_design.report.summary import (
    ModelSummary, comparison_table, count_macs, count_params, cpu_latency_ms, size_mb, summarize,
)


def test_params_and_size_count_tied_weights_once():
    model = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8), nn.BatchNorm1d(8))
    model[1].weight = model[0].weight
    expected = 8 * 8 + 8 + 8 + 2 * 8  # shared weight once, two biases, BN affine
    assert count_params(model) == expected
    # + running mean/var (16 float32) + num_batches_tracked (one int64)
    assert size_mb(model) == (expected * 4 + 16 * 4 + 8) / 1e6


def test_macs_match_hand_count():
    conv = nn.Conv2d(3, 8, 3)
    assert count_macs(conv, (torch.randn(1, 3, 10, 10),)) == 8 * 8 * 8 * 3 * 9
    lin = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    assert count_macs(lin, (torch.randn(2, 16),)) == 2 * (16 * 32 + 32 * 4)


def test_macs_of_model_that_cannot_run_is_none():
    assert count_macs(nn.Linear(4, 4), (torch.randn(1, 5),)) is None


def test_latency_is_positive_and_leaves_model_alone():
    model = nn.Linear(4, 4).train()
    assert cpu_latency_ms(model, (torch.randn(1, 4),), repeats=3) > 0
    assert model.training


def test_summary_and_table():
    big = nn.Linear(64, 64)
    small = nn.Linear(64, 16)
    x = (torch.randn(1, 64),)
    before = summarize(big, x, latency=False, metrics={"acc": 0.9})
    after = summarize(small, x, latency=False, metrics={"acc": 0.88})
    assert before.params == 64 * 64 + 64 and after.params == 64 * 16 + 16
    console = Console(record=True, width=120)
    console.print(comparison_table(before, after))
    text = console.export_text()
    assert f"{before.params / after.params:.2f}×" in text
    assert "-0.02" in text and "4.16k" in text
    assert ModelSummary(**before.as_dict()) == before
