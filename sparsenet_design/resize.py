"""Make a copy of a layer at new widths.

Each layer class declares which dimension of which parameter/buffer follows
which constructor width (a table that plugins can extend with
:func:`register_param_dims`); classes whose internals are more involved get a
whole resizer function (:func:`register_resizer`).
"""
from __future__ import annotations

import copy
import math
from collections import OrderedDict
from collections.abc import Callable, Mapping

import torch
from torch import nn

from .module_copy import copy_module

_CONTAINERS = frozenset((dict, OrderedDict, set, list))

# class -> {tensor name: {dim: (width attribute, divided by groups?)}}
_PARAM_DIMS: dict[type, dict[str, dict[int, tuple[str, bool]]]] = {}
_RESIZERS: dict[type, Callable[..., nn.Module]] = {}


def register_param_dims(cls: type[nn.Module], dims: dict[str, dict[int, tuple[str, bool] | str]]) -> None:
    """Declare how ``cls``'s tensors follow its width attributes, e.g.
    ``{"weight": {0: "out_features", 1: "in_features"}, "bias": {0: "out_features"}}``."""
    _PARAM_DIMS[cls] = {
        name: {d: (v, False) if isinstance(v, str) else v for d, v in spec.items()} for name, spec in dims.items()
    }


def register_resizer(cls: type[nn.Module], fn: Callable[..., nn.Module]) -> None:
    """``fn(module, widths: dict[str, int], indices: dict[str, LongTensor] | None, fresh: bool)``."""
    _RESIZERS[cls] = fn


def _lookup(table: dict, module: nn.Module):
    for cls in type(module).__mro__:
        if cls in table:
            return table[cls]
    return None


for _cls in (nn.Conv1d, nn.Conv2d, nn.Conv3d):
    register_param_dims(_cls, {"weight": {0: "out_channels", 1: ("in_channels", True)}, "bias": {0: "out_channels"}})
for _cls in (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d):
    register_param_dims(_cls, {"weight": {0: "in_channels", 1: ("out_channels", True)}, "bias": {0: "out_channels"}})
register_param_dims(nn.Linear, {"weight": {0: "out_features", 1: "in_features"}, "bias": {0: "out_features"}})
register_param_dims(
    nn.Bilinear, {"weight": {0: "out_features", 1: "in1_features", 2: "in2_features"}, "bias": {0: "out_features"}}
)
register_param_dims(
    nn.modules.batchnorm._NormBase,
    {n: {0: "num_features"} for n in ("weight", "bias", "running_mean", "running_var")},
)
register_param_dims(nn.GroupNorm, {"weight": {0: "num_channels"}, "bias": {0: "num_channels"}})
register_param_dims(nn.LayerNorm, {"weight": {0: "normalized_shape"}, "bias": {0: "normalized_shape"}})
register_param_dims(nn.PReLU, {"weight": {0: "num_parameters"}})
register_param_dims(nn.Embedding, {"weight": {1: "embedding_dim"}})


def _mha_resizer(module: nn.MultiheadAttention, widths, indices, fresh) -> nn.Module:
    e = widths["embed_dim"]
    new = nn.MultiheadAttention(
        e, module.num_heads, dropout=module.dropout, bias=module.in_proj_bias is not None,
        add_bias_kv=module.bias_k is not None, add_zero_attn=module.add_zero_attn,
        batch_first=module.batch_first,
        device=module.out_proj.weight.device, dtype=module.out_proj.weight.dtype,
    )
    if not fresh and indices and indices.get("embed_dim") is not None:
        idx = indices["embed_dim"]
        with torch.no_grad():
            w = module.in_proj_weight.view(3, module.embed_dim, module.embed_dim)[:, idx][:, :, idx]
            new.in_proj_weight.copy_(w.reshape(3 * e, e))
            if module.in_proj_bias is not None:
                new.in_proj_bias.copy_(module.in_proj_bias.view(3, -1)[:, idx].reshape(-1))
            new.out_proj.weight.copy_(module.out_proj.weight[idx][:, idx])
            if module.out_proj.bias is not None:
                new.out_proj.bias.copy_(module.out_proj.bias[idx])
    new.train(module.training)
    return new


register_resizer(nn.MultiheadAttention, _mha_resizer)


