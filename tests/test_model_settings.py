"""Model files by name and their SETTINGS as command-line options."""
from __future__ import annotations

import json
import textwrap

import pytest
from click.testing import CliRunner

from sparsenet_design.cli import main
from sparsenet_design.errors import ModelFileError
from sparsenet_design.modelfile import load_model_file
from sparsenet_design.modelfile_options import parse_assignments, registered_model_files

SETTINGS_FILE = textwrap.dedent('''
    """A tiny MLP whose width and depth are settings."""
    import torch
    from torch import nn

    SETTINGS = {"width": 16, "scale": 1.0, "bias": True, "note": "plain"}
    _chosen = dict(SETTINGS)

    def configure(settings):
        _chosen.update(settings)

    def build_model():
        return nn.Sequential(nn.Linear(4, _chosen["width"], bias=_chosen["bias"]), nn.ReLU(), nn.Linear(_chosen["width"], 2))

    def example_inputs():
        return (torch.randn(1, 4),)

    def train_data():
        x = torch.randn(32, 4)
        return [(x[i:i + 8], torch.randint(0, 2, (8,))) for i in range(0, 32, 8)]

    def loss(model, batch):
        x, y = batch
        return nn.functional.cross_entropy(model(x) * _chosen["scale"], y)
''')


@pytest.fixture
def settings_file(tmp_path):
    path = tmp_path / "mlp.py"
    path.write_text(SETTINGS_FILE)
    return path


def test_settings_are_converted_to_their_defaults_types_and_configure_the_file(settings_file):
    mf = load_model_file(settings_file, parse_assignments(["width=8", "scale=0.5", "bias=no", "note=a=b"]))
    assert mf.settings == {"width": 8, "scale": 0.5, "bias": False, "note": "a=b"}
    model = mf.build_model()
    assert model[0].out_features == 8 and model[0].bias is None
    assert load_model_file(settings_file).settings["width"] == 16  # defaults when nothing is set


@pytest.mark.parametrize("given, match", [
    ({"widht": "8"}, "has no setting widht; its settings are bias, note, scale, width"),
    ({"width": "eight"}, "is not a int"),
    ({"bias": "maybe"}, "is not a bool"),
])
def test_bad_settings_say_what_is_wrong(settings_file, given, match):
    with pytest.raises(ModelFileError, match=match):
        load_model_file(settings_file, given)


def test_set_without_equals_and_a_file_without_settings(tmp_path):
    with pytest.raises(ModelFileError, match="is not NAME=VALUE"):
        parse_assignments(["width"])
    plain = tmp_path / "plain.py"
    plain.write_text(SETTINGS_FILE.replace('SETTINGS = {"width": 16, "scale": 1.0, "bias": True, "note": "plain"}',
                                           'S = {"width": 16, "scale": 1.0, "bias": True, "note": "plain"}')
                     .replace("_chosen = dict(SETTINGS)", "_chosen = dict(S)"))
    with pytest.raises(ModelFileError, match="declares no SETTINGS"):
        load_model_file(plain, {"width": "8"})


def test_prune_records_the_settings_and_resume_refuses_other_ones(settings_file, tmp_path):
    run = tmp_path / "run"
    args = ["-q", "prune", str(settings_file), "--set", "width=8", "--epochs", "1", "--lr", "0.05", "--out", str(run)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    config = json.loads((run / "config.json").read_text())
    assert config["args"]["settings"]["width"] == 8
    again = CliRunner().invoke(main, ["-q", "prune", str(settings_file), "--set", "width=12", "--epochs", "2",
                                      "--out", str(run), "--resume"])
    assert again.exit_code == 1 and "other model-file settings" in again.output and "--set width=8" in again.output


def test_info_lists_settings_and_registered_names(settings_file):
    result = CliRunner().invoke(main, ["info", str(settings_file), "--set", "width=4"])
    assert result.exit_code == 0, result.output
    assert "A tiny MLP" in result.output and "width" in result.output and "4" in result.output
    listing = CliRunner().invoke(main, ["info"])
    assert listing.exit_code == 0
    for name in registered_model_files():
        assert name in listing.output


def test_an_unknown_name_lists_the_registered_ones():
    with pytest.raises(ModelFileError, match="neither a model file nor a registered model-file name"):
        load_model_file("nosuch:model")
