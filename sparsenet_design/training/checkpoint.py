"""Weights and checkpoints on disk: safetensors + JSON, written atomically.

- :func:`save_weights` / :func:`load_weights`: a model's state dict as one
  ``.safetensors`` file (never a pickle).
- :func:`save_checkpoint` / :func:`load_checkpoint`: model weights *and* the
  training state (optimizer, scheduler, RNG, counters — any nesting of dicts,
  lists, numbers and tensors) in one ``.safetensors`` file: tensors in the body,
  the structure as JSON in the header metadata. One file means one atomic
  rename, so a checkpoint is either the old one or the new one, never half.

Every read failure becomes a :class:`CheckpointError` that names the file.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from ..errors import CheckpointError
from ..files import atomic_write

CHECKPOINT_FORMAT = "sparsenet-design-checkpoint/1"


def _plain_tensors(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # clone: tied weights share storage, which safetensors refuses to write.
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def _read_safetensors(path: Path, what: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    if not path.is_file():
        raise CheckpointError(f"{what} {path} does not exist.")
    raw = path.read_bytes()
    try:
        tensors = st_load(raw)
        header_len = int.from_bytes(raw[:8], "little")
        metadata = json.loads(raw[8:8 + header_len]).get("__metadata__", {}) or {}
    except Exception as exc:  # safetensors raises its own error types, or OSError/ValueError
        raise CheckpointError(
            f"{what} {path} is not a readable safetensors file ({type(exc).__name__}: {exc}). "
            "It may be truncated or corrupt; re-create it or point to another file."
        ) from exc
    return tensors, metadata


def save_weights(model: nn.Module | Mapping[str, torch.Tensor], path: str | Path,
                 metadata: Mapping[str, str] | None = None) -> Path:
    """Save a module's state dict (or a state dict) as safetensors, atomically."""
    state = model.state_dict() if isinstance(model, nn.Module) else model
    path = Path(path)
    atomic_write(path, st_save(_plain_tensors(state), metadata=dict(metadata or {})))
    return path


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A safetensors file as a state dict (a checkpoint gives its model weights)."""
    tensors, metadata = _read_safetensors(Path(path), "Weights file")
    if metadata.get("format") == CHECKPOINT_FORMAT:
        return {k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")}
    return tensors


def load_weights(model: nn.Module, path: str | Path, strict: bool = True) -> nn.Module:
    """Load ``path`` into ``model``; mismatched names or shapes are a clear error."""
    path = Path(path)
    state = read_weights(path)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k} {tuple(state[k].shape)} vs model {tuple(v.shape)}"
             for k, v in own.items() if k in state and state[k].shape != v.shape]
    if wrong or (strict and (missing or unexpected)):
        parts = []
        if wrong:
            parts.append(f"shape mismatch: {'; '.join(wrong[:3])}" + (" …" if len(wrong) > 3 else ""))
        if missing:
            parts.append(f"missing: {', '.join(missing[:5])}" + (" …" if len(missing) > 5 else ""))
        if unexpected:
            parts.append(f"unexpected: {', '.join(unexpected[:5])}" + (" …" if len(unexpected) > 5 else ""))
        raise CheckpointError(
            f"Weights file {path} does not fit this model ({'; '.join(parts)}). "
            "Was it saved from another model, or from a compact model without its --spec?"
        )
    model.load_state_dict(state, strict=strict)
    return model


# ---- nested training state <-> (tensors, JSON) --------------------------------

def _flatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        key = str(len(tensors))
        tensors[key] = obj.detach().to("cpu").contiguous().clone()
        return {"__tensor__": key}
    if isinstance(obj, np.ndarray):
        key = str(len(tensors))
        tensors[key] = torch.from_numpy(np.ascontiguousarray(obj).copy())
        return {"__ndarray__": key}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Mapping):
        return {"__dict__": [[_flatten(k, tensors), _flatten(v, tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_flatten(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [_flatten(v, tensors) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} in a checkpoint")


def _unflatten(obj: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_unflatten(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__ndarray__" in obj:
            return tensors[obj["__ndarray__"]].numpy()
        if "__tuple__" in obj:
            return tuple(_unflatten(v, tensors) for v in obj["__tuple__"])
        if "__dict__" in obj:
            return {_unflatten(k, tensors): _unflatten(v, tensors) for k, v in obj["__dict__"]}
    return obj


def save_checkpoint(path: str | Path, model_state: Mapping[str, torch.Tensor],
                    train_state: Mapping[str, Any]) -> Path:
    """One atomic file holding the model weights and the nested training state."""
    state_tensors: dict[str, torch.Tensor] = {}
    skeleton = _flatten(dict(train_state), state_tensors)
    tensors = {f"model/{k}": v for k, v in _plain_tensors(model_state).items()}
    tensors.update({f"state/{k}": v for k, v in state_tensors.items()})
    metadata = {"format": CHECKPOINT_FORMAT, "state": json.dumps(skeleton)}
    path = Path(path)
    atomic_write(path, st_save(tensors, metadata=metadata))
    return path


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(model_state, train_state)`` of a checkpoint written by :func:`save_checkpoint`."""
    path = Path(path)
    tensors, metadata = _read_safetensors(path, "Checkpoint")
    if metadata.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} is a safetensors file but not a sparsenet-design checkpoint "
            f"(format {metadata.get('format')!r}); pass a run folder's checkpoint/last.safetensors."
        )
    try:
        skeleton = json.loads(metadata["state"])
        state_tensors = {k[len("state/"):]: v for k, v in tensors.items() if k.startswith("state/")}
        train_state = _unflatten(skeleton, state_tensors)
    except (KeyError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"Checkpoint {path} has a damaged state header ({exc}).") from exc
    model_state = {k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")}
    return model_state, train_state
