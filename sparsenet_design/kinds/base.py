"""What the core knows about one kind of layer, or one kind of op, in one object.

A :class:`LayerKind` gathers everything about a module class: how a call of it
couples channels (its *channel rule*), its output shape (so the shape pass need
not run it), which of its tensors follow which width attribute (so it can be
rebuilt at new widths), how a fresh copy is initialised, whether its weight is
*prunable* (penalised by OBProx-SG, its density driving the √d rule), and that
it is traced as one opaque call (a *leaf*). An :class:`OpKind` does the same for
functions, torch ops and tensor methods, which only have a channel rule.

Two facts hold for a layer kind's *subclasses* differently:

- what the kind says about a layer's **tensors** (prunable weight, which tensor
  dimension follows which width, fresh initialisation) holds for every subclass;
- what it says about a **call** (leaf, channel rule, output shape) holds only for
  subclasses that keep the kind's ``forward``. A subclass with its own ``forward``
  (timm's ``BatchNormAct2d``: batch norm, then dropout and an activation) computes
  something else; it is traced through, and the functional ops inside it
  (``F.batch_norm``, ``F.conv2d``, …) attribute their widths back to it.

Kinds are registered in :mod:`sparsenet_design.kinds.registry`.
"""
from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn

from ..rebuild.module_copy import copy_module

Rule = Callable[[Any], None]
# tensor name -> {dim: width attribute, or (width attribute, divided by the layer's groups)}
TensorDims = Mapping[str, Mapping[int, "str | tuple[str, bool]"]]

_CONTAINERS = frozenset((dict, OrderedDict, set, list))


def dotted_name(obj: Any) -> str:
    """``module.qualname`` of a class or function (how kinds name what they cannot import)."""
    return f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}"


class Kind:
    """Shared by layer and op kinds: a name and a channel rule."""

    #: ``rule(ctx) -> None``, see :mod:`sparsenet_design.kinds.rules`; ``None``: no rule, every
    #: channel the call touches is pinned.
    channels: Rule | None = None

    def __init__(self, name: str | None = None, channels: Rule | None = None):
        if channels is not None:
            self.channels = channels
        self.name = name or type(self).__name__

    def targets(self) -> tuple:
        raise NotImplementedError

    def __repr__(self) -> str:
        shown = ", ".join(t if isinstance(t, str) else getattr(t, "__name__", repr(t)) for t in self.targets()[:4])
        more = f", … ({len(self.targets())})" if len(self.targets()) > 4 else ""
        return f"<{type(self).__name__} {self.name}: {shown}{more}>"


class LayerKind(Kind):
    """One kind of layer (``nn.Module`` class). Subclass it and set the class
    attributes, or pass them to the constructor::

        register_kind(LayerKind(MyBlock, channels=passthrough_rule(0)))

    ``classes`` may hold classes or dotted names (``"timm.layers.norm.LayerNorm2d"``),
    so that a kind can cover a library without importing it.
    """

    classes: tuple[type | str, ...] = ()
    #: traced as one call (its inner ops are not recorded)
    leaf: bool = True
    #: its ``weight`` carries the l1 penalty and its density proposes widths
    prunable: bool = False
    #: the width attributes the √d rule reads for a prunable layer: (input, output)
    roles: tuple[str, str] | None = None
    #: which dimension of which tensor follows which width attribute
    tensors: TensorDims = {}

    def __init__(
        self,
        *classes: type | str,
        name: str | None = None,
        channels: Rule | None = None,
        output_shape: Callable | None = None,
        tensors: TensorDims | None = None,
        prunable: bool | None = None,
        roles: tuple[str, str] | None = None,
        leaf: bool | None = None,
        resize: Callable | None = None,
        reset: Callable | None = None,
    ):
        super().__init__(name, channels)
        if classes:
            self.classes = tuple(classes)
        if not self.classes:
            raise ValueError(f"{self.name}: a layer kind needs at least one class")
        if name is None and type(self) is LayerKind:
            first = self.classes[0]
            self.name = first.rsplit(".", 1)[-1] if isinstance(first, str) else first.__name__
        given = {"output_shape": output_shape, "tensors": tensors, "prunable": prunable, "roles": roles,
                 "leaf": leaf, "resize": resize, "reset": reset}
        for attr, value in given.items():  # what is not given stays as the class says
            if value is not None:
                setattr(self, attr, value)

    def targets(self) -> tuple:
        return self.classes

    # -- the call -------------------------------------------------------------

    def output_shape(self, module: nn.Module, x: torch.Tensor) -> tuple[int, ...] | None:
        """The output shape of ``module(x)`` by formula, or ``None`` to let the layer
        run (unusual arguments, tensors that do not fit: running it raises the error
        a user expects)."""
        return None

    def has_output_shape(self) -> bool:
        """Whether this kind sizes a call by formula (else the layer runs)."""
        if "output_shape" in self.__dict__:
            return True
        return getattr(type(self).output_shape, "__func__", type(self).output_shape) is not LayerKind.output_shape

    # -- the tensors ------------------------------------------------------------

    def can_resize(self) -> bool:
        return bool(self.tensors) or "resize" in self.__dict__ or type(self).resize is not LayerKind.resize

    def tensor_dims(self) -> dict[str, dict[int, tuple[str, bool]]]:
        """``tensors`` with every entry as ``(attribute, divided by groups)`` (do not modify)."""
        cached = self.__dict__.get("_tensor_dims")
        if cached is None or cached[0] is not self.tensors:
            dims = {
                name: {d: (v, False) if isinstance(v, str) else tuple(v) for d, v in spec.items()}
                for name, spec in self.tensors.items()
            }
            cached = self.__dict__["_tensor_dims"] = (self.tensors, dims)
        return cached[1]

    def resize(
        self,
        module: nn.Module,
        widths: Mapping[str, int],
        indices: Mapping[str, torch.Tensor | None] | None,
        fresh: bool,
    ) -> nn.Module:
        """A copy of ``module`` whose width attributes are ``widths``: freshly
        initialised (``fresh``), or keeping the channels ``indices[attr]`` (the first
        ones where not given) with their weights."""
        dims = self.tensor_dims()
        if not dims:
            raise TypeError(
                f"don't know how to resize {type(module).__name__}: its layer kind {self.name} "
                "declares no tensors (LayerKind.tensors) and no resize()"
            )
        new = shallow_clone(module)
        set_widths(new, widths)
        fresh = fresh and self.can_reset(new)
        start_empty = fresh and self.fresh_init_writes_all(module)
        groups = getattr(new, "groups", 1)
        for name, spec in dims.items():
            t = getattr(module, name, None)
            if t is None:
                continue
            shape = list(t.shape)
            for dim, (attr, per_group) in spec.items():
                if attr in widths:
                    shape[dim] = widths[attr] // groups if per_group else widths[attr]
            if start_empty:
                data = torch.empty(shape, dtype=t.dtype, device=t.device)
            else:  # kept channels; a fresh init then overwrites what it initialises
                data = source = t.detach()
                for dim, (attr, per_group) in spec.items():
                    if attr in widths:
                        idx = None if (per_group and groups > 1) or not indices else indices.get(attr)
                        data = select(data, dim, shape[dim], idx)
                data = own_copy(data, source)
            # the name is already registered (the state was copied): replace the tensor in place
            if isinstance(t, nn.Parameter):
                new._parameters[name] = nn.Parameter(data, requires_grad=t.requires_grad)
            else:
                new._buffers[name] = data
        copy_tensors_left_shared(new, module)
        if fresh:
            self.reset(new)
        return new

    def fresh_init_writes_all(self, module: nn.Module) -> bool:
        """Whether :meth:`reset` writes every tensor of ``module``, so that a fresh
        copy may start from uninitialised memory. Only a kind that knows its
        ``reset`` says yes."""
        return False

    def reset(self, module: nn.Module) -> None:
        """Fresh initialisation of a resized copy (``reset_parameters`` by default)."""
        module.reset_parameters()

    def can_reset(self, module: nn.Module) -> bool:
        """Whether :meth:`reset` can initialise ``module`` (else a resized copy keeps
        the kept channels' values)."""
        own = "reset" in self.__dict__ or type(self).reset is not LayerKind.reset
        return own or hasattr(module, "reset_parameters")


