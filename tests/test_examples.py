"""Every example model file loads through the model-file loader, trains one
step, and rebuilds by the √d rule; a toy-scale `sdesign prune → report →
reconstruct` runs on two of them."""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from sparsenet_design import reconstruct
from sparsenet_design.kinds.prunable import prunable_layers
from sparsenet_design.modelfile import load_model_file

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
MODEL_FILES = ["digits_cnn.py", "resnet18_digits.py", "mixer_digits.py", "unet_denoise.py", "adacof_toy.py"]
HAS_ADACOF = importlib.util.find_spec("sdesign_adacof") is not None


@pytest.fixture(autouse=True)
def toy_scale(monkeypatch):
    monkeypatch.setenv("SDESIGN_TOY", "1")
    torch.set_num_threads(1)


def _param(name):
    marks = [pytest.mark.skipif(not HAS_ADACOF, reason="the AdaCoF plugin (adapters/adacof) is not installed")] \
        if name.startswith("adacof") else []
    return pytest.param(name, marks=marks, id=name.removesuffix(".py"))


def _outputs(model, inputs):
    model.eval()
    with torch.no_grad():
        y = model(*inputs)
    return [tuple(t.shape) for t in (y if isinstance(y, (tuple, list)) else [y])]


def test_every_example_is_listed():
    shipped = sorted(p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_"))
    assert set(MODEL_FILES) <= set(shipped)
    readme = (EXAMPLES / "README.md").read_text()
    for name in MODEL_FILES:
        assert name in readme, f"examples/README.md does not mention {name}"


@pytest.mark.parametrize("name", [_param(n) for n in MODEL_FILES])
def test_example_loads_trains_and_rebuilds(name):
    mf = load_model_file(EXAMPLES / name)
    torch.manual_seed(0)
    model = mf.build_model()
    inputs = mf.example_inputs()
    before = _outputs(model, inputs)
    model.train()

    batch = next(iter(mf.train_data()))
    loss = mf.loss(model, batch)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    if mf.has_evaluate:
        metrics = mf.evaluate(model)
        assert metrics and all(math.isfinite(v) for v in metrics.values())

    # uniform density 1/4: every free channel group halves (√0.25 = 1/2), pinned ones keep their width
    densities = {path: 0.25 for path, _ in prunable_layers(model)}
    compact, spec = reconstruct(model, inputs, densities=densities, pinned=mf.pinned,
                                leaf_modules=mf.leaf_modules)
    assert _outputs(compact, inputs) == before
    halved = 0
    for path, entry in spec.modules.items():
        module = compact.get_submodule(path)
        for attr, new in entry["widths"].items():
            old = entry["original"][attr]
            assert new in (old, math.ceil(old / 2)), f"{path}.{attr}: {old} → {new}"
            value = getattr(module, attr)
            assert (value[0] if isinstance(value, (tuple, list)) else value) == new
            halved += new != old
    assert halved > 0
    params = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert params(compact) < 0.5 * params(model)


def test_toy_prune_report_reconstruct_on_mixer(tmp_path):
    from sparsenet_design.cli import main

    runner = CliRunner()
    run, design = tmp_path / "run", tmp_path / "design"
    model_file = str(EXAMPLES / "mixer_digits.py")
    result = runner.invoke(main, ["-q", "prune", model_file, "--epochs", "2", "--lam", "5e-2", "--out", str(run)])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (run / "density.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 1, 2]
    assert records[-1]["overall_density"] < records[0]["overall_density"] == 1.0

    result = runner.invoke(main, ["report", str(run), "--no-plots"])
    assert result.exit_code == 0, result.output
    report = json.loads((run / "report.json").read_text())
    assert report["totals"]["overall_density"] == pytest.approx(records[-1]["overall_density"])

    result = runner.invoke(main, ["reconstruct", str(run), "--no-latency", "--out", str(design)])
    assert result.exit_code == 0, result.output
    summary = json.loads((design / "summary.json").read_text())
    assert summary["after"]["params"] < summary["before"]["params"]


@pytest.mark.slow
def test_toy_design_on_resnet18(tmp_path):
    from sparsenet_design.cli import main

    out = tmp_path / "resnet"
    result = CliRunner().invoke(main, [
        "-q", "design", str(EXAMPLES / "resnet18_digits.py"), "--epochs", "1", "--lam", "5e-2",
        "--baseline-epochs", "0", "--train-epochs", "1", "--no-latency", "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["after"]["params"] < summary["before"]["params"]
    assert "accuracy" in summary["after"]["metrics"]
