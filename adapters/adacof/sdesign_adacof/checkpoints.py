"""Published AdaCoF / CDFI checkpoints: read them safely, convert them to this
plugin's layout, and keep the published behaviour with the weights.

The published code (HyeongminLEE/AdaCoF-pytorch, tding1/CDFI) saves
``{"epoch": ..., "state_dict": model.state_dict()}`` with its own key names
(``get_kernel.moduleConv1.0.weight``, ``context_synthesis.lateral_init.conv.weight``
…). :func:`load_published` maps them onto :class:`~sdesign_adacof.AdaCoF` /
:class:`~sdesign_adacof.CDFI` (the indices inside the Sequentials are the same),
permutes the GridNet's first-layer input channels (the published code
interleaves the warped pyramid levels), and returns a model in the
:data:`~sdesign_adacof.models.mode.PUBLISHED` mode, whose forward reproduces
the published code (truncating warp, published pyramid geometry).

Checkpoints are read with ``torch.load(weights_only=True)``: tensors and plain
containers only, never a full unpickle.

:func:`save_converted` writes the converted weights as safetensors with the
architecture and mode in the header, so ``sdesign adacof evaluate |
interpolate | video --weights FILE`` rebuild the same model in the same mode.
"""
from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from sparsenet_design.plugin_api import CheckpointError, SdesignError

from .models.mode import PUBLISHED, Mode, as_mode, model_mode, set_mode
from .models.published import COMPRESSED_ADACOF_WIDTHS, CDFI_PYRAMID_CHANNELS

#: Safetensors header keys written by :func:`save_converted`.
ARCH_KEY = "sdesign_adacof.arch"
MODE_KEY = "sdesign_adacof.mode"
SOURCE_KEY = "sdesign_adacof.source"
SOURCE_SHA_KEY = "sdesign_adacof.source_sha256"


@dataclass(frozen=True)
class Arch:
    """One published architecture."""

    name: str
    family: str  # "adacof" or "cdfi"
    kernel_size: int
    dilation: int
    compressed: bool
    title: str
    published_file: str

    def build(self, mode: Mode | str | None = None) -> nn.Module:
        """A freshly initialised model of this architecture."""
        if self.family == "cdfi":
            from .models.cdfi import CDFI

            return CDFI(None, self.kernel_size, self.dilation, mode=mode)
        from .models.adacof import AdaCoF

        widths = COMPRESSED_ADACOF_WIDTHS if self.compressed else None
        return AdaCoF(self.kernel_size, self.dilation, widths=widths, mode=mode)


ARCHS: dict[str, Arch] = {a.name: a for a in (
    Arch("adacof", "adacof", 5, 1, False, "AdaCoF (F=5, d=1)", "AdaCoF-pytorch checkpoint/kernelsize_5/ckpt.pth"),
    Arch("adacof+", "adacof", 11, 2, False, "AdaCoF+ (F=11, d=2)",
         "AdaCoF-pytorch checkpoint/kernelsize_11/ckpt.pth"),
    Arch("compressed", "adacof", 5, 1, True, "compressed AdaCoF (F=5, d=1)",
         "CDFI checkpoints/compressed_adacof_F_5_D_1.pth"),
    Arch("compressed+", "adacof", 11, 2, True, "compressed AdaCoF+ (F=11, d=2)",
         "CDFI checkpoints/compressed_adacof_F_11_D_2.pth"),
    Arch("cdfi", "cdfi", 11, 2, False, "CDFI (F=11, d=2)", "CDFI checkpoints/CDFI_adacof.pth"),
)}


def get_arch(arch: str) -> Arch:
    if arch not in ARCHS:
        raise SdesignError(f"Unknown published architecture {arch!r}; choose one of {', '.join(ARCHS)}.")
    return ARCHS[arch]


# ------------------------------------------------------------------- reading
_WRAPPER_PREFIXES = ("module.", "model.")  # DataParallel; AdaCoF-pytorch's Model wrapper
_NESTED_KEYS = ("state_dict", "model_state_dict", "model")


def _describe(obj) -> str:
    if isinstance(obj, Mapping):
        keys = list(obj)[:5]
        return f"a dict with keys {keys}{' …' if len(obj) > 5 else ''}"
    return f"a {type(obj).__name__}"


