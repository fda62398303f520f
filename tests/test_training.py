import json

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from sparsenet_design.training.checkpoint import load_checkpoint
from sparsenet_design.errors import TrainingError
from sparsenet_design.training.trainer import Trainer, steps_per_epoch


def data(shuffle=True, batch_size=16, n=96):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 6, generator=g)
    y = (x[:, 0] > 0).long()
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=shuffle)


def model():
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 2))


def loss_fn(m, batch):
    x, y = batch
    return nn.functional.cross_entropy(m(x), y)


def make(m, epochs, tmp_path=None, **kw):
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    return Trainer(m, loss_fn, data(), opt, epochs=epochs, scheduler=sched, device="cpu", progress=False,
                   checkpoint_path=tmp_path / "ckpt.safetensors" if tmp_path else None,
                   metrics_log=tmp_path / "metrics.jsonl" if tmp_path else None, **kw)


def test_training_reduces_loss_and_logs(tmp_path):
    m = model()
    evaluate = lambda mod: {"acc": float((mod(data(False).dataset.tensors[0]).argmax(1) ==  # noqa: E731
                                          data(False).dataset.tensors[1]).float().mean())}
    result = make(m, 3, tmp_path, evaluate=evaluate).fit()
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert records[-1]["step"] == 3 * 6 == result.steps
    assert records[-1]["loss"] < records[0]["loss"]
    assert "acc" in records[-1] and records == result.history


def test_resume_is_exact(tmp_path):
    """Run 4 epochs straight vs. 2 epochs, then resume to 4 in a fresh trainer."""
    straight = model()
    make(straight, 4).fit()

    first = model()
    make(first, 2, tmp_path).fit()
    _, state = load_checkpoint(tmp_path / "ckpt.safetensors")
    assert state["epoch"] == 2 and state["step"] == 12
    torch.manual_seed(999)  # the global RNG is disturbed between the runs
    resumed = model()
    trainer = make(resumed, 4, tmp_path)
    trainer.fit(resume=True)
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    assert trainer.scheduler.get_last_lr()[0] == pytest.approx(0.1 * 0.5**4)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3, 4]


def test_resume_drops_log_records_of_lost_epochs(tmp_path):
    make(model(), 2, tmp_path).fit()
    with open(tmp_path / "metrics.jsonl", "a") as fh:  # a killed run logged epoch 3, never checkpointed
        fh.write(json.dumps({"epoch": 3, "loss": 0.0}) + "\n")
    make(model(), 3, tmp_path).fit(resume=True)
    epochs = [json.loads(line)["epoch"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3]


def test_gradient_accumulation_matches_big_batch():
    def run(batch_size, accumulation):
        torch.manual_seed(0)
        m = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 2))
        opt = torch.optim.SGD(m.parameters(), lr=0.1)
        Trainer(m, loss_fn, data(shuffle=False, batch_size=batch_size), opt, epochs=2,
                accumulation=accumulation, device="cpu", progress=False).fit()
        return m

    big, acc = run(32, 1), run(16, 2)
    for a, b in zip(big.parameters(), acc.parameters()):
        assert torch.allclose(a, b, atol=1e-6)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    calls = {"n": 0}

    def flaky(m, batch):
        calls["n"] += 1
        value = loss_fn(m, batch)
        return value * float("nan") if calls["n"] == 9 else value  # step 3 of epoch 2

    m = model()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    trainer = Trainer(m, flaky, data(), opt, epochs=3, device="cpu", progress=False,
                      checkpoint_path=tmp_path / "ckpt.safetensors")
    with pytest.raises(TrainingError, match=r"epoch 2, step 9.*after epoch 1"):
        trainer.fit()
    weights, state = load_checkpoint(tmp_path / "ckpt.safetensors")
    assert state["epoch"] == 1
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_bad_loss_and_empty_data():
    m = model()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    with pytest.raises(TrainingError, match="scalar tensor"):
        Trainer(m, lambda mod, b: mod(b[0]), data(), opt, epochs=1, device="cpu", progress=False).fit()
    with pytest.raises(TrainingError, match="no batches"):
        Trainer(m, loss_fn, [], opt, epochs=1, device="cpu", progress=False).fit()


def test_steps_per_epoch_counts_generators_and_rounds_up():
    assert steps_per_epoch(data(batch_size=16)) == 6
    assert steps_per_epoch(data(batch_size=16), accumulation=4) == 2
    assert steps_per_epoch(list(range(5))) == 5


def test_callbacks_get_steps_and_epochs():
    seen = {"steps": [], "epochs": []}

    class Recorder:
        def on_step(self, step, epoch, **metrics):
            seen["steps"].append((step, epoch))

        def on_epoch_end(self, epoch, step, **metrics):
            seen["epochs"].append((epoch, step, sorted(metrics)))

    m = model()
    Trainer(m, loss_fn, data(), torch.optim.SGD(m.parameters(), lr=0.1), epochs=2, device="cpu",
            progress=False, callbacks=[Recorder()], extra_metrics=lambda mod: {"density": 1.0}).fit()
    assert seen["steps"][0] == (1, 1) and seen["steps"][-1] == (12, 2)
    assert seen["epochs"] == [(1, 6, ["density", "loss"]), (2, 12, ["density", "loss"])]


def test_amp_on_cpu_trains_with_bf16_autocast():
    m = model()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    result = Trainer(m, loss_fn, data(), opt, epochs=2, amp=True, device="cpu", progress=False).fit()
    assert all(torch.isfinite(p).all() for p in m.parameters())
    assert result.history[-1]["loss"] < result.history[0]["loss"] * 1.5


class _Augmented(torch.utils.data.Dataset):
    """Draws from the global RNG in __getitem__, like random augmentation does."""

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(96, 6, generator=g)
        self.y = (self.x[:, 0] > 0).long()

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i] + 0.1 * torch.randn(6), self.y[i]


class _Interrupt(Exception):
    pass


def test_mid_epoch_checkpoint_resumes_exactly(tmp_path):
    """Checkpoint every 4 steps (6 steps per epoch, so mid-epoch), die at step 10,
    resume: same weights as a run that never stopped (dropout + random augmentation)."""

    def trainer(m, epochs, ckpt=None, callbacks=()):
        loader = DataLoader(_Augmented(), batch_size=16, shuffle=True)
        opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
        return Trainer(m, loss_fn, loader, opt, epochs=epochs, device="cpu", progress=False,
                       checkpoint_path=ckpt, checkpoint_every_steps=4, callbacks=callbacks,
                       metrics_log=tmp_path / "m.jsonl" if ckpt else None)

    straight = model()
    trainer(straight, 3).fit()

    class Die:
        def on_step(self, step, epoch, **_):
            if step == 10:
                raise _Interrupt

    ckpt = tmp_path / "ckpt.safetensors"
    with pytest.raises(_Interrupt):
        trainer(model(), 3, ckpt, [Die()]).fit()
    _, state = load_checkpoint(ckpt)
    assert (state["epoch"], state["step"], state["batches_done"]) == (1, 8, 2)
    torch.manual_seed(42)
    resumed = model()
    trainer(resumed, 3, ckpt).fit(resume=True)
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    _, state = load_checkpoint(ckpt)
    assert (state["epoch"], state["batches_done"]) == (3, 0)
