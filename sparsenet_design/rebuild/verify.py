"""The check run: does the compact model run on the example inputs with the
original output shapes, and if not, which module raised."""
from __future__ import annotations

import traceback

import torch
from torch import nn

from ..design.spec import DesignSpec
from ..errors import SdesignError
from ..tracing.calls import user_line
from ..tracing.shapes import eval_mode, sized_layers


def output_shapes(value) -> list:
    if isinstance(value, torch.Tensor):
        return [tuple(value.shape)]
    if isinstance(value, (tuple, list)):
        return [s for v in value for s in output_shapes(v)]
    if isinstance(value, dict):
        return [s for k in sorted(value, key=str) for s in output_shapes(value[k])]
    return []


class _CallStack:
    """Forward hooks that remember which module was running when forward raised."""

    def __init__(self, model: nn.Module):
        self.stack: list[str] = []
        self.handles = []
        for name, m in model.named_modules():
            self.handles.append(m.register_forward_pre_hook(lambda mod, args, n=name: self._enter(n)))
            self.handles.append(m.register_forward_hook(lambda mod, args, out: self._leave()))

    def _enter(self, name: str) -> None:
        self.stack.append(name)

    def _leave(self) -> None:
        self.stack.pop()

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def run_once(model: nn.Module, inputs: tuple) -> tuple[list | None, str | None, Exception | None]:
    """Output shapes of one run of ``model``, or the module that raised and the error."""
    try:
        return output_shapes(_forward(model, inputs)), None, None
    except Exception as first:
        # run again with hooks that see which module raises: only a failing run pays for them
        hooks = _CallStack(model)
        try:
            _forward(model, inputs)
        except Exception as exc:
            return None, next((n for n in reversed(hooks.stack) if n), ""), exc
        finally:
            hooks.close()
        return None, "", first


def _forward(model: nn.Module, inputs: tuple):
    with torch.no_grad(), eval_mode(model), sized_layers(model):
        return model(*inputs)


def to_device_of(model: nn.Module, value):
    p = next(model.parameters(), None)
    if p is None:
        return value
    if isinstance(value, torch.Tensor):
        return value.to(p.device)
    if isinstance(value, (tuple, list)):
        return type(value)(to_device_of(model, v) for v in value)
    return value


def does_not_run(model, where, exc, got, expected, tried: list[str]) -> SdesignError:
    if exc is not None:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        problem = f"raised {type(exc).__name__}: {first}"
        line = user_line(traceback.extract_tb(exc.__traceback__))
    else:
        problem, line = f"returned shapes {got}, expected {expected}", None
    module = ""
    if where:
        try:
            module = f" in module '{where}' ({type(model.get_submodule(where)).__name__})"
        except AttributeError:
            module = f" in module '{where}'"
    at = f" at {line}" if line else ""
    pinned = f" Pinning {', '.join(repr(p) for p in tried)} did not help." if tried else ""
    return SdesignError(
        f"The compact {type(model).__name__} does not run: it {problem}{module}{at}.{pinned} Its forward "
        "code probably uses a channel count the channel rules cannot see (a constant, or a size read from "
        "another tensor). Pin that module (pinned=[...] / PINNED in the model file), or register a layer "
        "kind for it (sparsenet_design.kinds)."
    )


def widest_changed(spec: DesignSpec, taken: list[str]) -> str:
    for path in spec.changed_modules():
        top = path.split(".")[0]
        if top not in taken:
            return top
    return ""
