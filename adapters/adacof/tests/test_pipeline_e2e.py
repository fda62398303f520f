"""The paper's whole workflow at toy scale on CPU, as docs/adacof.md gives it:
named model files and --set options, no environment variable. Sparsify AdaCoF
with OBProx-SG → reconstruct (-max) → CDFI on the compact U-Net → train →
evaluate → interpolate a pair and a short sequence."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from sdesign_adacof.imageio_utils import read_uint8, write_image

TOY = {"width": "0.125", "crop": "32", "batch_size": "4", "train_limit": "4", "val_limit": "1",
       "no_perceptual": "1"}
SET = [arg for name, value in TOY.items() for arg in ("--set", f"{name}={value}")]


def _sdesign(*args):
    from sparsenet_design.cli import main

    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.slow  # ~40 s of CPU time (2 min wall on a loaded 2-core machine)
def test_sparsify_reconstruct_cdfi_train_evaluate_interpolate(tmp_path, monkeypatch):
    for name in ("SDESIGN_ADACOF_WIDTH", "SDESIGN_ADACOF_SPEC", "SDESIGN_ADACOF_KERNEL_SIZE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    cdfi = ["adacof:paper-cdfi", *SET, "--set", f"spec={tmp_path / 'design' / 'spec.json'}"]

    _sdesign("prune", "adacof:paper", *SET, "--epochs", 2, "--n-p", 1, "--lr", 0.1, "--lam", 0.05, "--out", "prune")
    _sdesign("reconstruct", "prune", "--strategy", "max", "--no-latency", "--out", "design")
    summary = json.loads(Path("design/summary.json").read_text())
    assert summary["after"]["params"] < summary["before"]["params"]

    _sdesign("train", *cdfi, "--epochs", 1, "--out", "cdfi")
    weights = tmp_path / "cdfi" / "weights.safetensors"
    assert weights.is_file()

    _sdesign("adacof", "synth", "syn", "--count", 2, "--size", "36x44")
    model = ["--model", *cdfi]
    out = _sdesign("adacof", "evaluate", *model, "--weights", weights, "--dataset", "folder", "syn", "--csv", "ev.csv")
    assert "paper_cdfi" in out
    with open("ev.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 and all(np.isfinite(float(r["psnr"])) and 0 < float(r["ssim"]) <= 1 for r in rows)

    frames = [read_uint8(tmp_path / "syn" / "0000" / f"{n}.png") for n in ("frame_00", "frame_01_gt", "frame_02")]
    _sdesign("adacof", "interpolate", "syn/0000/frame_00.png", "syn/0000/frame_02.png", "-o", "mid.png",
             *model, "--weights", weights)
    assert read_uint8(tmp_path / "mid.png").shape == frames[0].shape
    for i, f in enumerate(frames):
        write_image(tmp_path / "seq" / f"{i}.png", f)
    _sdesign("adacof", "video", "seq", "--factor", 2, "-o", "up", *model, "--weights", weights)
    up = sorted((tmp_path / "up").glob("*.png"))
    assert len(up) == 5
    assert np.array_equal(read_uint8(up[2]), frames[1])  # input frames pass through untouched
