"""Build the compact model a design spec describes (``apply_spec``), resizing
each changed layer by its kind."""
from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from ..design.analysis import module_attr_value
from ..design.spec import DesignSpec, tensor_shape
from ..errors import SpecMismatchError
from ..kinds.base import own_copy
from ..kinds.registry import layer_kind
from .module_copy import copy_module
from .resize import resize_module, resize_tensor


def check_fits(model: nn.Module, spec: DesignSpec) -> None:
    names = dict(model.named_modules())
    for path, entry in spec.modules.items():
        module = names.get(path)
        if module is None:
            raise SpecMismatchError(
                f"The design spec does not fit this model: it names module '{path}', which "
                f"{type(model).__name__} does not have (the spec was made from a "
                f"{spec.source or 'different'} model). Apply the spec to the model its "
                "build_model() makes, or reconstruct a new spec for this model."
            )
        if type(module).__name__ != entry["class"]:
            raise SpecMismatchError(
                f"The design spec does not fit this model: module '{path}' is a "
                f"{type(module).__name__} here but a {entry['class']} in the spec. "
                "Apply the spec to the model it was made from, or reconstruct a new spec."
            )
        for attr, value in entry["original"].items():
            have = module_attr_value(module, attr) if hasattr(module, attr) else None
            if have != value:
                raise SpecMismatchError(
                    f"The design spec does not fit this model: module '{path}' has {attr}={have} "
                    f"but the spec was made from one with {attr}={value}. Apply the spec to the "
                    "uncompressed model its build_model() makes, or reconstruct a new spec."
                )
    for key, entry in spec.attributes.items():
        path, _, attr = key.rpartition(".")
        owner = names.get(path)
        have = getattr(owner, attr, None)
        if (list(have) if isinstance(have, (tuple, list)) else have) != entry["original"]:
            raise SpecMismatchError(
                f"The design spec does not fit this model: attribute '{key}' is "
                f"{getattr(owner, attr, 'missing')} here, the spec expects {entry['original']}."
            )
    params = dict(model.named_parameters())
    params.update(dict(model.named_buffers()))
    for path, entry in spec.params.items():
        t = params.get(path)
        if t is None or tensor_shape(t) != entry["original"]:
            raise SpecMismatchError(
                f"The design spec does not fit this model: tensor '{path}' is "
                f"{'missing' if t is None else tensor_shape(t)} here, the spec expects {entry['original']}."
            )


def build(model: nn.Module, spec: DesignSpec, indices=None, fresh: bool = True,
           modules: Mapping[str, nn.Module] | None = None) -> nn.Module:
    """The compact model ``spec`` describes. ``modules``: ``dict(model.named_modules())``
    where the caller has it already."""
    modules = dict(model.named_modules()) if modules is None else modules
    # the resized layers and tensors go straight into the copy (deepcopy's memo), so
    # the layers being replaced are never copied
    memo: dict[int, object] = {}
    resized: dict[str, nn.Module] = {}
    for path, entry in spec.modules.items():
        if entry["widths"] != entry["original"]:
            module = _submodule(model, modules, path)
            memo[id(module)] = resized[path] = resize_module(module, entry["widths"], (indices or {}).get(path), fresh)
    for path, entry in spec.params.items():
        parent_path, _, name = path.rpartition(".")
        parent = _submodule(model, modules, parent_path)
        old = getattr(parent, name)
        source = old.detach()
        new = own_copy(resize_tensor(source, entry["widths"]), source)
        new = nn.Parameter(new, requires_grad=old.requires_grad) if isinstance(old, nn.Parameter) else new
        owner = resized.get(parent_path)
        if owner is None:
            memo[id(old)] = new
        elif not _resized_by_kind(parent, name):
            # a tensor its layer kind does not know (a weight-standardised conv's gain):
            # the resized copy holds a clone of the old one, replace it
            (owner._parameters if name in owner._parameters else owner._buffers)[name] = new
    compact = copy_module(model, memo)
    _tie_again(model, compact)
    for key, entry in spec.attributes.items():
        path, _, attr = key.rpartition(".")
        owner = compact.get_submodule(path)
        new = entry["widths"]
        setattr(owner, attr, tuple(new) if isinstance(getattr(owner, attr), tuple) else new)
    return compact


def _resized_by_kind(module: nn.Module, name: str) -> bool:
    kind = layer_kind(module, call=False)
    return kind is not None and name in kind.tensor_dims()


def _tie_again(model: nn.Module, compact: nn.Module) -> None:
    """Parameters that several modules of ``model`` share (tied input and output
    embeddings) are resized with each module; share them again in ``compact``."""
    names: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(p), []).append(name)
    for tied in names.values():
        if len(tied) < 2:
            continue
        owners = [compact.get_submodule(n.rpartition(".")[0]) for n in tied]
        leaves = [n.rpartition(".")[2] for n in tied]
        first = owners[0]._parameters[leaves[0]]
        for owner, leaf in zip(owners[1:], leaves[1:]):
            if owner._parameters[leaf] is not first and owner._parameters[leaf].shape == first.shape:
                owner._parameters[leaf] = first


def _submodule(model: nn.Module, modules: Mapping[str, nn.Module], path: str) -> nn.Module:
    module = modules.get(path)
    return model.get_submodule(path) if module is None else module


def apply_spec(model: nn.Module, spec: DesignSpec | str) -> nn.Module:
    """The compact model a spec describes, built from a fresh ``model`` (which is
    left untouched). Raises :class:`SpecMismatchError` naming the first module
    that does not fit."""
    if not isinstance(spec, DesignSpec):
        spec = DesignSpec.load(spec)
    check_fits(model, spec)
    return build(model, spec, fresh=True)
