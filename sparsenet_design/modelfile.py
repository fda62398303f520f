"""Load and validate a user's model file (``model.py``).

A model file is a plain Python file with a few top-level names::

    build_model()          -> nn.Module                    (required)
    example_inputs()       -> tuple of forward() args      (required)
    train_data()           -> re-iterable of batches       (required)
    loss(model, batch)     -> scalar tensor                (required)
    evaluate(model)        -> {"metric": float, ...}       (optional)
    HEADLINE_METRIC = "accuracy"                           (optional; default: first metric)
    PINNED = ["head"]                                      (optional module paths)
    LEAF_MODULES = [MyBlock]                               (optional classes)
    DEFAULTS = {"lr": 0.1, "lam": 1e-4, ...}               (optional CLI defaults)
    SETTINGS = {"kernel_size": 5, ...}; configure(settings)  (optional: set with --set NAME=VALUE)
    make_optimizer(params) -> optimizer | (optimizer, scheduler)   (optional, retraining)

Everything the file does wrong is reported as a :class:`ModelFileError` that
names the file and, where it raised, the line.
"""
from __future__ import annotations

import hashlib
import importlib.util
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from .errors import ModelFileError
from .modelfile_options import apply_settings, resolve_model_file

REQUIRED = ("build_model", "example_inputs", "train_data", "loss")

#: Names ``DEFAULTS`` may set; each is the default of the CLI option of the same name.
KNOWN_DEFAULTS = (
    "lr", "lam", "epochs", "n_p", "momentum", "train_epochs", "batch_size",
    "strategy", "seed", "baseline_epochs", "accumulation",
)

TEMPLATE = '''\
import torch
from torch import nn

def build_model():
    return nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 10))

def example_inputs():
    return (torch.randn(1, 16),)             # positional args of forward()

def train_data():
    x, y = torch.randn(256, 16), torch.randint(0, 10, (256,))
    return torch.utils.data.DataLoader(list(zip(x, y)), batch_size=32, shuffle=True)

def loss(model, batch):
    x, y = batch
    return nn.functional.cross_entropy(model(x), y)

def evaluate(model):                         # optional: named metrics
    return {"accuracy": 0.0}
'''


