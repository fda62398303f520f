"""CDFI as a model file for the core: ``sdesign train cdfi_model.py``.

Without a spec this is the paper's final model: the published compact U-Net
(F=11, d=2) with the feature pyramid, GridNet and path selection. To put the
upgrades on a U-Net that ``sdesign reconstruct`` produced from
``adacof_model.py``, set ``SDESIGN_ADACOF_UNET_SPEC`` to that design spec (run
the AdaCoF file with the same ``SDESIGN_ADACOF_KERNEL_SIZE`` /
``SDESIGN_ADACOF_DILATION`` as here; defaults 11 and 2).
"""
import os

import torch

from sdesign_adacof import CDFI, AdaCoF
from sdesign_adacof.model_files import interpolation_loss, moving_patch_triplets, psnr_on

KERNEL_SIZE = int(os.environ.get("SDESIGN_ADACOF_KERNEL_SIZE", "11"))
DILATION = int(os.environ.get("SDESIGN_ADACOF_DILATION", "2"))
UNET_SPEC = os.environ.get("SDESIGN_ADACOF_UNET_SPEC")
HEADLINE_METRIC = "psnr"
DEFAULTS = {"lr": 1e-3, "lam": 1e-5, "batch_size": 8}


def build_model():
    if not UNET_SPEC:
        return CDFI(kernel_size=KERNEL_SIZE, dilation=DILATION)
    from sparsenet_design.rebuild.reconstruct import apply_spec

    compact = apply_spec(AdaCoF(KERNEL_SIZE, DILATION), UNET_SPEC)
    return CDFI(compact, kernel_size=KERNEL_SIZE, dilation=DILATION)


def example_inputs():
    return (torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64))


def train_data():
    return torch.utils.data.DataLoader(moving_patch_triplets(64, seed=0), batch_size=8, shuffle=True)


def loss(model, batch):
    return interpolation_loss(model, batch)


def evaluate(model):
    return {"psnr": psnr_on(model, moving_patch_triplets(16, seed=1))}
