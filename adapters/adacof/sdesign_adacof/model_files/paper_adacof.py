"""The paper's step 1 model: AdaCoF (M0) to sparsify with OBProx-SG.

    sdesign prune paper_adacof.py --lr 0.1 --lam 1e-5 --epochs 20 --n-p 10 --out runs/adacof-prune
    sdesign reconstruct runs/adacof-prune --strategy min --out runs/adacof-design

Defaults follow the published code (CDFI train.py): AdaCoF F=5, d=1; whole
256×448 frames with random flips and temporal swap, batch 8; a seeded random
1000-triplet subset (TRAIN_LIMIT) for sparsifying; loss Charbonnier + 0.005 ·
VGG16 conv4_3 (before its ReLU, raw [0, 1] input) + 0.01 · g_Spatial;
retraining with AdaMax, lr 1e-3 halved every 20 epochs.

Settings (``sdesign info adacof:paper`` lists them; ``--set NAME=VALUE`` sets
one; ``SDESIGN_ADACOF_<NAME>`` variables are the fallback, see
``sdesign_adacof.training.Settings``): TRAIN (default synthetic; the paper:
vimeo:PATH), TRAIN_LIMIT (1000), VAL (default synthetic; e.g.
middlebury:PATH), CROP (0: whole frames), BATCH (8), KERNEL_SIZE / DILATION
(5/1, or 11/2 for AdaCoF+), LR (1e-3, for `sdesign train`), SMOOTHNESS
(g_spatial | tv: paper eq. 9), PERCEPTUAL (published | imagenet), MODE (exact |
published | published-training: the published warp kernels), WIDTH (scale the
U-Net for toy runs), SEED, and SDESIGN_VGG16_WEIGHTS or
SDESIGN_ADACOF_NO_PERCEPTUAL=1 for the perceptual term.
"""
from sdesign_adacof import training as _t

SETTINGS = _t.setting_defaults("adacof")
_settings = _t.Settings(**SETTINGS)
HEADLINE_METRIC = "psnr"
DEFAULTS = {"lr": 0.1, "lam": 1e-5, "epochs": 20, "n_p": 10, "strategy": "min", "train_epochs": 100,
            "batch_size": _settings.batch_size}
_validation = None
_loss = None


def configure(settings):
    """Called with the SETTINGS as set on the command line (``--set NAME=VALUE``)."""
    global _settings, _validation, _loss
    _settings, _validation, _loss = _t.Settings(**settings), None, None


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


def make_optimizer(params, lr=None):
    """AdaMax, lr halved every 20 epochs; ``lr`` (default SDESIGN_ADACOF_LR or 1e-3) changes only the rate."""
    return _t.make_optimizer(params, _settings.lr if lr is None else lr)
