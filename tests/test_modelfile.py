import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from sparsenet_design.errors import ModelFileError
from sparsenet_design.modelfile import REQUIRED, load_model_file

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def write(tmp_path, text, name="model.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_loads_tiny_example():
    mf = load_model_file(EXAMPLES / "tiny_mlp.py")
    model = mf.build_model()
    assert isinstance(model, nn.Module)
    (x,) = mf.example_inputs()
    assert model(x).shape == (1, 4)
    batch = next(iter(mf.train_data()))
    assert mf.loss(model, batch).dim() == 0
    metrics = mf.evaluate(model)
    assert 0.0 <= metrics["accuracy"] <= 1.0
    assert mf.headline(metrics) == "accuracy"
    assert mf.default("lr") == 0.1 and len(mf.sha256) == 64


def test_missing_names_are_listed_with_template(tmp_path):
    path = write(tmp_path, """
        import torch
        def build_model():
            return torch.nn.Linear(2, 2)
    """)
    with pytest.raises(ModelFileError) as err:
        load_model_file(path)
    msg = str(err.value)
    assert "example_inputs, train_data, loss" in msg
    assert "def build_model():" in msg and "def loss(model, batch):" in msg


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        load_model_file(tmp_path / "nope.py")


def test_import_error_names_file_and_line(tmp_path):
    path = write(tmp_path, """
        import torch
        x = 1
        raise RuntimeError("no data here")
    """)
    with pytest.raises(ModelFileError) as err:
        load_model_file(path)
    msg = str(err.value)
    assert "model.py:4" in msg and "no data here" in msg and "RuntimeError" in msg


def test_syntax_error_names_line(tmp_path):
    path = write(tmp_path, "def build_model(:\n    pass\n")
    with pytest.raises(ModelFileError, match="model.py:1"):
        load_model_file(path)


def test_build_model_that_raises(tmp_path):
    path = write(tmp_path, """
        import torch
        def build_model():
            return torch.nn.Linear(2, 2, bad_arg=True)
        def example_inputs(): return (torch.randn(1, 2),)
        def train_data(): return []
        def loss(model, batch): return model(batch).sum()
    """)
    mf = load_model_file(path)
    with pytest.raises(ModelFileError) as err:
        mf.build_model()
    assert "build_model()" in str(err.value) and "model.py:4" in str(err.value)
    assert "bad_arg" in str(err.value)


def test_wrong_return_types(tmp_path):
    path = write(tmp_path, """
        import torch
        def build_model(): return 3
        def example_inputs(): return torch.randn(1, 2)
        def train_data(): return 5
        def loss(model, batch): return 0
        def evaluate(model): return 0.5
    """)
    mf = load_model_file(path)
    with pytest.raises(ModelFileError, match="not a torch.nn.Module"):
        mf.build_model()
    assert isinstance(mf.example_inputs(), tuple)  # a bare tensor is accepted
    with pytest.raises(ModelFileError, match="not iterable"):
        mf.train_data()
    with pytest.raises(ModelFileError, match="dict of named metrics"):
        mf.evaluate(torch.nn.Linear(2, 2))


def test_bad_optional_names(tmp_path):
    base = textwrap.dedent("""
        import torch
        def build_model(): return torch.nn.Linear(2, 2)
        def example_inputs(): return (torch.randn(1, 2),)
        def train_data(): return []
        def loss(model, batch): return model(batch).sum()
    """)
    with pytest.raises(ModelFileError, match="PINNED"):
        load_model_file(write(tmp_path, base + "PINNED = 'fc'\n"))
    with pytest.raises(ModelFileError, match="unknown keys"):
        load_model_file(write(tmp_path, base + "DEFAULTS = {'learning_rate': 1}\n"))
    with pytest.raises(ModelFileError, match="LEAF_MODULES"):
        load_model_file(write(tmp_path, base + "LEAF_MODULES = ['Conv2d']\n"))


def test_required_names_documented():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "model-file.md")
    if doc.is_file():
        text = doc.read_text()
        assert all(name in text for name in REQUIRED)


def test_documented_example_is_a_working_model_file(tmp_path):
    doc = (Path(__file__).resolve().parents[1] / "docs" / "model-file.md").read_text()
    code = doc.split("```python\n", 1)[1].split("```", 1)[0]
    mf = load_model_file(write(tmp_path, code))
    model = mf.build_model()
    batch = next(iter(mf.train_data()))
    assert mf.loss(model, batch).dim() == 0
    assert model(*mf.example_inputs()).shape == (1, 2)
    assert set(mf.evaluate(model)) == {"accuracy"}
    optimizer, scheduler = mf.make_optimizer(model.parameters())
    assert isinstance(optimizer, torch.optim.SGD) and scheduler is not None
