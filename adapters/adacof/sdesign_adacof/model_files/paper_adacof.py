"""The paper's step 1 model: AdaCoF (M0) to sparsify with OBProx-SG.

    sdesign prune paper_adacof.py --lr 0.1 --lam 1e-5 --epochs 20 --n-p 10 --out runs/adacof-prune
    sdesign reconstruct runs/adacof-prune --strategy min --out runs/adacof-design

Settings come from SDESIGN_ADACOF_* environment variables (see
``sdesign_adacof.training.Settings``): TRAIN (default synthetic; the paper:
vimeo:PATH with TRAIN_LIMIT=1000), VAL (default synthetic; e.g.
middlebury:PATH), CROP, BATCH, KERNEL/DILATION (5/1, or 11/2 for AdaCoF+),
WIDTH (scale the U-Net for toy runs), and SDESIGN_VGG16_WEIGHTS or
SDESIGN_ADACOF_NO_PERCEPTUAL=1 for the perceptual term.
"""
from sdesign_adacof import training as _t

_settings = _t.Settings()
HEADLINE_METRIC = "psnr"
DEFAULTS = {"lr": 0.1, "lam": 1e-5, "epochs": 20, "n_p": 10, "strategy": "min", "train_epochs": 100,
            "batch_size": _settings.batch_size}
_validation = None
_loss = None


def build_model():
    return _t.build_adacof(_settings)


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
