"""The design spec: a small JSON file that says how a compact model differs from
the model a ``build_model()`` makes (module path → new widths), plus the
settings and densities that produced it."""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError
from ..files import atomic_write, read_json

SPEC_VERSION = 1


def architecture_fingerprint(model: nn.Module, modules: dict[str, nn.Module] | None = None) -> str:
    """sha256 of every module's path and class and every tensor's path and shape
    (``modules``: ``dict(model.named_modules())`` if the caller has it)."""
    # one walk; the same order as named_modules(), then named_parameters(), then named_buffers()
    named, lines, tensors = modules, [], {"_parameters": [], "_buffers": []}
    seen: set[int] = set()
    for name, module in (model.named_modules() if named is None else named.items()):
        lines.append(f"{name}:{type(module).__name__};")
        prefix = f"{name}." if name else ""
        for table, out in tensors.items():
            for key, t in getattr(module, table).items():
                if t is not None and id(t) not in seen:
                    seen.add(id(t))
                    out.append(f"{prefix}{key}:{tuple(t.shape)};")
    text = "".join(lines) + "".join(tensors["_parameters"]) + "".join(tensors["_buffers"])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class DesignSpec:
    """``modules[path] = {"class": ..., "original": {attr: int}, "widths": {attr: int}}``;
    ``params[path] = {"original": shape, "widths": shape}`` for tensors used directly in forward."""

    modules: dict[str, dict[str, Any]] = field(default_factory=dict)
    params: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    attributes: dict[str, dict[str, int]] = field(default_factory=dict)  # "module.attr" -> original/widths
    strategy: str = "min"
    densities: dict[str, float] = field(default_factory=dict)
    fingerprint: str = ""
    source: str = ""  # class name of the source model
    groups: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    version: int = SPEC_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically (temp file, fsync, rename)."""
        return atomic_write(path, self.to_json())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DesignSpec":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def load(cls, path: str | os.PathLike) -> "DesignSpec":
        path = Path(path)
        if path.is_dir():
            path = path / "spec.json"
        if not path.is_file():
            raise CheckpointError(
                f"Design spec {path} does not exist. Pass the spec.json written by "
                "`sdesign reconstruct` (or its folder)."
            )
        data = read_json(path, "Design spec")
        if not isinstance(data, dict) or "modules" not in data or not isinstance(data["modules"], dict):
            raise CheckpointError(
                f"{path} is JSON but not a design spec (it has no 'modules' table). "
                "Pass the spec.json written by `sdesign reconstruct`."
            )
        if data.get("version", SPEC_VERSION) > SPEC_VERSION:
            raise CheckpointError(
                f"{path} was written by a newer sparsenet-design (spec version {data['version']}); upgrade."
            )
        return cls.from_dict(data)

    # -- summaries -----------------------------------------------------------
    def changed_modules(self) -> dict[str, dict[str, tuple[int, int]]]:
        """``{path: {attr: (original, new)}}`` for modules whose widths changed."""
        out = {}
        for path, entry in self.modules.items():
            diff = {
                a: (entry["original"][a], w) for a, w in entry["widths"].items() if entry["original"].get(a) != w
            }
            if diff:
                out[path] = diff
        return out


def tensor_shape(t: torch.Tensor) -> list[int]:
    return [int(s) for s in t.shape]
