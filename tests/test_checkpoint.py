import random

import numpy as np
import pytest
import torch
from torch import nn

from sparsenet_design.files import atomic_write
from sparsenet_design.training.checkpoint import (
    load_checkpoint, load_weights, read_weights, save_checkpoint, save_weights,
)
from sparsenet_design.errors import CheckpointError


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Flatten(), nn.Linear(8 * 4 * 4, 5))


def test_weights_round_trip_is_exact(tmp_path):
    model = _model()
    save_weights(model, tmp_path / "w.safetensors")
    other = _model()
    for p in other.parameters():
        nn.init.zeros_(p)
    load_weights(other, tmp_path / "w.safetensors")
    for (k, a), (_, b) in zip(model.state_dict().items(), other.state_dict().items()):
        assert torch.equal(a, b), k


def test_tied_weights_can_be_saved(tmp_path):
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    model[1].weight = model[0].weight
    save_weights(model, tmp_path / "w.safetensors")
    state = read_weights(tmp_path / "w.safetensors")
    assert torch.equal(state["0.weight"], state["1.weight"])


def test_nested_training_state_round_trip(tmp_path):
    model = _model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(2, 3, 6, 6)).sum().backward()
    opt.step()
    state = {
        "epoch": 3, "opt": opt.state_dict(), "rng": torch.get_rng_state(),
        "np": np.random.get_state(), "py": random.getstate(), "hist": [{"loss": float("nan")}, (1, "a")],
    }
    save_checkpoint(tmp_path / "c.safetensors", model.state_dict(), state)
    model_state, back = load_checkpoint(tmp_path / "c.safetensors")
    assert back["epoch"] == 3
    assert torch.equal(back["rng"], state["rng"])
    assert back["np"][0] == state["np"][0] and np.array_equal(back["np"][1], state["np"][1])
    assert back["py"][1] == list(state["py"][1]) or back["py"][1] == state["py"][1]
    assert back["hist"][1] == (1, "a") and np.isnan(back["hist"][0]["loss"])
    # optimizer state keeps integer keys and exact moments
    for k, v in opt.state_dict()["state"].items():
        for name, t in v.items():
            assert torch.equal(back["opt"]["state"][k][name], t)
    opt2 = torch.optim.Adam(_model().parameters(), lr=1e-3)
    opt2.load_state_dict(back["opt"])
    assert set(model_state) == set(model.state_dict())
    # a checkpoint also reads as plain weights
    assert set(read_weights(tmp_path / "c.safetensors")) == set(model.state_dict())


def test_corrupt_file_is_a_clear_error(tmp_path):
    path = tmp_path / "w.safetensors"
    save_weights(_model(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_weights(_model(), path)
    path.write_bytes(b"not a safetensors file at all")
    with pytest.raises(CheckpointError, match=str(path.name)):
        load_checkpoint(path)


def test_missing_file_and_wrong_model(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_weights(_model(), tmp_path / "nope.safetensors")
    save_weights(nn.Linear(3, 3), tmp_path / "lin.safetensors")
    with pytest.raises(CheckpointError, match="does not fit"):
        load_weights(_model(), tmp_path / "lin.safetensors")
    save_weights(nn.Sequential(nn.Conv2d(3, 4, 3)), tmp_path / "c.safetensors")
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_weights(nn.Sequential(nn.Conv2d(3, 8, 3)), tmp_path / "c.safetensors")


def test_plain_weights_are_not_a_checkpoint(tmp_path):
    save_weights(_model(), tmp_path / "w.safetensors")
    with pytest.raises(CheckpointError, match="not a sparsenet-design checkpoint"):
        load_checkpoint(tmp_path / "w.safetensors")


def test_atomic_write_keeps_old_file_when_interrupted(tmp_path, monkeypatch):
    path = tmp_path / "f.bin"
    atomic_write(path, b"old")

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, b"new")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]  # no temp file left behind


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_follow_the_umask(tmp_path, umask):
    """Weights, specs and run configs get the mode the user's umask gives (not 0600
    whatever it is), so others on a shared machine can read them when it allows."""
    import os
    import stat

    from sparsenet_design.design.spec import DesignSpec
    from sparsenet_design.training.runs import prepare_run

    old = os.umask(umask)
    try:
        save_weights(_model(), tmp_path / "w.safetensors")
        DesignSpec().save(tmp_path / "spec.json")
        prepare_run(tmp_path / "run", "prune", {"lr": 0.1})
    finally:
        os.umask(old)
    for path in (tmp_path / "w.safetensors", tmp_path / "spec.json", tmp_path / "run" / "config.json"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path
