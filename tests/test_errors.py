"""Bad input gets a one-paragraph message and exit code 1, never a traceback."""
import textwrap
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from sparsenet_design.training.checkpoint import load_checkpoint, save_weights
from sparsenet_design.cli import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TINY = EXAMPLES / "tiny_mlp.py"


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def invoke(*args):
    result = CliRunner().invoke(main, ["-q", *map(str, args)], env={"COLUMNS": "400"})
    return result, result.output


def assert_clean_error(result, output, *fragments):
    assert result.exit_code == 1, output
    assert "Traceback" not in output
    assert "error:" in output
    for fragment in fragments:
        assert fragment in output, (fragment, output)


def write(tmp_path, text, name="model.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_missing_model_file(tmp_path):
    result, output = invoke("train", tmp_path / "nope.py", "--out", tmp_path / "o")
    assert_clean_error(result, output, "does not exist", "def build_model")


def test_incomplete_model_file(tmp_path):
    path = write(tmp_path, """
        import torch
        def build_model():
            return torch.nn.Linear(2, 2)
    """)
    result, output = invoke("prune", path, "--out", tmp_path / "o")
    assert_clean_error(result, output, "example_inputs, train_data, loss", "def train_data():")


def test_model_that_raises(tmp_path):
    path = write(tmp_path, """
        import torch
        def build_model():
            raise ValueError("layer sizes do not add up")
        def example_inputs(): return (torch.randn(1, 2),)
        def train_data(): return []
        def loss(model, batch): return model(batch).sum()
    """)
    result, output = invoke("train", path, "--out", tmp_path / "o")
    assert_clean_error(result, output, "model.py:4", "layer sizes do not add up", "ValueError")


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    path = write(tmp_path, f"""
        import sys
        sys.path.insert(0, {str(EXAMPLES)!r})
        from tiny_mlp import build_model, example_inputs, train_data, evaluate
        import tiny_mlp
        CALLS = [0]
        def loss(model, batch):
            CALLS[0] += 1
            value = tiny_mlp.loss(model, batch)
            return value * float("nan") if CALLS[0] > 11 else value   # step 4 of epoch 2
    """)
    out = tmp_path / "run"
    result, output = invoke("train", path, "--epochs", 3, "--out", out)
    assert_clean_error(result, output, "nan at epoch 2, step 12", "after epoch 1")
    weights, state = load_checkpoint(out / "checkpoint" / "last.safetensors")
    assert state["epoch"] == 1 and state["step"] == 8
    assert all(torch.isfinite(w).all() for w in weights.values())
    assert not (out / "weights.safetensors").exists()


def test_corrupt_safetensors(tmp_path):
    bad = tmp_path / "bad.safetensors"
    save_weights(torch.nn.Linear(3, 3), bad)
    bad.write_bytes(bad.read_bytes()[:20])
    result, output = invoke("evaluate", TINY, "--weights", bad, "--no-latency")
    assert_clean_error(result, output, "bad.safetensors", "corrupt")
    result, output = invoke("train", TINY, "--init", bad, "--epochs", 1, "--out", tmp_path / "o")
    assert_clean_error(result, output, "corrupt")


def test_weights_of_another_model(tmp_path):
    other = tmp_path / "other.safetensors"
    save_weights(torch.nn.Sequential(torch.nn.Linear(16, 8)), other)
    result, output = invoke("evaluate", TINY, "--weights", other, "--no-latency")
    assert_clean_error(result, output, "does not fit", "shape mismatch")


def test_unwritable_output_folder(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result, output = invoke("train", TINY, "--epochs", 1, "--out", blocker / "run")
    assert_clean_error(result, output, "Cannot write to output folder", "--out")


def test_resume_without_checkpoint(tmp_path):
    result, output = invoke("train", TINY, "--epochs", 1, "--resume", "--out", tmp_path / "empty")
    assert_clean_error(result, output, "no checkpoint")


def test_resume_with_changed_model_file(tmp_path):
    path = write(tmp_path, TINY.read_text())
    out = tmp_path / "run"
    result, output = invoke("train", path, "--epochs", 1, "--out", out)
    assert result.exit_code == 0, output
    path.write_text(path.read_text() + "\n# edited\n")
    result, output = invoke("train", path, "--epochs", 2, "--resume", "--out", out)
    assert_clean_error(result, output, "model file changed")


def test_bad_option_is_a_usage_error(tmp_path):
    result, output = invoke("reconstruct", tmp_path, "--strategy", "median")
    assert result.exit_code == 2 and "Traceback" not in output


def test_spec_for_another_model(tmp_path):
    from sparsenet_design.modelfile import load_model_file
    from sparsenet_design import reconstruct

    other = write(tmp_path, TINY.read_text().replace(
        "nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4)",
        "nn.Linear(16, 24), nn.ReLU(), nn.Linear(24, 4)"), name="other.py")
    mf = load_model_file(TINY)
    model = mf.build_model()
    with torch.no_grad():
        model[2].weight[:, 16:] = 0  # half the inputs of the middle layer are dead
    _, spec = reconstruct(model, mf.example_inputs())
    spec.save(tmp_path / "spec.json")
    result, output = invoke("evaluate", other, "--spec", tmp_path / "spec.json", "--no-latency")
    assert_clean_error(result, output, "spec", "does not fit this model", "module '0'")


def test_corrupt_spec(tmp_path):
    (tmp_path / "spec.json").write_text('{"modules": {')
    result, output = invoke("evaluate", TINY, "--spec", tmp_path / "spec.json", "--no-latency")
    assert_clean_error(result, output, "spec.json")


def _model_file_whose_inputs_do_not_fit(tmp_path):
    """The model takes 16 features, the example inputs have 12: every command that
    traces must fail before its first epoch, naming the layer and the line."""
    return write(tmp_path, f"""
        import sys
        sys.path.insert(0, {str(EXAMPLES)!r})
        import torch
        from torch import nn
        from tiny_mlp import train_data, loss

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.body = nn.Sequential(nn.Linear(16, 8), nn.ReLU())

            def forward(self, x):
                return self.body(x)

        def build_model():
            return Net()

        def example_inputs():
            return (torch.randn(1, 12),)
    """)


@pytest.mark.parametrize("command", ["prune", "design"])
def test_inputs_that_do_not_fit_fail_before_training(tmp_path, command):
    path = _model_file_whose_inputs_do_not_fit(tmp_path)
    out = tmp_path / "run"
    result, output = invoke(command, path, "--epochs", 1, "--out", out)
    assert_clean_error(result, output, "module 'body.0' (Linear)", "model.py:14: return self.body(x)",
                       "mat1 and mat2 shapes cannot be multiplied", "example inputs")
    assert not list(out.rglob("*.safetensors")) and not list(out.rglob("metrics.jsonl"))  # no epoch ran


def test_compress_checks_the_inputs_before_training():
    from sparsenet_design import compress
    from sparsenet_design.errors import TraceError

    class NoData:
        def __iter__(self):
            raise AssertionError("training started before the model was traced")

        def __len__(self):
            return 1

    model = torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.ReLU())
    with pytest.raises(TraceError, match=r"module '0' \(Linear\)"):
        compress(model, NoData(), lambda m, b: m(b).sum(), example_inputs=(torch.randn(1, 12),), epochs=1,
                 progress=False)
