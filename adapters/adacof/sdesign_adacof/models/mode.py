"""How closely a model follows the published code (AdaCoF-pytorch, CDFI).

The networks here match the published ones layer for layer; three details of
the published code differ from the method as described, and each is a choice:

- ``sampling``: ``"bilinear"`` (default) samples with ``floor``, true bilinear
  interpolation. ``"truncate"`` takes the integer part of each offset by a C
  cast (toward zero), as the published CUDA kernels do: a negative fractional
  offset extrapolates from the pixel pair on the other side of the sample.
  Published weights were trained with it and lose several dB without it.
- ``gradients``: ``"exact"`` (default) is the gradient of the forward.
  ``"published"`` is the published backward: weight and offset gradients
  summed over input channels 0-2 only, zero gradient for the warped input (so
  CDFI's 1×1 pyramid convs never learn). Only for re-running a published
  training run exactly.
- ``pyramid`` (CDFI only): ``"frame"`` (default) upsamples each pyramid level
  to the frame size and warps it with the op's implicit replication padding,
  like the frames. ``"published"`` gives the 1×1 convs ``padding=1`` and
  resizes each level to the replication-padded frame size
  ``(H + (F-1)·d, W + (F-1)·d)``, warped as pre-padded input.

Presets: :data:`EXACT`; :data:`PUBLISHED` (the published forward: what
:func:`sdesign_adacof.load_published` gives published weights);
:data:`PUBLISHED_TRAINING` (forward and backward as published).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from sparsenet_design.plugin_api import SdesignError

SAMPLINGS = ("bilinear", "truncate")
GRADIENTS = ("exact", "published")
PYRAMIDS = ("frame", "published")


@dataclass(frozen=True)
class Mode:
    """Which published behaviours a model reproduces (see the module docstring)."""

    sampling: str = "bilinear"
    gradients: str = "exact"
    pyramid: str = "frame"

    def __post_init__(self):
        for name, value, allowed in (("sampling", self.sampling, SAMPLINGS),
                                     ("gradients", self.gradients, GRADIENTS),
                                     ("pyramid", self.pyramid, PYRAMIDS)):
            if value not in allowed:
                raise SdesignError(f"Unknown {name} {value!r} for an AdaCoF/CDFI mode; choose one of "
                                   f"{', '.join(allowed)}.")

    @property
    def truncate(self) -> bool:
        return self.sampling == "truncate"

    @property
    def published_grad(self) -> bool:
        return self.gradients == "published"

    @property
    def published_pyramid(self) -> bool:
        return self.pyramid == "published"

    @property
    def name(self) -> str:
        """The preset's name, or the three fields when it is no preset."""
        for name, preset in MODES.items():
            if preset == self:
                return name
        return f"sampling={self.sampling}, gradients={self.gradients}, pyramid={self.pyramid}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Mode":
        try:
            data = json.loads(text)
            return cls(**{k: data[k] for k in ("sampling", "gradients", "pyramid") if k in data})
        except (ValueError, TypeError) as exc:
            raise SdesignError(f"Not an AdaCoF/CDFI mode: {text!r} ({exc}).") from exc


EXACT = Mode()
PUBLISHED = Mode(sampling="truncate", gradients="exact", pyramid="published")
PUBLISHED_TRAINING = Mode(sampling="truncate", gradients="published", pyramid="published")
MODES = {"exact": EXACT, "published": PUBLISHED, "published-training": PUBLISHED_TRAINING}


def as_mode(value: "Mode | str | dict | None") -> Mode:
    """A :class:`Mode` from a Mode, a preset name (exact, published,
    published-training), a dict of fields, or None (exact)."""
    if value is None:
        return EXACT
    if isinstance(value, Mode):
        return value
    if isinstance(value, dict):
        return Mode(**value)
    if isinstance(value, str):
        if value in MODES:
            return MODES[value]
        if value.lstrip().startswith("{"):
            return Mode.from_json(value)
    raise SdesignError(f"Unknown AdaCoF/CDFI mode {value!r}; choose one of {', '.join(MODES)} "
                       "(or a Mode(sampling=..., gradients=..., pyramid=...)).")


def set_mode(model, mode: "Mode | str | dict | None") -> int:
    """Put every AdaCoF/CDFI module inside ``model`` into ``mode``; returns how many."""
    mode = as_mode(mode)
    count = 0
    for module in model.modules():
        setter = getattr(module, "set_mode", None)
        if callable(setter) and hasattr(module, "mode"):
            setter(mode)
            count += 1
    return count


def model_mode(model) -> Mode | None:
    """The mode of the outermost AdaCoF/CDFI module inside ``model`` (None if there is none)."""
    for module in model.modules():
        if isinstance(getattr(module, "mode", None), Mode) and callable(getattr(module, "set_mode", None)):
            return module.mode
    return None
