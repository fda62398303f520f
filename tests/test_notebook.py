"""The examples notebook runs top to bottom and shows what it claims."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed (pip install -e '.[dev]')")
nbclient = pytest.importorskip("nbclient", reason="nbclient is not installed (pip install -e '.[dev]')")
pytest.importorskip("ipykernel", reason="ipykernel is not installed (pip install -e '.[dev]')")

from jupyter_client.kernelspec import KernelSpec, KernelSpecManager  # noqa: E402
from jupyter_client.manager import KernelManager  # noqa: E402

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "sparsify_and_rebuild.ipynb"


class _ThisInterpreter(KernelSpecManager):
    """Every kernel name resolves to an ipykernel on the interpreter running the tests
    (a venv's ``python3`` kernel spec may otherwise point at another Python)."""

    def get_kernel_spec(self, kernel_name):
        return KernelSpec(argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                          display_name="Python 3", language="python", env={"OMP_NUM_THREADS": "1"})


def _outputs(cell):
    return cell.get("outputs", [])


def _text(cell) -> str:
    parts = []
    for out in _outputs(cell):
        if out.get("output_type") == "stream":
            parts.append(out.get("text", ""))
        elif "data" in out:
            parts.append(out["data"].get("text/plain", ""))
    return "".join(parts)


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("notebook")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    km = KernelManager(kernel_name="python3", kernel_spec_manager=_ThisInterpreter())
    client = nbclient.NotebookClient(nb, km=km, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(workdir)}})
    client.execute()
    return nb, workdir


def test_notebook_runs_without_errors(executed):
    nb, _ = executed
    errors = [out for cell in nb.cells for out in _outputs(cell) if out.get("output_type") == "error"]
    assert errors == []
    assert all(cell.get("execution_count") for cell in nb.cells if cell.cell_type == "code")


def test_notebook_draws_its_figures(executed):
    nb, _ = executed
    images = [out for cell in nb.cells for out in _outputs(cell) if "image/png" in out.get("data", {})]
    assert len(images) >= 3  # density vs epoch, density per layer, the comparison bars


def _results(nb) -> dict:
    last = [c for c in nb.cells if c.cell_type == "code"][-1]
    return json.loads(_text(last).strip().splitlines()[-1])


def test_density_fell_and_matches_the_log(executed):
    nb, workdir = executed
    results = _results(nb)
    assert results["density_start"] == 1.0
    assert results["density_end"] < 0.5 * results["density_start"]
    log = [json.loads(line) for line in (workdir / "notebook-run" / "prune" / "density.jsonl").read_text().splitlines()]
    assert log[-1]["overall_density"] == pytest.approx(results["density_end"])
    assert log[-1]["layers"] == pytest.approx(results["layer_density"])


def test_compact_models_are_smaller_and_still_learn(executed):
    nb, _ = executed
    results = _results(nb)
    params, macs, accuracy = results["params"], results["macs"], results["accuracy"]
    assert params["-min"] <= params["-max"] < params["dense"]
    assert params["-min"] < 0.5 * params["dense"]
    assert macs["-min"] < macs["dense"]
    assert accuracy["dense"] > 90
    assert accuracy["-min"] > 80  # retrained from scratch, far better than chance (10 %)
    # the final table lists the compact model with fewer parameters
    table = next(_text(c) for c in nb.cells if "after retraining" in _text(c))
    assert f"{params['-min']:,}" in table and f"{params['dense']:,}" in table


def test_saved_spec_rebuilds_the_same_model_outside_the_notebook(executed):
    """Apply the notebook's spec here, to our own copy of its CNN, and count."""
    import torch
    from torch import nn

    from sparsenet_design import DesignSpec, apply_spec

    nb, workdir = executed
    results = _results(nb)
    assert results["reloaded_identical"] is True
    assert results["reloaded_accuracy"] == pytest.approx(results["accuracy"]["-min"])

    def block(c_in, c_out):
        return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]

    model = nn.Sequential(*block(1, 16), *block(16, 32), nn.MaxPool2d(2), *block(32, 64), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(256, 64), nn.ReLU(), nn.Linear(64, 10))
    spec = DesignSpec.load(workdir / results["spec"])
    compact = apply_spec(model, spec)
    assert sum(p.numel() for p in compact.parameters()) == results["params"]["-min"]
    assert compact(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    # the paper's rule on a chain: the width between two convs is the smaller of the producer's
    # out-proposal ⌈√d·C_out⌉ and the consumer's in-proposal ⌈√d·C_in⌉ (strategy min)
    d = results["layer_density"]
    for producer, consumer, width in (("0", "3", 16), ("3", "7", 32)):
        expected = min(math.ceil(math.sqrt(d[producer]) * width), math.ceil(math.sqrt(d[consumer]) * width))
        assert compact[int(producer)].out_channels == expected
        assert compact[int(consumer)].in_channels == expected