def _where(exc: BaseException, path: Path) -> str:
    """``file:line: code`` of the deepest frame of ``exc`` inside ``path``."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if Path(f.filename).resolve() == path]
    if not frames and isinstance(exc, SyntaxError) and exc.lineno:
        return f"{path.name}:{exc.lineno}: {(exc.text or '').strip()}"
    if not frames:
        return path.name
    frame = frames[-1]
    return f"{path.name}:{frame.lineno}: {(frame.line or '').strip()}"


def _raised(what: str, exc: BaseException, path: Path) -> ModelFileError:
    return ModelFileError(
        f"{what} in model file {path} raised {type(exc).__name__}: {exc}\n"
        f"  at {_where(exc, path)}\n"
        "Fix the model file and run the command again."
    )


@dataclass
class ModelFile:
    """A loaded, validated model file. Calls into user code are wrapped so that
    their failures become :class:`ModelFileError` with the file and line."""

    path: Path
    module: ModuleType
    sha256: str
    pinned: tuple[str, ...] = ()
    leaf_modules: tuple[type, ...] = ()
    defaults: dict[str, Any] = field(default_factory=dict)
    headline_metric: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)  # SETTINGS as set for this run

    def _call(self, name: str, *args):
        try:
            return getattr(self.module, name)(*args)
        except ModelFileError:
            raise
        except Exception as exc:
            raise _raised(f"{name}()", exc, self.path) from exc

    def build_model(self) -> nn.Module:
        model = self._call("build_model")
        if not isinstance(model, nn.Module):
            raise ModelFileError(
                f"build_model() in {self.path} returned {type(model).__name__}, "
                "not a torch.nn.Module."
            )
        return model

    def example_inputs(self) -> tuple:
        inputs = self._call("example_inputs")
        if isinstance(inputs, torch.Tensor):
            inputs = (inputs,)
        if not isinstance(inputs, (tuple, list)):
            raise ModelFileError(
                f"example_inputs() in {self.path} returned {type(inputs).__name__}; "
                "return a tuple of the positional arguments of forward(), e.g. (torch.randn(1, 3, 32, 32),)."
            )
        return tuple(inputs)

    def train_data(self) -> Iterable:
        data = self._call("train_data")
        if not isinstance(data, Iterable):
            raise ModelFileError(
                f"train_data() in {self.path} returned {type(data).__name__}, which is not "
                "iterable; return a DataLoader or a list of batches."
            )
        return data

    @property
    def loss(self) -> Callable[[nn.Module, Any], torch.Tensor]:
        def wrapped(model, batch):
            return self._call("loss", model, batch)
        return wrapped

    @property
    def has_evaluate(self) -> bool:
        return callable(getattr(self.module, "evaluate", None))

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        if not self.has_evaluate:
            return {}
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                metrics = self._call("evaluate", model)
        finally:
            model.train(was_training)
        if not isinstance(metrics, dict):
            raise ModelFileError(
                f"evaluate() in {self.path} returned {type(metrics).__name__}; "
                'return a dict of named metrics, e.g. {"accuracy": 0.97}.'
            )
        try:
            return {str(k): float(v) for k, v in metrics.items()}
        except (TypeError, ValueError) as exc:
            raise ModelFileError(
                f"evaluate() in {self.path} returned a metric that is not a number: {exc}"
            ) from exc

    def headline(self, metrics: dict[str, float]) -> str | None:
        """Name of the metric that summarises quality (HEADLINE_METRIC or the first)."""
        if self.headline_metric and self.headline_metric in metrics:
            return self.headline_metric
        return next(iter(metrics), None)

    @property
    def make_optimizer(self) -> Callable | None:
        fn = getattr(self.module, "make_optimizer", None)
        if not callable(fn):
            return None
        return lambda params: self._call("make_optimizer", params)

    def default(self, name: str, fallback: Any = None) -> Any:
        return self.defaults.get(name, fallback)


def _hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _import(path: Path) -> ModuleType:
    name = f"sdesign_modelfile_{hashlib.sha1(str(path).encode()).hexdigest()[:12]}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ModelFileError(f"{path} cannot be imported as a Python file; name it *.py.")
    module = importlib.util.module_from_spec(spec)
    # The file may import helpers that sit beside it, and dataclasses/pickling
    # look the module up by name, so it goes into sys.path and sys.modules.
    sys.modules[name] = module
    folder = str(path.parent)
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise _raised("importing", exc, path) from exc
    finally:
        if added and folder in sys.path:
            sys.path.remove(folder)
    return module


def load_model_file(path: str | Path, settings: Mapping[str, Any] | None = None) -> ModelFile:
    """Import ``path`` (or the model file registered under that name) and check it
    defines what the toolkit needs; ``settings`` set its ``SETTINGS``."""
    path = resolve_model_file(path).expanduser().resolve()
    if not path.is_file():
        raise ModelFileError(
            f"Model file {path} does not exist. A model file is a Python file that "
            f"defines {', '.join(REQUIRED)}; minimal template:\n\n{TEMPLATE}"
        )
    module = _import(path)
    try:
        values = apply_settings(module, path, settings)
    except ModelFileError:
        raise
    except Exception as exc:
        raise _raised("configure()", exc, path) from exc
    missing = [n for n in REQUIRED if not callable(getattr(module, n, None))]
    if missing:
        raise ModelFileError(
            f"Model file {path} does not define {', '.join(missing)} "
            f"(required: {', '.join(REQUIRED)}). Minimal template:\n\n{TEMPLATE}"
        )
    pinned = getattr(module, "PINNED", ())
    if isinstance(pinned, str) or not all(isinstance(p, str) for p in pinned):
        raise ModelFileError(f"PINNED in {path} must be a list of module paths (strings).")
    leaf = getattr(module, "LEAF_MODULES", ())
    if not all(isinstance(c, type) and issubclass(c, nn.Module) for c in leaf):
        raise ModelFileError(f"LEAF_MODULES in {path} must be a list of nn.Module classes.")
    defaults = dict(getattr(module, "DEFAULTS", {}) or {})
    unknown = sorted(set(defaults) - set(KNOWN_DEFAULTS))
    if unknown:
        raise ModelFileError(
            f"DEFAULTS in {path} has unknown keys {unknown}; known: {', '.join(KNOWN_DEFAULTS)}."
        )
    headline = getattr(module, "HEADLINE_METRIC", None)
    return ModelFile(
        path=path, module=module, sha256=_hash(path), pinned=tuple(pinned),
        leaf_modules=tuple(leaf), defaults=defaults,
        headline_metric=str(headline) if headline else None, settings=values,
    )
