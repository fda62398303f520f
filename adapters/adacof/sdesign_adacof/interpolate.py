"""Interpolating frame pairs and frame sequences with any model whose
``forward(frame0, frame1)`` returns the middle frame.

Frames of any size work: they are padded (reflection, replication where the
frame is too small to reflect) to a multiple of 32 and the result is cropped
back. Sequences are upsampled by 2, 4 or 8 by recursive midpoints.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from sparsenet_design.plugin_api import CheckpointError, SdesignError

from .imageio_utils import tensor_to_uint8, uint8_to_tensor

PAD_MULTIPLE = 32
FACTORS = (2, 4, 8)
BUILTIN_MODELS = ("average", "adacof", "adacof+", "compressed", "compressed+", "cdfi")


class FrameAverage(nn.Module):
    """The trivial baseline: the mean of the two input frames."""

    def forward(self, frame0: torch.Tensor, frame1: torch.Tensor) -> torch.Tensor:
        return (frame0 + frame1) / 2


def pad_to_multiple(x: torch.Tensor, multiple: int = PAD_MULTIPLE) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad (B, C, H, W) on the bottom/right to a multiple; returns the original (H, W)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, (h, w)


class Interpolator:
    """Runs a frame-interpolation model on (B, 3, H, W) or (3, H, W) frames in
    [0, 1], handling padding, device, eval mode, no-grad and optional autocast."""

    def __init__(self, model: nn.Module, device: str | torch.device | None = None, amp: bool = False):
        self.device = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model = model.to(self.device).eval()
        self.amp = amp

    @torch.no_grad()
    def __call__(self, frame0: torch.Tensor, frame1: torch.Tensor) -> torch.Tensor:
        single = frame0.dim() == 3
        if single:
            frame0, frame1 = frame0.unsqueeze(0), frame1.unsqueeze(0)
        if frame0.shape != frame1.shape:
            raise SdesignError(f"the two frames differ in size: {tuple(frame0.shape[-2:])} and "
                               f"{tuple(frame1.shape[-2:])} (H, W); interpolation needs frames of the same size")
        a, (h, w) = pad_to_multiple(frame0.to(self.device, torch.float32))
        b, _ = pad_to_multiple(frame1.to(self.device, torch.float32))
        dtype = torch.bfloat16 if self.device.type == "cpu" else torch.float16
        with torch.autocast(self.device.type, dtype=dtype, enabled=self.amp):
            out = self.model(a, b)
        if isinstance(out, (tuple, list)):
            out = out[0]
        out = out[..., :h, :w].float().clamp(0, 1)
        return out[0] if single else out


def midpoints(interp: Interpolator, frame0: torch.Tensor, frame1: torch.Tensor, factor: int) -> list[torch.Tensor]:
    """The ``factor − 1`` frames between two (3, H, W) frames at t = 1/factor, …,
    by recursive midpoints; each level runs as one batch."""
    if factor not in FACTORS:
        raise SdesignError(f"factor must be one of {', '.join(map(str, FACTORS))}, not {factor}")
    frames = [frame0, frame1]
    while len(frames) - 1 < factor:
        mids = interp(torch.stack(frames[:-1]), torch.stack(frames[1:]))
        merged = []
        for i, mid in enumerate(mids):
            merged += [frames[i], mid]
        frames = merged + [frames[-1]]
    return frames[1:-1]


def interpolate_sequence(interp: Interpolator, frames: Iterable[np.ndarray], factor: int = 2) -> Iterator[np.ndarray]:
    """Given (H, W, 3) uint8 frames, yield the upsampled sequence: every input
    frame followed by the ``factor − 1`` frames between it and the next."""
    previous = None
    size = None
    for index, array in enumerate(frames):
        if size is None:
            size = array.shape
        elif array.shape != size:
            raise SdesignError(f"frame {index} is {array.shape[1]}×{array.shape[0]} but the first frame is "
                               f"{size[1]}×{size[0]} (W×H); all frames of a sequence must have the same size")
        current = uint8_to_tensor(array).to(interp.device)
        if previous is not None:
            for mid in midpoints(interp, previous, current, factor):
                yield tensor_to_uint8(mid)
        yield array
        previous = current


# ------------------------------------------------------------------- loading
def build_builtin(name: str, mode=None) -> nn.Module:
    """``average`` or a published architecture by name (adacof, adacof+,
    compressed, compressed+, cdfi), freshly initialised."""
    if name == "average":
        return FrameAverage()
    from .checkpoints import ARCHS

    if name in ARCHS:
        return ARCHS[name].build(mode)
    raise SdesignError(f"unknown model {name!r}: give one of {', '.join(BUILTIN_MODELS)} or a model file (*.py)")


_PYTORCH_SUFFIXES = (".pth", ".pt", ".ckpt", ".tar")


def load_model(model: str | os.PathLike | None, weights: str | os.PathLike | None = None,
               specs: Sequence[str | os.PathLike] = (), mode=None, settings: dict | None = None) -> nn.Module:
    """A model from a built-in name or a model file (``build_model()``), with
    design specs applied in order and weights (safetensors) loaded.

    Weights written by ``sdesign adacof convert`` name their architecture and
    mode: with ``model=None`` the architecture comes from the file, and the
    model runs in the file's mode unless ``mode`` (a preset name or
    :class:`~sdesign_adacof.models.mode.Mode`; ``"auto"`` = the file's) says
    otherwise. Without such metadata, ``model=None`` means ``cdfi``. ``settings``
    set a model file's ``SETTINGS``."""
    from .checkpoints import ARCH_KEY, ARCHS, apply_weights_mode, guess_arch, read_checkpoint, weights_metadata

    if weights is not None and Path(weights).suffix.lower() in _PYTORCH_SUFFIXES:
        hint = ""
        try:
            guessed = guess_arch(read_checkpoint(weights)) if Path(weights).is_file() else None
            hint = f" (it looks like arch {guessed!r})" if guessed else ""
        except SdesignError:
            pass
        raise CheckpointError(
            f"--weights {weights} is a PyTorch checkpoint{hint}; weights are loaded from safetensors. If it is a "
            f"published AdaCoF/CDFI checkpoint, convert it once: sdesign adacof convert {weights} --arch "
            f"{'ARCH' if not hint else guessed} -o weights.safetensors (ARCH: {', '.join(ARCHS)}).")
    metadata = weights_metadata(weights) if weights is not None else {}
    arch = metadata.get(ARCH_KEY)
    if model is None:
        model = arch or "cdfi"
    model = str(model)
    is_file = model.endswith(".py") or Path(model).is_file() or ":" in model  # a path, or a registered name
    if arch and not is_file and model != arch:
        raise SdesignError(f"{weights} holds converted {arch!r} weights but --model is {model!r}; pass "
                           f"--model {arch} or leave --model out.")
    if is_file:
        from sparsenet_design.plugin_api import load_model_file

        net = load_model_file(model, settings).build_model()
    else:
        if settings:
            raise SdesignError(f"--set applies to model files; --model {model} is a built-in model.")
        net = build_builtin(model)
    if specs:
        from sparsenet_design.plugin_api import DesignSpec, apply_spec

        for spec in specs:
            if not Path(spec).is_file():
                raise SdesignError(f"spec file {spec} does not exist")
            net = apply_spec(net, DesignSpec.load(Path(spec)))
    if weights is not None:
        from sparsenet_design.plugin_api import load_weights, save_weights

        if not Path(weights).is_file():
            raise CheckpointError(f"weights file {weights} does not exist")
        load_weights(net, weights)
    apply_weights_mode(net, metadata, None if mode in (None, "auto") else mode)
    return net


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
