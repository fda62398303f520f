"""The paper model files default to the published recipe: models, settings,
loss terms (read back), data, optimizer and schedule; the paper's equations
stay available as options."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

import sdesign_adacof
from sdesign_adacof import CDFI, AdaCoF
from sdesign_adacof import training as t
from sdesign_adacof.data import DatasetError, collate_triplets, random_subset, vimeo_dataset
from sdesign_adacof.imageio_utils import write_image
from sdesign_adacof.models.mode import EXACT, PUBLISHED_TRAINING

MODEL_FILES = Path(sdesign_adacof.__file__).parent / "model_files"
ENV_NAMES = ("TRAIN", "TRAIN_LIMIT", "VAL", "VAL_LIMIT", "CROP", "BATCH", "KERNEL_SIZE", "KERNEL", "DILATION",
             "WIDTH", "SPEC", "UNET_SPEC", "NO_PERCEPTUAL", "SEED", "SMOOTHNESS", "PERCEPTUAL", "MODE", "LR")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ENV_NAMES:
        monkeypatch.delenv(f"SDESIGN_ADACOF_{name}", raising=False)
    monkeypatch.delenv("SDESIGN_VGG16_WEIGHTS", raising=False)


def load_file(name: str):
    spec = importlib.util.spec_from_file_location(f"paper_{name}_under_test", MODEL_FILES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def test_default_settings_are_the_published_recipe():
    a, c = t.Settings.for_adacof(), t.Settings.for_cdfi()
    for s in (a, c):
        assert (s.crop, s.batch_size, s.lr, s.smoothness, s.perceptual, s.mode) == \
            (0, 8, 1e-3, "g_spatial", "published", "exact")
    assert (a.kernel_size, a.dilation, a.train_limit) == (5, 1, 1000)
    assert (c.kernel_size, c.dilation, c.train_limit) == (11, 2, 0)


def test_paper_model_files_build_the_papers_models():
    adacof = load_file("paper_adacof").build_model()
    assert isinstance(adacof, AdaCoF) and (adacof.kernel_size, adacof.dilation) == (5, 1)
    assert round(n_params(adacof) / 1e6, 2) == 21.84
    cdfi = load_file("paper_cdfi").build_model()
    assert isinstance(cdfi, CDFI) and (cdfi.kernel_size, cdfi.dilation) == (11, 2)
    assert n_params(cdfi) == 4_976_718  # the published CDFI_adacof.pth
    assert cdfi.mode == adacof.mode == EXACT


def test_one_set_of_environment_variables(monkeypatch):
    monkeypatch.setenv("SDESIGN_ADACOF_KERNEL_SIZE", "11")
    monkeypatch.setenv("SDESIGN_ADACOF_DILATION", "2")
    monkeypatch.setenv("SDESIGN_ADACOF_MODE", "published-training")
    assert (t.Settings.for_adacof().kernel_size, t.Settings.for_adacof().dilation) == (11, 2)
    assert load_file("adacof_model").KERNEL_SIZE == 11
    assert t.build_adacof(t.Settings(width=0.125)).mode == PUBLISHED_TRAINING
    monkeypatch.delenv("SDESIGN_ADACOF_KERNEL_SIZE")
    monkeypatch.setenv("SDESIGN_ADACOF_KERNEL", "11")  # the old name still works, with a warning
    with pytest.warns(FutureWarning, match="SDESIGN_ADACOF_KERNEL is renamed SDESIGN_ADACOF_KERNEL_SIZE"):
        assert t.Settings.for_adacof().kernel_size == 11
    monkeypatch.delenv("SDESIGN_ADACOF_KERNEL")
    monkeypatch.setenv("SDESIGN_ADACOF_UNET_SPEC", "some/spec.json")
    with pytest.warns(FutureWarning, match="UNET_SPEC is renamed SDESIGN_ADACOF_SPEC"):
        assert load_file("cdfi_model").SPEC == "some/spec.json"


def test_optimizer_and_schedule_keep_with_another_learning_rate():
    """make_optimizer(params, lr) changes the rate only: AdaMax (0.9, 0.999),
    halved every 20 epochs (what `sdesign train --lr` should call)."""
    mf = load_file("paper_cdfi")
    params = [torch.nn.Parameter(torch.zeros(3))]
    for lr, expected in ((None, 1e-3), (5e-4, 5e-4)):
        optimizer, scheduler = mf.make_optimizer(params) if lr is None else mf.make_optimizer(params, lr=lr)
        assert isinstance(optimizer, torch.optim.Adamax)
        group = optimizer.param_groups[0]
        assert group["lr"] == expected and group["betas"] == (0.9, 0.999) and group["weight_decay"] == 0
        assert isinstance(scheduler, torch.optim.lr_scheduler.StepLR)
        assert scheduler.step_size == 20 and scheduler.gamma == 0.5


def test_loss_terms_of_the_paper_model_file_read_back(tmp_path, monkeypatch):
    """paper_cdfi.py's loss: Charbonnier + 0.005 · conv4_3 before ReLU on raw
    input + 0.01 · g_Spatial, read back from the loss object."""
    from torchvision.models import vgg

    torch.manual_seed(0)
    features = vgg.make_layers(vgg.cfgs["D"])
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, tmp_path / "vgg16.pth")
    monkeypatch.setenv("SDESIGN_VGG16_WEIGHTS", str(tmp_path / "vgg16.pth"))
    monkeypatch.setenv("SDESIGN_ADACOF_WIDTH", "0.125")
    mf = load_file("paper_cdfi")
    loss = t.paper_loss(mf._settings)
    assert loss.smoothness == "g_spatial" and loss.perceptual.variant == "published"
    assert len(loss.perceptual.features) == 22 and not loss.perceptual.normalise
    assert (loss.perceptual_weight, loss.tv_weight) == (0.005, 0.01)
    model = mf.build_model()
    g = torch.Generator().manual_seed(1)
    batch = {k: torch.rand(2, 3, 32, 32, generator=g) for k in ("frame0", "gt", "frame1")}
    total = t.model_loss(loss)(model, batch)
    terms = loss.last_terms
    assert set(terms) == {"charbonnier", "perceptual", "g_spatial", "total"}
    with torch.no_grad():
        pred, extras = model(batch["frame0"], batch["frame1"], return_extras=True)
        feats = lambda x: features[:22](x)  # noqa: E731
        perceptual = (feats(pred) - feats(batch["gt"])).pow(2).mean().item()
    m = []
    for weight, (alpha, beta) in zip(extras["weights"], extras["offsets"]):
        for offset in (alpha, beta):
            mean = (weight * offset).mean(1).double().numpy()
            m += [np.sqrt((mean[:, :, 1:] - mean[:, :, :-1]) ** 2 + 1e-6).mean(),
                  np.sqrt((mean[:, 1:] - mean[:, :-1]) ** 2 + 1e-6).mean()]
    assert terms["perceptual"] == pytest.approx(perceptual, rel=1e-4)
    assert terms["g_spatial"] == pytest.approx(sum(m), rel=1e-5)
    assert total.item() == pytest.approx(terms["charbonnier"] + 0.005 * terms["perceptual"]
                                         + 0.01 * terms["g_spatial"], rel=1e-6)
    monkeypatch.setenv("SDESIGN_ADACOF_SMOOTHNESS", "tv")
    monkeypatch.setenv("SDESIGN_ADACOF_PERCEPTUAL", "imagenet")
    paper = t.paper_loss(t.Settings.for_cdfi())
    assert paper.smoothness == "tv" and len(paper.perceptual.features) == 23 and paper.perceptual.normalise


def _fake_vimeo(root: Path, sequences: int = 12, per: int = 10, size=(16, 28)) -> list[str]:
    entries = [f"{s:05d}/{i:04d}" for s in range(1, sequences + 1) for i in range(1, per + 1)]
    for n, e in enumerate(entries):
        for k in (1, 2, 3):
            write_image(root / "sequences" / e / f"im{k}.png", np.full((*size, 3), (n * 3 + k) % 256, np.uint8))
    (root / "tri_trainlist.txt").write_text("\n".join(entries) + "\n")
    (root / "tri_testlist.txt").write_text("\n".join(entries[:3]) + "\n")
    return entries


def test_training_data_whole_frames_and_a_seeded_random_subset(tmp_path, monkeypatch):
    entries = _fake_vimeo(tmp_path)
    subset = random_subset(entries, 20, seed=0)
    assert len(subset) == 20 and subset != entries[:20] and subset == random_subset(entries, 20, seed=0)
    assert len({e.split("/")[0] for e in subset}) >= 6  # spread over the sequences, not the first two
    assert random_subset(entries, 0) == entries and random_subset(entries, 10_000) == entries
    monkeypatch.setenv("SDESIGN_ADACOF_TRAIN", f"vimeo:{tmp_path}")
    monkeypatch.setenv("SDESIGN_ADACOF_TRAIN_LIMIT", "20")
    monkeypatch.setenv("SDESIGN_ADACOF_BATCH", "4")
    loader = t.train_loader(t.Settings.for_adacof())
    assert len(loader.dataset) == 20
    assert sorted(tr.name for tr in loader.dataset.triplets) == sorted(subset)
    batch = next(iter(loader))
    assert batch["frame0"].shape == (4, 3, 16, 28)  # whole frames, no crop
    monkeypatch.setenv("SDESIGN_ADACOF_CROP", "8")
    assert next(iter(t.train_loader(t.Settings.for_adacof())))["frame0"].shape == (4, 3, 8, 8)
    assert len(vimeo_dataset(tmp_path, "train")) == len(entries)
    for name in ("TRAIN", "CROP"):
        monkeypatch.delenv(f"SDESIGN_ADACOF_{name}")
    synthetic = t.train_loader(t.Settings(batch_size=1))
    assert next(iter(synthetic))["frame0"].shape == (1, 3, 256, 448)  # Vimeo-sized by default


def test_frames_of_different_sizes_in_a_batch_are_a_clear_error():
    items = [{"frame0": torch.zeros(3, 8, 8), "gt": torch.zeros(3, 8, 8), "frame1": torch.zeros(3, 8, 8), "name": "a"},
             {"frame0": torch.zeros(3, 8, 9), "gt": torch.zeros(3, 8, 9), "frame1": torch.zeros(3, 8, 9), "name": "b"}]
    with pytest.raises(DatasetError, match="different sizes.*SDESIGN_ADACOF_CROP"):
        collate_triplets(items)