class OpKind(Kind):
    """One kind of op: functions or torch ops (``torch.ops.ns.op``, a
    ``torch.library.custom_op``, or a dotted name), and tensor methods by name,
    that share a channel rule::

        register_kind(OpKind(torch.ops.mylib.warp, channels=passthrough_rule(0, pinned_args=(1, 2))))
    """

    functions: tuple = ()
    methods: tuple[str, ...] = ()

    def __init__(self, *functions: Any, methods: Iterable[str] = (), name: str | None = None,
                 channels: Rule | None = None):
        super().__init__(name, channels)
        if functions:
            self.functions = tuple(functions)
        if methods:
            self.methods = tuple(methods)
        if name is None and type(self) is OpKind:
            rule = self.channels
            self.name = getattr(rule, "__name__", None) or "op"
        if not (self.functions or self.methods):
            raise ValueError(f"{self.name}: an op kind needs at least one function or method")

    def targets(self) -> tuple:
        return self.functions + self.methods


# -- helpers for resizing -----------------------------------------------------


def select(t: torch.Tensor, dim: int, size: int, idx: torch.Tensor | None) -> torch.Tensor:
    """The first ``size`` entries of ``t`` along ``dim``, or the entries ``idx``."""
    if size == t.shape[dim] and idx is None:
        return t
    if idx is None or len(idx) != size:
        idx = torch.arange(size, device=t.device)
    return t.index_select(dim, idx.to(t.device))


def own_copy(t: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """``t`` as a tensor of its own: a selection already is one (``index_select``
    copies), an unchanged ``source`` is cloned."""
    return t.clone() if t is source else t


def shallow_clone(module: nn.Module) -> nn.Module:
    """A new module object of the same class sharing nothing mutable with ``module``
    but its non-tensor attributes (a leaf layer: its tensors are replaced next)."""
    new = module.__class__.__new__(module.__class__)
    state = module.__dict__.copy()
    for key, value in state.items():
        if type(value) in _CONTAINERS:
            state[key] = type(value)() if not value else copy.copy(value)
    state["_modules"] = {
        name: None if child is None else copy_module(child) for name, child in module._modules.items()
    }
    new.__dict__.update(state)  # not `new.__dict__ = state`: that goes through Module.__setattr__
    return new


def set_widths(new: nn.Module, widths: Mapping[str, int]) -> None:
    for attr, value in widths.items():
        value = (value,) if attr == "normalized_shape" else value
        if attr in new.__dict__:
            new.__dict__[attr] = value  # a plain attribute: no need for Module.__setattr__
        else:
            setattr(new, attr, value)


def copy_tensors_left_shared(new: nn.Module, module: nn.Module) -> None:
    """Give ``new`` its own copy of the tensors it still shares with ``module`` (those
    no width applies to, e.g. a batch norm's ``num_batches_tracked``), so that resetting
    or training the copy leaves ``module`` alone."""
    for name, t in new._parameters.items():
        if t is not None and t is module._parameters.get(name):
            new._parameters[name] = nn.Parameter(t.detach().clone(), requires_grad=t.requires_grad)
    for name, t in new._buffers.items():
        if t is not None and t is module._buffers.get(name):
            new._buffers[name] = t.detach().clone()
