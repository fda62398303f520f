"""End to end through the CLI on a tiny model: prune → report → reconstruct →
train → evaluate, checking the files written and the numbers in them against
independent computations; and an exact --resume after a killed run."""
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from sparsenet_design.training.checkpoint import load_checkpoint, read_weights
from sparsenet_design.cli import main
from sparsenet_design.modelfile import load_model_file
from sparsenet_design import apply_spec
from sparsenet_design.design.spec import DesignSpec

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "examples" / "tiny_mlp.py"


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def invoke(*args):
    result = CliRunner().invoke(main, ["-q", *map(str, args)], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def nonzero_density(state):
    weights = [v for k, v in state.items() if k.endswith(".weight") and v.dim() >= 2]
    return sum(int((w != 0).sum()) for w in weights) / sum(w.numel() for w in weights)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    base = tmp_path_factory.mktemp("cli")
    torch.set_num_threads(1)
    run, design, trained = base / "run", base / "design", base / "trained"
    invoke("prune", TINY, "--lr", 0.1, "--lam", 1e-2, "--epochs", 3, "--n-p", 1, "--out", run)
    invoke("report", run)
    invoke("reconstruct", run, "--strategy", "min", "--no-latency", "--out", design)
    invoke("train", TINY, "--spec", design / "spec.json", "--epochs", 2, "--out", trained)
    evaluated = invoke("evaluate", TINY, "--spec", design / "spec.json", "--weights",
                       trained / "weights.safetensors", "--json", "--no-latency")
    return {"run": run, "design": design, "trained": trained, "evaluated": json.loads(evaluated)}


def test_prune_writes_config_logs_checkpoint_and_sparse_weights(pipeline):
    run = pipeline["run"]
    config = json.loads((run / "config.json").read_text())
    assert config["command"] == "prune"
    assert config["args"]["lam"] == 1e-2 and config["args"]["epochs"] == 3 and config["args"]["n_p"] == 1
    assert config["versions"]["torch"] == torch.__version__
    assert config["model_file"]["sha256"] == hashlib.sha256(TINY.read_bytes()).hexdigest()

    sparse = read_weights(run / "sparse.safetensors")
    density = nonzero_density(sparse)
    assert density < 0.9  # λ = 1e-2 really sparsified
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2, 3]
    assert metrics[-1]["density"] == pytest.approx(density)
    assert 0 <= metrics[-1]["accuracy"] <= 1
    densities = [json.loads(line) for line in (run / "density.jsonl").read_text().splitlines()]
    ends = [d for d in densities if d.get("event", "epoch") == "epoch"]
    assert [d["epoch"] for d in ends] == [0, 1, 2, 3]
    assert ends[0]["overall_density"] == 1.0
    assert ends[-1]["overall_density"] == pytest.approx(density)

    ckpt_weights, state = load_checkpoint(run / "checkpoint" / "last.safetensors")
    assert state["epoch"] == 3 and state["step"] == 3 * 8
    for k, v in sparse.items():
        assert torch.equal(ckpt_weights[k], v)


def test_report_numbers_match_the_weights(pipeline):
    run = pipeline["run"]
    report = json.loads((run / "report.json").read_text())
    sparse = read_weights(run / "sparse.safetensors")
    for layer in report["layers"]:
        w = sparse[f"{layer['name']}.weight"]
        assert layer["nnz"] == int((w != 0).sum()) and layer["params"] == w.numel()
        assert layer["widths_min"] is not None
    assert report["totals"]["overall_density"] == pytest.approx(nonzero_density(sparse))
    assert report["totals"]["compact_params_min"] <= report["totals"]["compact_params_max"]
    assert {Path(p).name for p in report["plots"]} >= {"density_curves.png", "layer_density.png"}
    assert all(Path(p).is_file() and Path(p).with_suffix(".svg").is_file() for p in report["plots"])


def test_reconstruct_spec_and_summary(pipeline):
    design = pipeline["design"]
    mf = load_model_file(TINY)
    spec = DesignSpec.load(design / "spec.json")
    compact = apply_spec(mf.build_model(), spec)
    summary = json.loads((design / "summary.json").read_text())
    assert summary["strategy"] == "min"
    assert summary["before"]["params"] == sum(p.numel() for p in mf.build_model().parameters())
    assert summary["after"]["params"] == sum(p.numel() for p in compact.parameters())
    assert summary["after"]["params"] < summary["before"]["params"]
    assert summary["after"]["macs"] < summary["before"]["macs"]
    assert compact(*mf.example_inputs()).shape == (1, 4)
    config = json.loads((design / "config.json").read_text())
    assert config["command"] == "reconstruct" and config["args"]["strategy"] == "min"


def test_train_and_evaluate_the_compact_model(pipeline):
    trained, design = pipeline["trained"], pipeline["design"]
    mf = load_model_file(TINY)
    model = apply_spec(mf.build_model(), DesignSpec.load(design / "spec.json"))
    model.load_state_dict(read_weights(trained / "weights.safetensors"))
    assert (trained / "spec.json").read_text() == (design / "spec.json").read_text()
    metrics = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2]
    expected = mf.evaluate(model)["accuracy"]
    evaluated = pipeline["evaluated"]
    assert evaluated["metrics"]["accuracy"] == pytest.approx(expected)
    assert metrics[-1]["accuracy"] == pytest.approx(expected)
    assert evaluated["params"] == sum(p.numel() for p in model.parameters())


