"""Multi-process training on CPU with the gloo backend.

Two worker processes are started the way torchrun starts them (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT`` in the
environment); each runs this file as a script (see ``_worker``). Checked
against a one-process run in the test process: after N OBProx-SG steps the
weights match that run with the same global batch (to float tolerance) and are
bitwise the same, zero pattern included, on both ranks; an interrupted
two-process run resumes exactly on two processes and on one.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

pytestmark = pytest.mark.skipif(
    not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
    reason="torch.distributed with gloo is not available",
)

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve()
SETTINGS = dict(lr=0.1, lam=5e-2, epochs=3, n_p=1, momentum=0.5, seed=3)
STEPS_PER_EPOCH = 7  # 99 samples in batches of 16: the last one (3 samples) splits 2 + 1


# ---- the problem both runs solve ------------------------------------------------

def make_data(batch_size=16, n=99):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 8, generator=g)
    y = (x[:, :3].sum(1) > 0).long() + (x[:, 3] > 1).long()
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True)


def make_model():
    torch.manual_seed(7)
    return nn.Sequential(nn.Linear(8, 24), nn.Tanh(), nn.Linear(24, 24), nn.Tanh(), nn.Linear(24, 3))


def loss_fn(model, batch):
    x, y = batch
    return nn.functional.cross_entropy(model(x), y)


def sparsify_run(run_dir=None, resume=False, checkpoint_every=None, model=None):
    from sparsenet_design.api import sparsify

    model = make_model() if model is None else model
    result = sparsify(model, make_data(), loss_fn, run_dir=run_dir, resume=resume, device="cpu",
                      checkpoint_every_steps=checkpoint_every, progress=False, **SETTINGS)
    return model, result


# ---- worker side (run as a script by the launched processes) -----------------

def _worker(out: str, run_dir: str, resume: str, checkpoint_every: str) -> None:
    torch.set_num_threads(1)
    from sparsenet_design.training import distributed
    from sparsenet_design.errors import TrainingError

    nan_rank = os.environ.get("TEST_NAN_ON_RANK")
    if nan_rank is not None:  # this rank's loss turns NaN at its 9th batch (epoch 2)
        global loss_fn
        clean, calls = loss_fn, {"n": 0}

        def loss_fn(model, batch):
            calls["n"] += 1
            value = clean(model, batch)
            bad = calls["n"] == 9 and distributed.rank() == int(nan_rank)
            return value * float("nan") if bad else value
        try:
            sparsify_run(run_dir, False, None)
        except TrainingError as exc:
            (Path(out) / f"rank{distributed.rank()}.err").write_text(str(exc))
            raise SystemExit(3)
        return
    model, result = sparsify_run(run_dir, resume == "1", int(checkpoint_every) or None)
    assert torch.distributed.is_initialized() and distributed.world_size() == 2
    torch.save({"state": model.state_dict(), "history": result.history,
                "world_size": distributed.world_size()}, Path(out) / f"rank{distributed.rank()}.pt")


def crash_after(steps: int) -> dict[str, str]:
    """Environment under which every process started dies like kill -9 after that
    optimizer step (tests/crash_hook/sitecustomize.py injects the crash)."""
    return {"TEST_CRASH_AFTER_STEPS": str(steps),
            "PYTHONPATH": os.pathsep.join([str(ROOT / "tests" / "crash_hook"), str(ROOT)])}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(out: Path, run_dir: Path, *, resume=False, checkpoint_every=0, env_extra=None, nproc=2):
    """Start ``nproc`` workers as torchrun would and wait for them."""
    out.mkdir(parents=True, exist_ok=True)
    port = str(_free_port())
    procs = []
    for r in range(nproc):
        env = {**os.environ, "RANK": str(r), "LOCAL_RANK": str(r), "WORLD_SIZE": str(nproc),
               "LOCAL_WORLD_SIZE": str(nproc), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port,
               "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), **(env_extra or {})}
        procs.append(subprocess.Popen(
            [sys.executable, str(HERE), str(out), str(run_dir), "1" if resume else "0", str(checkpoint_every)],
            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=240)[0] for p in procs]
    return [p.returncode for p in procs], outputs


def load_rank(out: Path, r: int) -> dict:
    return torch.load(out / f"rank{r}.pt", weights_only=False)


# ---- tests --------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def single():
    torch.set_num_threads(1)
    model, result = sparsify_run()
    return model.state_dict(), result.history


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    base = tmp_path_factory.mktemp("two")
    codes, outputs = launch(base / "out", base / "run")
    assert codes == [0, 0], "\n".join(outputs)
    return base


def assert_close_states(a: dict, b: dict, atol=1e-5):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=atol, rtol=1e-4), (k, (a[k] - b[k]).abs().max())


def test_two_processes_match_one_process_with_the_same_global_batch(two, single):
    single_state, single_history = single
    ranks = [load_rank(two / "out", r) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    # bitwise the same weights, so the same zero pattern, on both ranks
    for k, v in ranks[0]["state"].items():
        assert torch.equal(v, ranks[1]["state"][k]), k
    weights = [k for k, v in single_state.items() if v.dim() == 2]
    zeros = sum(int((ranks[0]["state"][k] == 0).sum()) for k in weights)
    assert zeros > 0.2 * sum(single_state[k].numel() for k in weights)  # λ really sparsified
    # the same trajectory as one process with the same (global) batches
    assert_close_states(ranks[0]["state"], single_state)
    for k in weights:
        mismatch = (ranks[0]["state"][k] == 0) != (single_state[k] == 0)
        assert mismatch.float().mean() < 0.01, k  # a flip only where |w| sits at the threshold
    # the epoch loss is the global one, not rank 0's half
    assert [h["step"] for h in ranks[0]["history"]] == [STEPS_PER_EPOCH * e for e in (1, 2, 3)]
    for got, want in zip(ranks[0]["history"], single_history):
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-5)
        assert got["density"] == pytest.approx(want["density"], abs=0.01)
    assert ranks[0]["history"] == ranks[1]["history"]


def test_rank_zero_alone_writes_logs_and_checkpoint(two, single):
    from sparsenet_design.training.checkpoint import load_checkpoint

    run = two / "run"
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2, 3]  # once, not once per rank
    density = [json.loads(line) for line in (run / "density.jsonl").read_text().splitlines()]
    assert [d["epoch"] for d in density] == [0, 1, 2, 3]
    weights, state = load_checkpoint(run / "checkpoint" / "last.safetensors")
    assert (state["epoch"], state["step"], state["world_size"]) == (3, 3 * STEPS_PER_EPOCH, 2)
    assert len(state["rng_ranks"]) == 2
    for k, v in load_rank(two / "out", 0)["state"].items():
        assert torch.equal(weights[k], v), k
    assert not list(run.glob("checkpoint/.*.tmp"))


@pytest.fixture(scope="module")
def killed(tmp_path_factory):
    """A two-process run that dies (os._exit, like kill -9) at step 11 of 21."""
    from sparsenet_design.training.checkpoint import load_checkpoint

    base = tmp_path_factory.mktemp("killed")
    codes, outputs = launch(base / "out", base / "run", checkpoint_every=2,
                            env_extra=crash_after(11))
    assert codes == [17, 17], "\n".join(outputs)
    _, state = load_checkpoint(base / "run" / "checkpoint" / "last.safetensors")
    # 7 steps per epoch, a checkpoint every 2 steps: the last is step 10 = epoch 1 + 3 global batches
    assert (state["epoch"], state["step"], state["batches_done"], state["world_size"]) == (1, 10, 3, 2)
    return base / "run"


@pytest.mark.slow
def test_interrupted_two_process_run_resumes_on_one_process(killed, single, tmp_path):
    from sparsenet_design.training.checkpoint import load_checkpoint

    run = tmp_path / "run"
    shutil.copytree(killed, run)
    torch.manual_seed(999)  # the resume must not depend on the RNG state it finds
    model, result = sparsify_run(run, resume=True, checkpoint_every=2)
    assert [h["step"] for h in result.history] == [STEPS_PER_EPOCH * e for e in (1, 2, 3)]
    assert_close_states(model.state_dict(), single[0])
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2, 3]
    _, state = load_checkpoint(run / "checkpoint" / "last.safetensors")
    assert state["world_size"] == 1 and "rng_ranks" not in state


@pytest.mark.slow
def test_interrupted_two_process_run_resumes_exactly_on_two(killed, two, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(killed, run)
    codes, outputs = launch(tmp_path / "out", run, resume=True, checkpoint_every=2)
    assert codes == [0, 0], "\n".join(outputs)
    resumed = load_rank(tmp_path / "out", 0)["state"]
    straight = load_rank(two / "out", 0)["state"]
    for k in straight:  # same processes, same order of operations: exactly the same
        assert torch.equal(resumed[k], straight[k]), k
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2, 3]


def test_cli_nproc_run_killed_then_resumed_on_one_process(tmp_path):
    """``sdesign prune --nproc 2`` (torchrun --standalone, gloo) dies in epoch 2;
    ``--resume`` on one process finishes it with the weights of a one-process run."""
    from click.testing import CliRunner

    from sparsenet_design.training.checkpoint import load_checkpoint, read_weights
    from sparsenet_design.cli import main

    tiny = ROOT / "examples" / "tiny_mlp.py"
    args = ["prune", str(tiny), "--lr", "0.1", "--lam", "2e-2", "--epochs", "3", "--n-p", "1",
            "--checkpoint-every", "4", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", **crash_after(15)}
    killed = subprocess.run([sys.executable, "-m", "sparsenet_design.cli", "-q", *args, "--nproc", "2",
                             "--out", str(tmp_path / "killed")],
                            capture_output=True, text=True, env=env, cwd=ROOT, timeout=240)
    assert killed.returncode != 0, killed.stdout + killed.stderr
    assert "torch.distributed.run" in killed.stderr  # it really went through torchrun
    _, state = load_checkpoint(tmp_path / "killed" / "checkpoint" / "last.safetensors")
    assert (state["epoch"], state["step"], state["batches_done"], state["world_size"]) == (1, 12, 4, 2)
    config = json.loads((tmp_path / "killed" / "config.json").read_text())
    assert "nproc" not in config["args"]  # the recorded run does not depend on the process count

    def invoke(*extra):
        result = CliRunner().invoke(main, ["-q", *args, *extra], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output + repr(result.exception)

    invoke("--resume", "--out", tmp_path / "killed")
    invoke("--out", tmp_path / "straight")
    a = read_weights(tmp_path / "straight" / "sparse.safetensors")
    b = read_weights(tmp_path / "killed" / "sparse.safetensors")
    assert_close_states(b, a)
    assert sum(int((v == 0).sum()) for v in b.values()) > 0
    metrics = [json.loads(line) for line in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2, 3]


@pytest.mark.slow
def test_nan_on_one_rank_stops_every_rank_with_the_last_good_checkpoint(tmp_path):
    from sparsenet_design.training.checkpoint import load_checkpoint

    codes, outputs = launch(tmp_path / "out", tmp_path / "run", env_extra={"TEST_NAN_ON_RANK": "1"})
    assert codes == [3, 3], "\n".join(outputs)  # both stop with a TrainingError, neither hangs
    for r in (0, 1):
        message = (tmp_path / "out" / f"rank{r}.err").read_text()
        assert "epoch 2, step 9" in message and "after epoch 1" in message
    weights, state = load_checkpoint(tmp_path / "run" / "checkpoint" / "last.safetensors")
    assert state["epoch"] == 1 and all(torch.isfinite(w).all() for w in weights.values())


# ---- data sharding, no processes needed ------------------------------------------------

def _epoch_batches(data, epoch=1):
    from sparsenet_design.training.trainer import seed_epoch

    seed_epoch(data, 5, epoch)
    return list(data)


def test_sharded_loader_splits_each_global_batch_of_the_one_process_order():
    from sparsenet_design.training.distributed import ShardedLoader

    loader = DataLoader(TensorDataset(torch.arange(23.0)), batch_size=6, shuffle=True)
    whole = [b[0] for b in _epoch_batches(loader)]
    parts = [ShardedLoader(loader, r, 3) for r in range(3)]
    per_rank = [[b[0] for b in _epoch_batches(p)] for p in parts]
    assert all(len(p) == len(loader) == 4 for p in parts)
    for i, batch in enumerate(whole):
        assert sorted(torch.cat([ranks[i] for ranks in per_rank]).tolist()) == sorted(batch.tolist())
        assert sum(p.share(i) for p in parts) == pytest.approx(1.0)
    # the last global batch has 5 samples: shares 2/5, 2/5, 1/5
    assert [p.share(3) for p in parts] == pytest.approx([0.4, 0.4, 0.2])
    assert [b[0].tolist() for b in _epoch_batches(parts[0], 2)] != [b.tolist() for b in per_rank[0]]


def test_empty_share_of_a_tiny_batch_gets_weight_zero():
    from sparsenet_design.training.distributed import ShardedLoader, SplitBatches

    loader = DataLoader(TensorDataset(torch.arange(5.0)), batch_size=4)  # last batch: 1 sample
    last = ShardedLoader(loader, 1, 2)
    batches = list(last)
    assert batches[1][0].numel() == 1 and last.share(1) == 0.0
    split = SplitBatches([torch.arange(4.0), torch.arange(1.0)], 1, 2)
    assert [b.tolist() for b in split] == [[1.0, 3.0], [0.0]]
    assert split.share(0) == 0.5 and split.share(1) == 0.0


def test_split_batches_slices_nested_batches():
    from sparsenet_design.training.distributed import SplitBatches

    data = [{"x": torch.arange(6.0).view(3, 2), "y": (torch.arange(3), "tag")}]
    (part,) = list(SplitBatches(data, 0, 2))
    assert part["x"].tolist() == [[0.0, 1.0], [4.0, 5.0]] and part["y"][0].tolist() == [0, 2]
    assert part["y"][1] == "tag"
    with pytest.raises(Exception, match="Cannot split"):
        list(SplitBatches([["a", "b"]], 0, 2))


def test_one_process_is_untouched():
    from sparsenet_design.training import distributed

    data = make_data()
    assert distributed.shard(data) is data
    assert distributed.world_size() == 1 and distributed.is_main_process()
    assert distributed.on_main(lambda: 42) == 42


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    _worker(*sys.argv[1:])
