"""The paper's final model: CDFI (feature pyramid, GridNet, path selection),
F=11, d=2, on a compact U-Net.

    sdesign train paper_cdfi.py --epochs 100 --out runs/cdfi          # the published compact U-Net
    SDESIGN_ADACOF_SPEC=runs/adacof-design/spec.json sdesign train paper_cdfi.py --epochs 100 --out runs/cdfi
    sdesign adacof evaluate --model paper_cdfi.py --weights runs/cdfi/weights.safetensors --dataset middlebury DATA

Without SPEC the U-Net has the published compact widths (4,976,718 parameters
in all, as the published CDFI_adacof.pth). With SPEC (the spec.json that
`sdesign reconstruct` wrote for paper_adacof.py, usually at F=5) its widths go
onto an F=11 U-Net, as the paper built its final model from the F=5 compression.

Defaults follow the published code (CDFI train.py): whole 256×448 frames with
random flips and temporal swap, batch 8, the whole training set; loss
Charbonnier + 0.005 · VGG16 conv4_3 (before its ReLU, raw [0, 1] input) + 0.01 ·
g_Spatial; AdaMax, lr 1e-3 halved every 20 epochs, 100 epochs.

Settings (``sdesign info adacof:paper`` lists them; ``--set NAME=VALUE`` sets
one; ``SDESIGN_ADACOF_<NAME>`` variables are the fallback, see
``sdesign_adacof.training.Settings``): TRAIN (default synthetic; the paper:
vimeo:PATH), TRAIN_LIMIT (0 = all), VAL (default synthetic; e.g.
middlebury:PATH), CROP (0: whole frames), BATCH (8), KERNEL_SIZE / DILATION
(11/2), SPEC, LR (1e-3), SMOOTHNESS (g_spatial | tv), PERCEPTUAL (published |
imagenet), MODE (exact | published | published-training), WIDTH, SEED, and
SDESIGN_VGG16_WEIGHTS or SDESIGN_ADACOF_NO_PERCEPTUAL=1.
"""
from sdesign_adacof import training as _t

SETTINGS = _t.setting_defaults("cdfi")
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


def make_optimizer(params, lr=None):
    """AdaMax, lr halved every 20 epochs; ``lr`` (default SDESIGN_ADACOF_LR or 1e-3) changes only the rate."""
    return _t.make_optimizer(params, _settings.lr if lr is None else lr)