def _unwrap(obj, source: str) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        for key in _NESTED_KEYS:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(
            f"{source} is {_describe(obj)}, not a published AdaCoF/CDFI checkpoint: expected a dict with a "
            "'state_dict' of tensors (as the published train.py saves it) or a state dict itself.")
    bad = [str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(
            f"{source}: the state dict holds entries that are not tensors ({', '.join(bad[:5])}"
            f"{' …' if len(bad) > 5 else ''}); expected parameter tensors only.")
    state = {str(k): v for k, v in obj.items()}
    for prefix in _WRAPPER_PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def read_checkpoint(checkpoint: str | os.PathLike | Mapping) -> dict[str, torch.Tensor]:
    """The state dict in a published checkpoint: a path to the original ``.pth``
    (read with ``torch.load(weights_only=True)``; a ``.safetensors`` file works
    too) or an in-memory dict (``{"state_dict": ...}`` or the state dict).
    Wrapper prefixes (``module.``, ``model.``) are removed."""
    if isinstance(checkpoint, Mapping):
        return _unwrap(checkpoint, "the checkpoint dict")
    path = Path(checkpoint)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist.")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return _unwrap(load_file(str(path)), str(path))
        except CheckpointError:
            raise
        except Exception as exc:
            raise CheckpointError(f"{path} is not a readable safetensors file ({type(exc).__name__}: {exc}).") \
                from exc
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if found:
            raise CheckpointError(
                f"{path} holds a Python object ({found.group(1)}) besides tensors, numbers and plain containers. "
                "It is read with torch.load(weights_only=True) and never fully unpickled, because unpickling "
                "can run arbitrary code. If you trust the file, re-save just its weights in a Python session: "
                "ckpt = torch.load(PATH, weights_only=False); torch.save({'state_dict': ckpt['state_dict']}, "
                "'clean.pth').") from None
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        boilerplate = ("Weights only load failed", "Please file an issue", "Check the documentation", "In PyTorch")
        detail = next((line for line in lines if not line.startswith(boilerplate)), lines[0] if lines else "")
        raise CheckpointError(
            f"{path} cannot be read as a PyTorch checkpoint ({type(exc).__name__}: {detail[:160]}). Expected the "
            "original .pth file of the published AdaCoF or CDFI code; it may be truncated or another format."
        ) from None
    return _unwrap(obj, str(path))


# ------------------------------------------------------------------ key maps
_UNET_BLOCKS = {f"moduleConv{i}": f"conv{i}" for i in range(1, 6)}
_UNET_BLOCKS.update({f"moduleDeconv{i}": f"deconv{i}" for i in range(2, 6)})
_UNET_BLOCKS.update({f"moduleUpsample{i}": f"upsample{i}" for i in range(2, 6)})
_UNET_BLOCKS.update({f"module{h}{i}": f"{h.lower()}{i}" for h in ("Weight", "Alpha", "Beta") for i in (1, 2)})
_UNET_BLOCKS["moduleOcclusion"] = "occlusion"

_KERNEL = re.compile(r"^get_kernel\.(module[A-Za-z]+\d?|module1by1_\d)\.(.+)$")
_GRID = re.compile(r"^context_synthesis\.((?:lateral|down|up)_\w+?)\.(f|conv)\.(.+)$")


def _our_key(key: str, family: str) -> str | None:
    """Our name for a published key (None when the key has no place in ``family``)."""
    m = _KERNEL.match(key)
    if m:
        block, rest = m.groups()
        if block in _UNET_BLOCKS:
            return f"unet.{_UNET_BLOCKS[block]}.{rest}"
        if family != "cdfi":
            return None
        if block == "moduleBlend":
            return f"blend.{rest}"
        level = re.fullmatch(r"module1by1_(\d)", block)
        if level and 1 <= int(level.group(1)) <= 5:
            return f"pyramid.{int(level.group(1)) - 1}.{rest}"
        return None
    if family != "cdfi":
        return None
    m = _GRID.match(key)
    if m:
        block, part, rest = m.groups()
        if block.startswith("lateral"):
            return f"synthesis.{block}.{'f' if part == 'f' else 'shortcut'}.{rest}"
        if part == "f":  # down/up blocks are Sequentials here, with the same indices
            return f"synthesis.{block}.{rest}"
    return None


def _published_input_order(pyramid_channels) -> list[int]:
    """For each GridNet input channel here (A1, A2, levels·set 1, levels·set 2),
    its index in the published order (A1, A2, C1L, C1R, C2L, C2R, …)."""
    starts, pos = [], 6
    for c in pyramid_channels:
        starts.append((pos, pos + c))
        pos += 2 * c
    order = list(range(6))
    for side in (0, 1):
        for (left, right), c in zip(starts, pyramid_channels):
            first = left if side == 0 else right
            order += range(first, first + c)
    return order


def guess_arch(state: Mapping[str, torch.Tensor]) -> str | None:
    """The published architecture a state dict (published key names) looks like, or None."""
    keys = set(state)
    head = state.get("get_kernel.moduleWeight1.7.weight")
    conv1 = state.get("get_kernel.moduleConv1.0.weight")
    if head is None or conv1 is None:
        return None
    taps = int(head.shape[0])
    kernel_size = int(round(taps ** 0.5))
    if any(k.startswith(("context_synthesis.", "get_kernel.moduleBlend", "get_kernel.module1by1_")) for k in keys):
        return "cdfi" if kernel_size == 11 else None
    full = int(conv1.shape[0]) == 32
    if kernel_size == 5:
        return "adacof" if full else "compressed"
    if kernel_size == 11:
        return "adacof+" if full else "compressed+"
    return None


def _short(items: list[str], n: int = 4) -> str:
    return ", ".join(items[:n]) + (f" … ({len(items)} in all)" if len(items) > n else "")


def _by_block(keys: list[str], n: int = 5) -> str:
    """Keys grouped by their block (``get_kernel.moduleBlend.*``, ``context_synthesis.*``)."""
    if len(keys) <= 3:
        return ", ".join(keys)
    groups: dict[str, int] = {}
    for key in keys:
        parts = key.split(".")
        block = ".".join(parts[:2]) if parts[0] in ("get_kernel", "unet") and len(parts) > 2 else parts[0]
        groups[block] = groups.get(block, 0) + 1
    ranked = sorted(groups.items(), key=lambda item: -item[1])  # the biggest blocks first
    shown = [f"{block}.* ({count})" for block, count in ranked[:n]]
    return ", ".join(shown) + (" …" if len(groups) > n else "")


def convert_state_dict(published: Mapping[str, torch.Tensor], arch: str,
                       source: str = "the checkpoint") -> dict[str, torch.Tensor]:
    """Published key names → this plugin's, for ``arch``; checks every key and
    shape against the architecture and raises one paragraph naming what does
    not fit and the architecture the checkpoint looks like."""
    spec = get_arch(arch)
    state = _unwrap(published, source)
    if any(k.startswith(("unet.", "synthesis.", "pyramid.")) for k in state) and \
            not any(k.startswith("get_kernel.") for k in state):
        raise CheckpointError(
            f"{source} already uses sdesign_adacof's key names (unet.…); it is not a published checkpoint. "
            "Load it with model.load_state_dict(...) or pass it as --weights.")
    model = spec.build()
    own = model.state_dict()
    converted, unknown = {}, []
    for key, value in state.items():
        ours = _our_key(key, spec.family)
        if ours is None or ours not in own:
            unknown.append(key)
        else:
            converted[ours] = value
    missing = [_published_name(k) for k in own if k not in converted]
    wrong = [f"{_published_name(k)} {tuple(v.shape)} (expected {tuple(own[k].shape)})"
             for k, v in converted.items() if v.shape != own[k].shape]
    if missing or unknown or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} expected key(s) missing ({_by_block(missing)})")
        if unknown:
            parts.append(f"{len(unknown)} unknown key(s) ({_by_block(unknown)})")
        if wrong:
            parts.append(f"{len(wrong)} tensor(s) of another shape ({_short(wrong, 3)})")
        guess = guess_arch(state)
        if guess and guess != arch:
            hint = f"Its keys and shapes look like arch {guess!r} ({ARCHS[guess].title}); try arch={guess!r}."
        elif guess == arch:
            hint = "It looks like this architecture but does not fit exactly; was it saved from modified code?"
        else:
            hint = ("None of the five published architectures fits its keys and shapes "
                    f"({', '.join(ARCHS)}); expected keys such as get_kernel.moduleConv1.0.weight.")
        raise CheckpointError(f"{source} does not fit arch {arch!r} ({spec.title}): {'; '.join(parts)}. {hint}")
    if spec.family == "cdfi":
        order = torch.tensor(_published_input_order(CDFI_PYRAMID_CHANNELS))
        for key in ("synthesis.lateral_init.f.1.weight", "synthesis.lateral_init.shortcut.weight"):
            converted[key] = converted[key].index_select(1, order)
        prelu = "synthesis.lateral_init.f.0.weight"
        if converted[prelu].numel() == len(order):  # a per-channel PReLU follows the channels
            converted[prelu] = converted[prelu].index_select(0, order)
    return {k: v.detach().to(own[k].dtype).contiguous() for k, v in converted.items()}


