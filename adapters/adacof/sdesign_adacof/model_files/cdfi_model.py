"""CDFI as a model file for the core: ``sdesign train cdfi_model.py``.

Without a spec this is the paper's final model: the published compact U-Net
(F=11, d=2) with the feature pyramid, GridNet and path selection. To put the
upgrades on a U-Net that ``sdesign reconstruct`` produced from
``adacof_model.py``, pass that design spec (``--set spec=DESIGN/spec.json``); a
spec made at another kernel size (e.g. F=5) gives its widths to an F-sized U-Net
here (``--set kernel_size=…``, ``--set dilation=…``, defaults 11 and 2). The
``SDESIGN_ADACOF_*`` variables of the same names are the fallback.
"""
import torch

from sdesign_adacof import training as _t
from sdesign_adacof.model_files import interpolation_loss, moving_patch_triplets, psnr_on

SETTINGS = {"kernel_size": int(_t.env("KERNEL_SIZE", "11")), "dilation": int(_t.env("DILATION", "2")),
            "spec": _t.env("SPEC", None) or None}
KERNEL_SIZE, DILATION, SPEC = SETTINGS["kernel_size"], SETTINGS["dilation"], SETTINGS["spec"]


def configure(settings):
    """Called with the SETTINGS as set on the command line (``--set spec=DESIGN/spec.json``)."""
    global KERNEL_SIZE, DILATION, SPEC
    KERNEL_SIZE, DILATION, SPEC = settings["kernel_size"], settings["dilation"], settings["spec"] or None

HEADLINE_METRIC = "psnr"
DEFAULTS = {"lr": 1e-3, "lam": 1e-5, "batch_size": 8}


def build_model():
    return _t.build_cdfi(_t.Settings(kernel_size=KERNEL_SIZE, dilation=DILATION, spec=SPEC, width=1.0,
                                     mode="exact"))


def example_inputs():
    return (torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64))


def train_data():
    return torch.utils.data.DataLoader(moving_patch_triplets(64, seed=0), batch_size=8, shuffle=True)


def loss(model, batch):
    return interpolation_loss(model, batch)


def evaluate(model):
    return {"psnr": psnr_on(model, moving_patch_triplets(16, seed=1))}
