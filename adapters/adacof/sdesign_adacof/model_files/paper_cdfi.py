"""The paper's final model: CDFI (feature pyramid, GridNet, path selection) on the
compact U-Net that `sdesign reconstruct` made from paper_adacof.py.

    SDESIGN_ADACOF_SPEC=runs/adacof-design/spec.json sdesign train paper_cdfi.py --epochs 100 --out runs/cdfi
    sdesign adacof evaluate --model paper_cdfi.py --weights runs/cdfi/weights.safetensors --dataset middlebury DATA

Settings come from SDESIGN_ADACOF_* environment variables (see
``sdesign_adacof.training.Settings``): TRAIN (default synthetic; the paper:
vimeo:PATH with TRAIN_LIMIT=1000), VAL (default synthetic; e.g.
middlebury:PATH), CROP, BATCH, KERNEL/DILATION (5/1, or 11/2 for AdaCoF+),
WIDTH (scale the U-Net for toy runs), and SDESIGN_VGG16_WEIGHTS or
SDESIGN_ADACOF_NO_PERCEPTUAL=1 for the perceptual term.
"""
import os

from sdesign_adacof import training as _t

_settings = _t.Settings()
if _t.ENV + "TRAIN_LIMIT" not in os.environ:
    _settings.train_limit = 0  # the final model trains on the whole training set (1000 for sparsifying)
HEADLINE_METRIC = "psnr"
DEFAULTS = {"lr": 0.1, "lam": 1e-5, "epochs": 20, "n_p": 10, "strategy": "min", "train_epochs": 100,
            "batch_size": _settings.batch_size}
_validation = None
_loss = None


def build_model():
    return _t.build_cdfi(_settings)


def example_inputs():
    return _t.example_frames(_settings)


def train_data():
    return _t.train_loader(_settings)


def loss(model, batch):
    global _loss
    if _loss is None:
        _loss = _t.model_loss(_t.paper_loss(_settings).to(batch["gt"].device))
    return _loss(model, batch)


def evaluate(model):
    global _validation
    if _validation is None:
        _validation = _t.validation_set(_settings)
    return _t.validate(model, _validation)


def make_optimizer(params):
    return _t.make_optimizer(params)
