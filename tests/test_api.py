import copy

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from sparsenet_design.api import CompressResult, compress, sparsify
from sparsenet_design.design.density import density_report
from sparsenet_design import apply_spec


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def problem():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(128, 12, generator=g)
    y = (x[:, :3].sum(1) > 0).long()
    loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 48), nn.ReLU(), nn.Linear(48, 48), nn.ReLU(), nn.Linear(48, 2))

    def loss_fn(m, batch):
        return nn.functional.cross_entropy(m(batch[0]), batch[1])

    def evaluate(m):
        return {"accuracy": float((m(x).argmax(1) == y).float().mean())}

    return model, loader, loss_fn, evaluate


def test_compress_returns_compact_model_spec_density_and_sparse_model():
    model, loader, loss_fn, evaluate = problem()
    original = copy.deepcopy(model.state_dict())
    result = compress(model, loader, loss_fn, example_inputs=(torch.randn(1, 12),), lr=0.1, lam=2e-2,
                      epochs=4, strategy="min", evaluate=evaluate, retrain_epochs=2, progress=False, device="cpu")
    assert isinstance(result, CompressResult)
    # the user's model is untouched
    for k, v in model.state_dict().items():
        assert torch.equal(v, original[k])
    # the density report is the sparse model's
    assert result.density.overall == pytest.approx(density_report(result.sparse_model).overall)
    assert result.density.overall < 0.8
    # the spec applied to a fresh copy of the architecture gives the compact model's shapes
    rebuilt = apply_spec(problem()[0], result.spec)
    assert [p.shape for p in rebuilt.parameters()] == [p.shape for p in result.compact_model.parameters()]
    assert sum(p.numel() for p in result.compact_model.parameters()) < sum(p.numel() for p in model.parameters())
    assert result.compact_model(torch.randn(3, 12)).shape == (3, 2)
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4]
    assert [r["epoch"] for r in result.retrain_history] == [1, 2]
    assert "accuracy" in result.retrain_history[-1]


def test_sparsify_alone_is_in_place_and_logs_to_a_run_folder(tmp_path):
    model, loader, loss_fn, _ = problem()
    result = sparsify(model, loader, loss_fn, lr=0.1, lam=2e-2, epochs=2, n_p=1, run_dir=tmp_path,
                      progress=False, device="cpu")
    assert result.model is model
    assert result.density.overall == density_report(model).overall < 1.0
    assert (tmp_path / "checkpoint" / "last.safetensors").is_file()
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 2
    assert result.history[-1]["density"] == pytest.approx(result.density.overall)


def test_larger_lambda_gives_sparser_model():
    densities = []
    for lam in (1e-3, 3e-2):
        model, loader, loss_fn, _ = problem()
        densities.append(sparsify(model, loader, loss_fn, lr=0.1, lam=lam, epochs=2, progress=False,
                                  device="cpu").density.overall)
    assert densities[1] < densities[0]


def test_readme_library_example_runs():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = readme.split("## Library", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    code = code.replace("epochs=10", "epochs=2").replace("retrain_epochs=20", "retrain_epochs=1")
    code = code.replace('result.spec.save("spec.json")', "spec = result.spec")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(16, 4))
    x, y = torch.randn(32, 3, 32, 32), torch.randint(0, 4, (32,))
    namespace = {"model": model, "train_loader": DataLoader(TensorDataset(x, y), batch_size=16)}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["result"].compact_model(torch.randn(1, 3, 32, 32)).shape == (1, 4)


def test_one_training_config_for_every_entry_point():
    from sparsenet_design.training.config import TrainConfig

    config = TrainConfig.of(None, {"seed": 3, "progress": False})
    assert (config.seed, config.progress, config.accumulation) == (3, False, 1)
    assert TrainConfig.of(config, {"device": "cpu"}).seed == 3
    with pytest.raises(TypeError, match="unknown training option.*sede"):
        TrainConfig.of(None, {"sede": 1})
    from sparsenet_design.errors import TrainingError

    with pytest.raises(TrainingError, match="accumulation"):
        TrainConfig(accumulation=0)
