"""ImageNet backbones (SqueezeNet 1.1 for LPIPS, VGG16 for the perceptual loss)
the way torchvision and the ``lpips`` package get them.

Order: a file the user names; the torch hub cache (``torch.hub.get_dir()/checkpoints``,
where torchvision keeps ``squeezenet1_1-b8a52dc0.pth`` and ``vgg16-397923af.pth``);
then, unless ``SDESIGN_OFFLINE=1``, a download into that cache with
``torch.hub.load_state_dict_from_url`` (what ``torchvision.models.*(weights=...)``
does, hash checked). Without internet the error says which file to place where.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

import torch

from sparsenet_design.plugin_api import CheckpointError

OFFLINE_ENV = "SDESIGN_OFFLINE"
DOWNLOAD_TIMEOUT_S = 60


@dataclass(frozen=True)
class Backbone:
    what: str  # for messages
    filename: str  # torchvision's file name in the hub cache
    url: str
    env: str  # the environment variable that names a local file
    option: str  # the CLI option that names a local file


SQUEEZENET1_1 = Backbone("SqueezeNet 1.1 ImageNet weights (LPIPS)", "squeezenet1_1-b8a52dc0.pth",
                         "https://download.pytorch.org/models/squeezenet1_1-b8a52dc0.pth",
                         "SDESIGN_LPIPS_WEIGHTS", "--lpips-weights")
VGG16 = Backbone("VGG16 ImageNet weights (perceptual loss)", "vgg16-397923af.pth",
                 "https://download.pytorch.org/models/vgg16-397923af.pth", "SDESIGN_VGG16_WEIGHTS", "--vgg-weights")


def hub_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "0").strip().lower() not in ("", "0", "false", "no")


def cached(backbone: Backbone) -> Path | None:
    """The backbone's file in the torch hub cache (torchvision's name, or a
    same-stem file with another hash), or None."""
    folder = hub_dir()
    exact = folder / backbone.filename
    if exact.is_file():
        return exact
    stem = backbone.filename.rsplit("-", 1)[0]
    found = sorted(folder.glob(f"{stem}-*.pth")) if folder.is_dir() else []
    return found[0] if found else None


def place_hint(backbone: Backbone) -> str:
    return (f"place torchvision's {backbone.filename} ({backbone.url}) in {hub_dir()}/, or name a local copy "
            f"with {backbone.option} FILE or {backbone.env}=FILE")


def fetch(backbone: Backbone) -> Path:
    """Download the backbone into the torch hub cache (hash checked) and return
    its path; a :class:`CheckpointError` that says what to place where when
    that is impossible."""
    if offline():
        raise CheckpointError(f"the {backbone.what} are not in the torch hub cache and {OFFLINE_ENV} is set: "
                              f"{place_hint(backbone)}.")
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        torch.hub.load_state_dict_from_url(backbone.url, model_dir=str(hub_dir()), map_location="cpu",
                                           progress=False, check_hash=True, file_name=backbone.filename,
                                           weights_only=True)
    except Exception as exc:  # no network, proxy, disk, hash
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CheckpointError(f"could not download the {backbone.what} ({type(exc).__name__}: {text[:160]}); "
                              f"without internet, {place_hint(backbone)}.") from None
    finally:
        socket.setdefaulttimeout(previous)
    path = hub_dir() / backbone.filename
    if not path.is_file():
        raise CheckpointError(f"the download of the {backbone.what} left no {path}; {place_hint(backbone)}.")
    return path


def locate(backbone: Backbone, path: str | os.PathLike | None = None, download: bool = True) -> Path:
    """The weights file to use: ``path``, else ``$ENV``, else the hub cache,
    else a download (when ``download``). Raises :class:`CheckpointError`."""
    path = path or os.environ.get(backbone.env)
    if path:
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"{backbone.what} file {path} does not exist; give torchvision's "
                                  f"{backbone.filename} or a safetensors file with the same keys.")
        return path
    found = cached(backbone)
    if found is not None:
        return found
    if not download:
        raise CheckpointError(f"no {backbone.what}: {place_hint(backbone)}.")
    return fetch(backbone)


def read_state_dict(path: Path) -> dict:
    """A state dict from a ``.pth`` (``weights_only=True``) or ``.safetensors`` file."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    return state
