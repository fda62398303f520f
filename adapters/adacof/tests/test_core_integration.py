"""The plugin and the core: the warp's channel rule, tracing, and rebuilding
AdaCoF / CDFI with random densities (pinned F², mask and RGB channels stay)."""
from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from torch import nn

import sdesign_adacof.plugin as plugin
from sdesign_adacof import CDFI, AdaCoF
from sdesign_adacof.models.unet import HEADS, KERNEL_HEADS, full_widths

from sparsenet_design.plugin_api import apply_spec, function_rule, prunable_layers, reconstruct

MODEL_FILES = Path(plugin.__file__).with_name("model_files")


def small_widths(kernel_size: int) -> dict:
    """A quarter of AdaCoF's widths (fast), heads keep their F² hidden width."""
    return {name: tuple(w if (name in KERNEL_HEADS and i == 2) else max(4, w // 4) for i, w in enumerate(ws))
            for name, ws in full_widths(kernel_size).items()}


def random_densities(model: nn.Module, seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    return {name: rng.uniform(0.05, 0.9) for name, _ in prunable_layers(model)}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def frames(size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, size, size, generator=g), torch.rand(1, 3, size, size, generator=g)


def test_register_is_idempotent_and_registers_the_warp_kind():
    from sparsenet_design.plugin_api import all_kinds, function_kind

    plugin.register()
    plugin.register()
    kind = function_kind(torch.ops.sdesign_adacof.adacof_warp.default)
    assert kind is plugin.warp_kind() and "pinned_args=(1, 2, 3)" in kind.channels.__name__
    assert function_kind(torch.ops.sdesign_adacof.adacof_warp) is kind
    assert function_rule(torch.ops.sdesign_adacof.adacof_warp) is kind.channels
    assert sum(k is kind for k in all_kinds()) == 1


def test_plugin_is_found_through_its_entry_point():
    from importlib.metadata import entry_points

    names = {ep.name: ep.value for ep in entry_points(group="sparsenet_design.plugins")}
    assert names.get("adacof") == "sdesign_adacof.plugin:register"


def head_out_channels(unet) -> dict[str, int]:
    return {name: [m for m in getattr(unet, name).modules() if isinstance(m, nn.Conv2d)][-1].out_channels
            for name in HEADS}


@pytest.mark.parametrize("seed", [0])
def test_rebuilt_adacof_keeps_pinned_channels_and_runs(seed):
    torch.manual_seed(seed)
    model = AdaCoF(5, 1, widths=small_widths(5))
    inputs = frames(seed=seed)
    compact, spec = reconstruct(model, inputs, densities=random_densities(model, seed))
    assert n_params(compact) < n_params(model)
    assert head_out_channels(compact.unet) == head_out_channels(model.unet)  # 25 ×6 and 1
    out, extras = compact(*inputs, return_extras=True)
    assert out.shape == inputs[0].shape
    assert all(a.shape[1] == b.shape[1] == 25 for a, b in extras["offsets"])
    # the spec rebuilds the same compact model from a fresh build
    again = apply_spec(AdaCoF(5, 1, widths=small_widths(5)), spec)
    assert [p.shape for p in again.parameters()] == [p.shape for p in compact.parameters()]
    assert again(*inputs).shape == inputs[0].shape


@pytest.mark.slow
def test_rebuilt_full_adacof_shrinks_the_unet():
    model = AdaCoF(5, 1)
    inputs = frames()
    compact, _ = reconstruct(model, inputs, densities={name: 0.1 for name, _ in prunable_layers(model)})
    assert n_params(compact) < 0.3 * n_params(model)
    assert head_out_channels(compact.unet) == head_out_channels(model.unet)
    assert compact(*inputs).shape == inputs[0].shape


def test_rebuilt_cdfi_runs_and_keeps_rgb_and_kernels():
    torch.manual_seed(0)
    model = CDFI(AdaCoF(5, 1, widths=small_widths(5)), kernel_size=5, dilation=1, grid_channels=(8, 12, 16))
    inputs = frames(seed=3)
    compact, _ = reconstruct(model, inputs, densities=random_densities(model, 3))
    assert n_params(compact) < n_params(model)
    assert head_out_channels(compact.unet) == head_out_channels(model.unet)
    assert compact.synthesis.lateral_final.shortcut.out_channels == 3
    assert [m for m in compact.blend.modules() if isinstance(m, nn.Conv2d)][-1].out_channels == 1
    out = compact(*inputs)
    assert out.shape == inputs[0].shape


def test_cdfi_sits_on_a_compact_unet_from_reconstruct():
    model = AdaCoF(5, 1, widths=small_widths(5))
    compact, _ = reconstruct(model, frames(), densities=random_densities(model, 5))
    cdfi = CDFI(compact, kernel_size=5, dilation=1, grid_channels=(8, 8, 8))
    assert [c.in_channels for c in cdfi.pyramid] == list(compact.unet.encoder_widths())
    assert cdfi(*frames(size=40)).shape == (1, 3, 40, 40)


def load_model_file(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, MODEL_FILES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_adacof_model_file_follows_the_contract():
    mf = load_model_file("adacof_model")
    model = mf.build_model()
    assert isinstance(model, AdaCoF) and model.kernel_size == 5 and round(n_params(model) / 1e6, 2) == 21.84
    inputs = mf.example_inputs()
    batch = next(iter(mf.train_data()))
    assert [t.shape for t in batch] == [torch.Size([8, 3, 64, 64])] * 3
    assert [t.shape for t in inputs] == [torch.Size([1, 3, 64, 64])] * 2
    # the middle frame lies between the outer two: the patch moved by one step each time
    assert not torch.equal(batch[0], batch[1]) and not torch.equal(batch[1], batch[2])
    small = AdaCoF(5, 1, widths=small_widths(5))
    assert small(*inputs).shape == inputs[0].shape
    value = mf.loss(small, [t[:2] for t in batch])
    assert value.dim() == 0 and torch.isfinite(value)
    value.backward()
    assert "psnr" in mf.evaluate(small)


@pytest.mark.slow
def test_cdfi_model_file_builds_on_a_spec(tmp_path, monkeypatch):
    mf = load_model_file("cdfi_model")
    assert isinstance(mf.build_model(), CDFI)
    # a spec reconstructed from the AdaCoF model file's model, F=5 d=1 to stay small
    model = AdaCoF(5, 1)
    _, spec = reconstruct(model, frames(), densities={name: 0.05 for name, _ in prunable_layers(model)})
    path = tmp_path / "unet.json"
    spec.save(path)
    monkeypatch.setattr(mf, "SPEC", str(path))
    monkeypatch.setattr(mf, "KERNEL_SIZE", 5)
    monkeypatch.setattr(mf, "DILATION", 1)
    cdfi = mf.build_model()
    assert isinstance(cdfi, CDFI) and cdfi.unet.encoder_widths() != AdaCoF(5, 1).unet.encoder_widths()
    assert cdfi(*mf.example_inputs()).shape == (1, 3, 64, 64)
    # the paper's way: the F=5 spec's widths on an F=11, d=2 CDFI
    monkeypatch.setattr(mf, "KERNEL_SIZE", 11)
    monkeypatch.setattr(mf, "DILATION", 2)
    plus = mf.build_model()
    assert plus.kernel_size == 11 and plus.unet.encoder_widths() == cdfi.unet.encoder_widths()
    assert plus.unet.weight1[-2].out_channels == 121 and plus(*mf.example_inputs()).shape == (1, 3, 64, 64)


def test_rebuilt_model_keeps_its_mode():
    """A compact model made from a published-mode model warps as published."""
    from sdesign_adacof.models.mode import PUBLISHED

    torch.manual_seed(0)
    model = AdaCoF(5, 1, widths=small_widths(5), mode=PUBLISHED)
    inputs = frames(seed=7)
    compact, _ = reconstruct(model, inputs, densities=random_densities(model, 7))
    assert compact.mode == PUBLISHED
    assert compact(*inputs).shape == inputs[0].shape


def test_model_files_by_name_take_their_settings():
    from sparsenet_design.plugin_api import load_model_file

    mf = load_model_file("adacof:adacof", {"kernel_size": "3", "dilation": "2"})
    model = mf.build_model()
    assert (model.kernel_size, model.dilation) == (3, 2) and mf.settings == {"kernel_size": 3, "dilation": 2}
    paper = load_model_file("adacof:paper-cdfi", {"kernel_size": "5", "dilation": "1", "width": "0.25"})
    assert paper.settings["kernel_size"] == 5 and paper.build_model().kernel_size == 5