def _select(t: torch.Tensor, dim: int, size: int, idx: torch.Tensor | None) -> torch.Tensor:
    if size == t.shape[dim] and idx is None:
        return t
    if idx is None or len(idx) != size:
        idx = torch.arange(size, device=t.device)
    return t.index_select(dim, idx.to(t.device))


def _shallow_clone(module: nn.Module) -> nn.Module:
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


def _copy_tensors_left_shared(new: nn.Module, module: nn.Module) -> None:
    """Give ``new`` its own copy of the tensors it still shares with ``module`` (those
    no width applies to, e.g. a batch norm's ``num_batches_tracked``), so that resetting
    or training the copy leaves ``module`` alone."""
    for name, t in new._parameters.items():
        if t is not None and t is module._parameters.get(name):
            new._parameters[name] = nn.Parameter(t.detach().clone(), requires_grad=t.requires_grad)
    for name, t in new._buffers.items():
        if t is not None and t is module._buffers.get(name):
            new._buffers[name] = t.detach().clone()


# -- fresh initialisation ----------------------------------------------------
# The stock layers' ``reset_parameters`` spend most of their time in the Python
# around the few tensor ops; these do the same ops (the same random draws in the
# same order, so the same values) directly. Subclasses may override
# ``reset_parameters``, so only the exact classes take this path.

_KAIMING_BOUND_GAIN = math.sqrt(3.0)
_KAIMING_GAIN = nn.init.calculate_gain("leaky_relu", math.sqrt(5))


def _init_conv_or_linear(module: nn.Module) -> None:
    """``_ConvNd`` / ``Linear.reset_parameters``: ``kaiming_uniform_(weight, a=√5)``,
    then the bias uniform in ±1/√fan_in."""
    weight, bias = module.weight, module.bias
    if not weight.numel() or not weight.is_contiguous():  # torch warns / uses a buffer here
        module.reset_parameters()
        return
    fan_in = weight.shape[1] * math.prod(weight.shape[2:])
    bound = _KAIMING_BOUND_GAIN * (_KAIMING_GAIN / math.sqrt(fan_in))  # kaiming_uniform_'s arithmetic
    with torch.no_grad():
        weight.uniform_(-bound, bound)
        if bias is not None:
            bound = 1 / math.sqrt(fan_in)
            bias.uniform_(-bound, bound)


def _init_affine(module: nn.Module) -> None:
    """``init.ones_(weight)``, ``init.zeros_(bias)``."""
    bias = module.bias
    with torch.no_grad():
        module.weight.fill_(1.0)
        if bias is not None:
            bias.zero_()


def _init_batch_norm(module: nn.modules.batchnorm._NormBase) -> None:
    """``_NormBase.reset_parameters`` (batch and instance norms)."""
    if module.track_running_stats:
        module.running_mean.zero_()
        module.running_var.fill_(1)
        module.num_batches_tracked.zero_()
    if module.affine:
        _init_affine(module)


def _init_layer_norm(module: nn.LayerNorm) -> None:
    if module.elementwise_affine:
        _init_affine(module)


def _init_group_norm(module: nn.GroupNorm) -> None:
    if module.affine:
        _init_affine(module)


_FAST_INIT: dict[type, Callable[[nn.Module], None]] = {
    **dict.fromkeys(
        (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Linear),
        _init_conv_or_linear,
    ),
    **dict.fromkeys(
        (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm,
         nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d),
        _init_batch_norm,
    ),
    nn.LayerNorm: _init_layer_norm,
    nn.GroupNorm: _init_group_norm,
}


_BATCH_NORMS = frozenset((
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm,
    nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d,
))


