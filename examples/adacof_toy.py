"""AdaCoF frame interpolation at toy scale (the paper's model, narrowed 8×).

    sdesign design examples/adacof_toy.py --out runs/adacof-toy

Needs the plugin (``pip install -e adapters/adacof``). The plugin's own model
files are the full-size ones (21.84M parameters, the paper's experiments):

    sdesign prune adapters/adacof/sdesign_adacof/model_files/adacof_model.py --out runs/adacof
    sdesign prune adapters/adacof/sdesign_adacof/model_files/cdfi_model.py --out runs/cdfi

This file keeps the same network class, loss and synthetic moving-patch
triplets, with every U-Net width divided by 8 and 32×32 frames, so the whole
loop runs on a laptop CPU in a minute. The AdaCoF warp's per-pixel kernels
and offsets (F² channels) and the occlusion mask keep their widths: the
plugin's channel rule pins them.
"""
import torch

from _toy import shrink
from sdesign_adacof import AdaCoF
from sdesign_adacof.model_files import interpolation_loss, moving_patch_triplets, psnr_on
from sdesign_adacof.models.unet import full_widths

KERNEL_SIZE, DILATION, SIZE, NARROW = 5, 1, 32, 8
DEFAULTS = {"lr": 1e-2, "lam": 1e-4, "epochs": 4, "n_p": 2, "train_epochs": 4, "baseline_epochs": 4}
HEADLINE_METRIC = "psnr"
_DATA = {}


def _narrow_widths():
    widths = full_widths(KERNEL_SIZE)
    taps = KERNEL_SIZE * KERNEL_SIZE
    # the last conv of each kernel head must keep F² channels (the warp reads them)
    return {name: tuple(w if w == taps and i == len(ws) - 1 else max(4, w // NARROW) for i, w in enumerate(ws))
            for name, ws in widths.items()}


def _triplets(split):
    if not _DATA:
        _DATA["train"] = moving_patch_triplets(shrink(64, 8), size=SIZE, seed=0)
        _DATA["test"] = moving_patch_triplets(shrink(16, 4), size=SIZE, seed=1)
    return _DATA[split]


def build_model():
    return AdaCoF(KERNEL_SIZE, DILATION, widths=_narrow_widths())


def example_inputs():
    return (torch.rand(1, 3, SIZE, SIZE), torch.rand(1, 3, SIZE, SIZE))


def train_data():
    return torch.utils.data.DataLoader(_triplets("train"), batch_size=8, shuffle=True)


def loss(model, batch):
    return interpolation_loss(model, batch)


def evaluate(model):
    return {"psnr": psnr_on(model, _triplets("test"))}