def test_design_runs_the_whole_loop(tmp_path):
    out = tmp_path / "design"
    output = invoke("design", TINY, "--epochs", 2, "--lam", 1e-2, "--train-epochs", 1, "--baseline-epochs", 1,
                    "--rounds", 2, "--no-latency", "--out", out)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["after"]["params"] < summary["before"]["params"]
    assert len(summary["specs"]) == 2
    assert "accuracy" in summary["before"]["metrics"] and "accuracy" in summary["after"]["metrics"]
    for part in ("dense", "prune", "design", "prune-2", "design-2", "train-1", "train"):
        assert (out / part / "config.json").is_file(), part
    # the compact model = both specs applied to build_model() + the final weights
    mf = load_model_file(TINY)
    model = mf.build_model()
    for spec in summary["specs"]:
        model = apply_spec(model, DesignSpec.load(spec))
    model.load_state_dict(read_weights(out / "train" / "weights.safetensors"))
    assert sum(p.numel() for p in model.parameters()) == summary["after"]["params"]
    assert "dense vs compact" in output


def _sdesign(*args, crash_after_steps=None):
    """``sdesign ARGS`` in a subprocess; with ``crash_after_steps`` it dies like kill -9
    after that optimizer step (tests/crash_hook injects the crash)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    if crash_after_steps is not None:
        env.update(TEST_CRASH_AFTER_STEPS=str(crash_after_steps), PYTHONPATH=os.pathsep.join(
            [str(ROOT / "tests" / "crash_hook"), str(ROOT), env.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "sparsenet_design.cli", "-q", *map(str, args)],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)


def test_resume_after_kill_gives_identical_weights(tmp_path):
    """A subprocess dies (os._exit, like kill -9) in the middle of epoch 2; the
    resumed run ends with the same weights and logs as one that never stopped."""
    args = ["prune", TINY, "--lr", 0.1, "--lam", 1e-2, "--epochs", 3, "--n-p", 1, "--momentum", 0.5,
            "--checkpoint-every", 4, "--every-n-steps", 2]
    invoke(*args, "--out", tmp_path / "straight")
    killed = _sdesign(*args, "--out", tmp_path / "killed", crash_after_steps=15)
    assert killed.returncode == 17, killed.stderr
    _, state = load_checkpoint(tmp_path / "killed" / "checkpoint" / "last.safetensors")
    # 8 steps per epoch, a checkpoint every 4: the last one is epoch 1 + 4 batches (step 12)
    assert (state["epoch"], state["step"], state["batches_done"]) == (1, 12, 4)
    assert not (tmp_path / "killed" / "sparse.safetensors").exists()
    torch.manual_seed(12345)  # whatever the RNG state, the resumed run must not depend on it
    invoke(*args, "--resume", "--out", tmp_path / "killed")
    a = read_weights(tmp_path / "straight" / "sparse.safetensors")
    b = read_weights(tmp_path / "killed" / "sparse.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    for log in ("metrics.jsonl", "density.jsonl"):
        records = [[json.loads(line) for line in (tmp_path / d / log).read_text().splitlines()]
                   for d in ("straight", "killed")]
        assert records[0] == records[1], log
    density = records[1]
    assert [r["epoch"] for r in density if r["event"] == "epoch"] == [0, 1, 2, 3]
    assert [r["step"] for r in density if r["event"] == "step"] == list(range(2, 25, 2))
    config = json.loads((tmp_path / "killed" / "config.json").read_text())
    assert len(config["resumed"]) == 1


def test_plugin_commands_are_listed():
    from sparsenet_design.plugins import cli_commands

    output = invoke("--help")
    for name, _ in cli_commands():
        assert name in output


def test_report_html_writes_one_self_contained_page(pipeline):
    out = invoke("report", pipeline["run"], "--no-plots", "--html", "--design", pipeline["design"])
    page = pipeline["run"] / "report.html"
    assert str(page) in out.replace("\n", "")
    html = page.read_text()
    assert html.count("data:image/png;base64,") >= 2  # plots are inline
    assert "http://" not in html and "https://" not in html  # nothing to fetch


def test_report_html_out_and_a_design_folder(pipeline, tmp_path):
    target = tmp_path / "pages" / "run.html"
    out = invoke("report", pipeline["run"], "--no-plots", "--html", "--out", target)
    assert target.is_file() and str(target) in out.replace("\n", "")
    assert not (tmp_path / "pages" / "plots").exists()


def test_train_lr_keeps_the_model_files_optimizer_and_schedule():
    from sparsenet_design.cli.train import with_learning_rate

    params = [torch.nn.Parameter(torch.zeros(2))]

    def sgd_with_steps(ps):
        opt = torch.optim.SGD(ps, lr=0.5, momentum=0.9)
        return opt, torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)

    opt, sched = with_learning_rate(sgd_with_steps, 0.01)(params)
    assert isinstance(opt, torch.optim.SGD) and opt.param_groups[0]["momentum"] == 0.9
    assert opt.param_groups[0]["lr"] == 0.01 and sched.base_lrs == [0.01]
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.005)  # the schedule goes on from the new rate
    takes_lr = with_learning_rate(lambda ps, lr=1.0: torch.optim.Adam(ps, lr=lr), 0.02)(params)
    assert takes_lr.param_groups[0]["lr"] == 0.02
    assert isinstance(with_learning_rate(None, 0.03)(params), torch.optim.Adam)
