"""CDFI as a model file for the core: ``sdesign train cdfi_model.py``.

Without a spec this is the paper's final model: the published compact U-Net
(F=11, d=2) with the feature pyramid, GridNet and path selection. To put the
upgrades on a U-Net that ``sdesign reconstruct`` produced from
``adacof_model.py``, set ``SDESIGN_ADACOF_SPEC`` to that design spec; a spec
made at another kernel size (e.g. F=5) gives its widths to an F-sized U-Net
here (``SDESIGN_ADACOF_KERNEL_SIZE`` / ``SDESIGN_ADACOF_DILATION``, defaults 11
and 2). These are the variables the paper model files read too.
"""
import torch

from sdesign_adacof import training as _t
from sdesign_adacof.model_files import interpolation_loss, moving_patch_triplets, psnr_on

KERNEL_SIZE = int(_t.env("KERNEL_SIZE", "11"))
DILATION = int(_t.env("DILATION", "2"))
SPEC = _t.env("SPEC", None) or None
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
