"""Model files by name, and their settings as options.

A plugin registers model files under names in the entry-point group
``sparsenet_design.model_files`` (value: the module that is the file)::

    [project.entry-points."sparsenet_design.model_files"]
    "adacof:paper" = "sdesign_adacof.model_files.paper_adacof"

so that ``sdesign prune adacof:paper`` works without a path. A model file that
declares ``SETTINGS`` (a dict of setting name → default) gets them set from the
command line (``--set kernel_size=11 --set train=vimeo:DIR``): each value is
converted to the type of its default, and the file's ``configure(settings)`` is
called with all of them before anything else of it runs. ``sdesign info MODEL``
lists them. The values are recorded in the run's ``config.json``.
"""
from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Mapping
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

from .errors import ModelFileError

GROUP = "sparsenet_design.model_files"
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


def registered_model_files() -> dict[str, str]:
    """Registered name → the module that is the model file."""
    return {ep.name: ep.value for ep in entry_points(group=GROUP)}


def resolve_model_file(name_or_path: str | Path) -> Path:
    """A path as given, or the file of a registered model-file name."""
    path = Path(name_or_path).expanduser()
    if path.exists() or str(name_or_path).endswith(".py"):
        return path
    registered = registered_model_files()
    module = registered.get(str(name_or_path))
    if module is None:
        known = ", ".join(sorted(registered)) or "none (no plugin registers any)"
        raise ModelFileError(
            f"{name_or_path} is neither a model file nor a registered model-file name. Give the path of "
            f"a Python model file, or one of the registered names: {known}."
        )
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin:
        raise ModelFileError(f"The model file registered as {name_or_path} ({module}) is not installed; "
                             "reinstall the plugin that registers it.")
    return Path(spec.origin)


def parse_assignments(items: Iterable[str]) -> dict[str, str]:
    """``["kernel_size=11", "train=vimeo:DIR"]`` → ``{"kernel_size": "11", ...}``."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ModelFileError(f"--set {item!r} is not NAME=VALUE; e.g. --set kernel_size=11.")
        out[name.strip().replace("-", "_")] = value.strip()
    return out


def _convert(name: str, value: Any, default: Any, path: Path) -> Any:
    if not isinstance(value, str) or default is None or isinstance(default, str):
        return value
    try:
        if isinstance(default, bool):
            lowered = value.strip().lower()
            if lowered not in _TRUE + _FALSE:
                raise ValueError(value)
            return lowered in _TRUE
        return type(default)(value)
    except (TypeError, ValueError):
        raise ModelFileError(
            f"Setting {name}={value!r} for model file {path.name} is not a {type(default).__name__} "
            f"(its default is {default!r}); give a value of that type."
        ) from None


def apply_settings(module: ModuleType, path: Path, given: Mapping[str, Any] | None) -> dict[str, Any]:
    """The model file's settings with ``given`` applied (and ``configure`` called);
    ``{}`` for a file without ``SETTINGS``."""
    declared = getattr(module, "SETTINGS", None)
    given = dict(given or {})
    if declared is None:
        if given:
            raise ModelFileError(
                f"Model file {path.name} declares no SETTINGS, so --set {', '.join(given)} has nothing to set. "
                "Drop --set, or declare SETTINGS = {name: default, ...} and configure(settings) in the file."
            )
        return {}
    if not isinstance(declared, Mapping):
        raise ModelFileError(f"SETTINGS in {path} must be a dict of setting name → default value.")
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise ModelFileError(
            f"Model file {path.name} has no setting {', '.join(unknown)}; its settings are "
            f"{', '.join(sorted(declared))} (sdesign info {path} lists them with their defaults)."
        )
    values = {name: _convert(name, given.get(name, default), default, path) for name, default in declared.items()}
    configure = getattr(module, "configure", None)
    if callable(configure):
        configure(dict(values))
    return values