def _published_name(ours: str) -> str:
    """The published name of one of our keys (for messages)."""
    for pub, mine in _UNET_BLOCKS.items():
        if ours.startswith(f"unet.{mine}."):
            return f"get_kernel.{pub}.{ours[len('unet.' + mine) + 1:]}"
    if ours.startswith("blend."):
        return "get_kernel.moduleBlend." + ours[len("blend."):]
    m = re.match(r"^pyramid\.(\d)\.(.+)$", ours)
    if m:
        return f"get_kernel.module1by1_{int(m.group(1)) + 1}.{m.group(2)}"
    m = re.match(r"^synthesis\.(\w+?)\.(.+)$", ours)
    if m:
        block, rest = m.groups()
        if block.startswith("lateral"):
            return f"context_synthesis.{block}.{rest.replace('shortcut.', 'conv.', 1)}"
        return f"context_synthesis.{block}.f.{rest}"
    return ours


def load_published(checkpoint: str | os.PathLike | Mapping, arch: str,
                   mode: Mode | str | None = PUBLISHED) -> nn.Module:
    """An eval-mode model with a published checkpoint's weights.

    ``checkpoint``: the original ``.pth`` of the published code (a dict with
    ``state_dict``; read with ``torch.load(weights_only=True)``) or a state dict.
    ``arch``: ``adacof`` (F=5, d=1), ``adacof+`` (F=11, d=2), ``compressed``,
    ``compressed+`` or ``cdfi``. ``mode``: by default
    :data:`~sdesign_adacof.models.mode.PUBLISHED` (the published forward:
    truncating warp and, for CDFI, the published pyramid geometry); ``"exact"``
    runs the same weights through true bilinear sampling."""
    spec = get_arch(arch)
    source = str(checkpoint) if not isinstance(checkpoint, Mapping) else "the checkpoint dict"
    state = convert_state_dict(read_checkpoint(checkpoint), arch, source)
    model = spec.build(mode)
    model.load_state_dict(state)
    return model.eval()


