"""AdaCoF as a model file for the core: ``sdesign prune adacof_model.py``.

F and d are settings (``--set kernel_size=11 --set dilation=2``; defaults 5 and
1: the paper's compression experiments; ``SDESIGN_ADACOF_KERNEL_SIZE`` /
``SDESIGN_ADACOF_DILATION`` as a fallback), as in the paper model files. Training data are synthetic
moving-patch triplets (64×64), so the file runs without any dataset; the loss
is Charbonnier + 0.01 · g_Spatial (the published smoothness term). The warp op
pins the F² kernel/offset outputs, the occlusion mask has one channel
(⌈√d·1⌉ = 1) and the RGB output is a model output, so none of them changes
width when the U-Net is rebuilt.
"""
import torch

from sdesign_adacof import AdaCoF
from sdesign_adacof.model_files import interpolation_loss, moving_patch_triplets, psnr_on
from sdesign_adacof.training import env

SETTINGS = {"kernel_size": int(env("KERNEL_SIZE", "5")), "dilation": int(env("DILATION", "1"))}
KERNEL_SIZE, DILATION = SETTINGS["kernel_size"], SETTINGS["dilation"]


def configure(settings):
    """Called with the SETTINGS as set on the command line (``--set kernel_size=11``)."""
    global KERNEL_SIZE, DILATION
    KERNEL_SIZE, DILATION = settings["kernel_size"], settings["dilation"]

HEADLINE_METRIC = "psnr"
DEFAULTS = {"lr": 1e-2, "lam": 1e-5, "batch_size": 8}


def build_model():
    return AdaCoF(KERNEL_SIZE, DILATION)


def example_inputs():
    return (torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64))


def train_data():
    return torch.utils.data.DataLoader(moving_patch_triplets(64, seed=0), batch_size=8, shuffle=True)


def loss(model, batch):
    return interpolation_loss(model, batch)


def evaluate(model):
    return {"psnr": psnr_on(model, moving_patch_triplets(16, seed=1))}
