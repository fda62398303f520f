"""How torch calls look to the run tracer: Tensor operators and the ``operator``
functions fx records for them, methods and property getters by name, the calls
that read a tensor's values into Python, and the user's line in a traceback."""
from __future__ import annotations

import linecache
import operator
import os
from collections.abc import Callable, Iterator

import torch

_TORCH_DIR = os.path.dirname(torch.__file__)
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # sparsenet_design/

_PLAIN = ("eq", "ne", "lt", "gt", "le", "ge", "pos", "neg", "invert", "add", "sub", "mul", "floordiv", "truediv",
          "mod", "pow", "lshift", "rshift", "and_", "or_", "xor", "getitem", "matmul")
_REFLECTED = ("add", "sub", "mul", "floordiv", "truediv", "mod", "pow", "lshift", "rshift", "and_", "or_", "xor",
              "matmul")
_IN_PLACE = ("iadd", "iand", "ifloordiv", "ilshift", "imod", "imul", "imatmul", "ior", "ipow", "irshift", "isub",
             "itruediv", "ixor", "setitem")


def _operator_table() -> dict[str, tuple[Callable, bool]]:
    """Tensor dunder method -> (the ``operator`` function fx records for it, reflected?)."""
    table = {f"__{name.strip('_')}__": (getattr(operator, name), False) for name in _PLAIN + _IN_PLACE}
    table.update({f"__r{name.strip('_')}__": (getattr(operator, name), True) for name in _REFLECTED})
    return {dunder: entry for dunder, entry in table.items() if hasattr(torch.Tensor, dunder)}


OPERATORS = _operator_table()
IN_PLACE_OPERATORS = frozenset(getattr(operator, name) for name in _IN_PLACE)

# methods that read a tensor's values into Python (the graph then holds for those values only)
VALUE_READS = frozenset({"__bool__", "item", "__int__", "__float__", "__index__", "__complex__", "tolist"})


def tensors_in(value) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from tensors_in(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from tensors_in(v)


def has_tensor(value) -> bool:
    return next(tensors_in(value), None) is not None


def property_name(func) -> str | None:
    """``"T"`` for the getter of ``Tensor.T`` and the like, else None."""
    if getattr(func, "__name__", None) != "__get__":
        return None
    return getattr(getattr(func, "__self__", None), "__name__", None)


def method_name(func) -> str | None:
    """The name of a Tensor method (``"view"`` for ``Tensor.view``), else None."""
    name = getattr(func, "__name__", None)
    qualname = getattr(func, "__qualname__", "") or ""
    if name and qualname in (f"Tensor.{name}", f"TensorBase.{name}"):
        return name
    return None


def user_line(frames) -> str | None:
    """``file:line: code`` of the innermost of ``frames`` (``traceback.FrameSummary``)
    outside torch and this package."""
    for f in reversed(list(frames)):
        if not f.filename.startswith((_TORCH_DIR, _PACKAGE_DIR, "<")):
            code = (f.line or linecache.getline(f.filename, f.lineno)).strip()
            return f"{f.filename}:{f.lineno}: {code}"
    return None