# ------------------------------------------------------------ converted files
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_converted(model: nn.Module, path: str | os.PathLike, arch: str, source: str | os.PathLike | None = None,
                   mode: Mode | str | None = None) -> Path:
    """Write ``model``'s weights as safetensors with ``arch`` and the mode
    (``mode`` or the model's own) in the header."""
    from sparsenet_design.plugin_api import load_weights, save_weights

    get_arch(arch)
    mode = as_mode(mode) if mode is not None else (model_mode(model) or PUBLISHED)
    metadata = {ARCH_KEY: arch, MODE_KEY: mode.to_json()}
    if source is not None and not isinstance(source, Mapping):
        src = Path(source)
        metadata[SOURCE_KEY] = src.name
        if src.is_file():
            metadata[SOURCE_SHA_KEY] = _sha256(src)
    return save_weights(model, path, metadata=metadata)


def convert_checkpoint(checkpoint: str | os.PathLike | Mapping, arch: str, out: str | os.PathLike,
                       mode: Mode | str | None = PUBLISHED) -> Path:
    """``load_published`` + ``save_converted``: the ``sdesign adacof convert`` command."""
    model = load_published(checkpoint, arch, mode)
    return save_converted(model, out, arch, checkpoint if not isinstance(checkpoint, Mapping) else None,
                          model_mode(model))


def weights_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The header metadata of a safetensors weights file ({} when it has none or is not one)."""
    path = Path(path)
    if path.suffix != ".safetensors" or not path.is_file():
        return {}
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            return dict(fh.metadata() or {})
    except Exception:
        return {}  # an unreadable file: loading the weights will say so


def apply_weights_mode(model: nn.Module, metadata: Mapping[str, str], mode: Mode | str | None = None) -> Mode | None:
    """Put ``model`` into ``mode``, else into the mode the weights' metadata names.
    Returns the mode applied (None when there was nothing to apply)."""
    chosen = as_mode(mode) if mode is not None else (
        Mode.from_json(metadata[MODE_KEY]) if MODE_KEY in metadata else None)
    if chosen is None:
        return None
    if not set_mode(model, chosen) and mode is not None and chosen != as_mode("exact"):
        raise SdesignError(f"mode {chosen.name!r} applies to AdaCoF/CDFI models, but this model "
                           f"({type(model).__name__}) contains none.")
    return chosen