def _fresh_batch_norm(new: nn.Module, module: nn.Module) -> bool:
    """Give ``new`` (a copy of the stock batch/instance norm ``module``, already at
    its new width) the tensors ``reset_parameters`` would leave, made with their
    values instead of allocated and then filled. False, and nothing done, where the
    module's tensors do not match its flags (someone changed them after construction)."""
    params, buffers = module._parameters, module._buffers
    weight, bias, mean = params.get("weight"), params.get("bias"), buffers.get("running_mean")
    var, count = buffers.get("running_var"), buffers.get("num_batches_tracked")
    affine_as_flagged = (weight is not None) == (bias is not None) == module.affine
    stats_as_flagged = (mean is not None) == (var is not None) == (count is not None) == module.track_running_stats
    if not (affine_as_flagged and stats_as_flagged):
        return False
    n = new.num_features
    if weight is not None:
        new._parameters["weight"] = nn.Parameter(
            torch.ones(n, dtype=weight.dtype, device=weight.device), requires_grad=weight.requires_grad)
        new._parameters["bias"] = nn.Parameter(
            torch.zeros(n, dtype=bias.dtype, device=bias.device), requires_grad=bias.requires_grad)
    if mean is not None:
        new._buffers["running_mean"] = torch.zeros(n, dtype=mean.dtype, device=mean.device)
        new._buffers["running_var"] = torch.ones(n, dtype=var.dtype, device=var.device)
        new._buffers["num_batches_tracked"] = torch.zeros((), dtype=count.dtype, device=count.device)
    return True


def _fresh_init_writes_all(module: nn.Module) -> bool:
    """Whether the fresh init of ``module`` writes every tensor it has, so that they
    can start out uninitialised. Not for other classes (a ``reset_parameters`` may
    leave a buffer alone), nor where a flag was changed after construction."""
    kind = type(module)
    if kind not in _FAST_INIT or kind in _BATCH_NORMS:  # batch norms that get here have such flags
        return False
    affine = getattr(module, "elementwise_affine", getattr(module, "affine", None))
    return affine is None or affine == (module._parameters.get("weight") is not None)


def _fresh_init(module: nn.Module) -> None:
    """``module.reset_parameters()``, with the same result but faster for stock layers."""
    init = _FAST_INIT.get(type(module))
    if init is None:
        module.reset_parameters()
    else:
        init(module)


def _own_copy(t: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """``t`` as a tensor of its own: a selection already is one (``index_select``
    copies), an unchanged ``source`` is cloned."""
    return t.clone() if t is source else t


def resize_tensor(t: torch.Tensor, new_shape, indices: Mapping[int, torch.Tensor | None] | None = None) -> torch.Tensor:
    """Keep the first entries (or ``indices[dim]``) along every dimension that shrinks."""
    for d, size in enumerate(new_shape):
        if size != t.shape[d] or (indices and indices.get(d) is not None):
            t = _select(t, d, size, (indices or {}).get(d))
    return t


def _set_widths(new: nn.Module, widths: Mapping[str, int]) -> None:
    for attr, value in widths.items():
        value = (value,) if attr == "normalized_shape" else value
        if attr in new.__dict__:
            new.__dict__[attr] = value  # a plain attribute: no need for Module.__setattr__
        else:
            setattr(new, attr, value)


def resize_module(
    module: nn.Module,
    widths: Mapping[str, int],
    indices: Mapping[str, torch.Tensor | None] | None = None,
    fresh: bool = True,
) -> nn.Module:
    """A copy of ``module`` whose width attributes are ``widths``.

    ``fresh=True`` re-initialises it (``reset_parameters``), as the paper trains
    the compact model from scratch; otherwise the kept channels (``indices[attr]``,
    or the first ones) carry their weights over.
    """
    resizer = _lookup(_RESIZERS, module)
    if resizer is not None:
        return resizer(module, dict(widths), indices, fresh)
    dims = _lookup(_PARAM_DIMS, module)
    if dims is None:
        raise TypeError(
            f"don't know how to resize {type(module).__name__}; register its tensors with "
            "sparsenet_design.resize.register_param_dims or a resizer with register_resizer"
        )
    new = _shallow_clone(module)
    _set_widths(new, widths)
    if fresh and type(module) in _BATCH_NORMS and _fresh_batch_norm(new, module):
        return new
    fresh = fresh and hasattr(new, "reset_parameters")
    start_empty = fresh and _fresh_init_writes_all(module)
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
                    data = _select(data, dim, shape[dim], idx)
            data = _own_copy(data, source)
        # the name is already registered (the state was copied): replace the tensor in place
        if isinstance(t, nn.Parameter):
            new._parameters[name] = nn.Parameter(data, requires_grad=t.requires_grad)
        else:
            new._buffers[name] = data
    _copy_tensors_left_shared(new, module)
    if fresh:
        _fresh_init(new)
    return new
