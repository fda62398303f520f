"""Per-channel layers: batch, instance, group and layer norms, and PReLU."""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from ...channels.context import RuleContext
from ...channels.rule_helpers import copy_info
from ..base import LayerKind


def per_channel(ctx: RuleContext, x, attr: str, dim: int = 1, owner: str | None = None) -> None:
    """A layer with one parameter per channel of ``x`` on ``dim``: ``attr`` follows
    those channels, which pass through."""
    ctx.record_module({attr: ctx.layout(x, dim)}, path=owner)
    ctx.set_output(copy_info(ctx.channels(x)))


def _tensors_fit(module: nn.Module, channels: int, names=("weight", "bias", "running_mean", "running_var")) -> bool:
    """Whether the per-channel tensors the layer holds have ``channels`` entries
    (what the real kernel checks; a rebuilt layer is checked against its tensors)."""
    for name in names:
        t = module._parameters.get(name, module._buffers.get(name))
        if t is not None and t.shape[0] != channels:
            return False
    return True


def norm_output_shape(module: nn.Module, x: torch.Tensor) -> tuple[int, ...] | None:
    channels = getattr(module, "num_features", None) or getattr(module, "num_channels", None)
    if x.dim() < 2 or channels is None or x.shape[1] != channels or not _tensors_fit(module, channels):
        return None
    groups = getattr(module, "num_groups", None)
    if groups is not None and channels % groups:
        return None
    check = getattr(module, "_check_input_dim", None)
    if check is not None:
        try:
            check(x)
        except ValueError:
            return None
    return tuple(x.shape)


def _init_affine(module: nn.Module) -> None:
    """``init.ones_(weight)``, ``init.zeros_(bias)``."""
    bias = module.bias
    with torch.no_grad():
        module.weight.fill_(1.0)
        if bias is not None:
            bias.zero_()


def _affine_as_flagged(module: nn.Module) -> bool:
    affine = getattr(module, "elementwise_affine", getattr(module, "affine", None))
    return affine is None or affine == (module._parameters.get("weight") is not None)


class BatchNorm(LayerKind):
    """``nn.BatchNorm1d/2d/3d`` (any ``_BatchNorm`` that keeps its forward) and
    ``nn.SyncBatchNorm``."""

    classes = (nn.modules.batchnorm._BatchNorm, nn.SyncBatchNorm)
    stock = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
    tensors = {n: {0: "num_features"} for n in ("weight", "bias", "running_mean", "running_var")}

    def channels(self, ctx: RuleContext) -> None:
        per_channel(ctx, ctx.arg(0, "input"), "num_features")

    def output_shape(self, module: nn.Module, x: torch.Tensor) -> tuple[int, ...] | None:
        return norm_output_shape(module, x)

    def resize(self, module: nn.Module, widths: Mapping[str, int], indices, fresh: bool) -> nn.Module:
        if fresh and type(module) in self.stock:
            new = _fresh_batch_norm(module, widths)
            if new is not None:
                return new
        return super().resize(module, widths, indices, fresh)

    def reset(self, module: nn.Module) -> None:
        if type(module) not in self.stock:
            module.reset_parameters()
            return
        if module.track_running_stats:
            module.running_mean.zero_()
            module.running_var.fill_(1)
            module.num_batches_tracked.zero_()
        if module.affine:
            _init_affine(module)


def _fresh_batch_norm(module: nn.Module, widths: Mapping[str, int]) -> nn.Module | None:
    """A copy of the stock batch/instance norm ``module`` at its new width with the
    tensors ``reset_parameters`` would leave, made with their values instead of
    allocated and then filled. None where the module's tensors do not match its
    flags (someone changed them after construction)."""
    from ..base import set_widths, shallow_clone

    params, buffers = module._parameters, module._buffers
    weight, bias, mean = params.get("weight"), params.get("bias"), buffers.get("running_mean")
    var, count = buffers.get("running_var"), buffers.get("num_batches_tracked")
    affine_as_flagged = (weight is not None) == (bias is not None) == module.affine
    stats_as_flagged = (mean is not None) == (var is not None) == (count is not None) == module.track_running_stats
    if not (affine_as_flagged and stats_as_flagged):
        return None
    new = shallow_clone(module)
    set_widths(new, widths)
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
    return new


class InstanceNorm(BatchNorm):
    """``nn.InstanceNorm1d/2d/3d``: per-channel tensors only when affine or tracking."""

    classes = (nn.modules.instancenorm._InstanceNorm,)
    stock = (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)

    def channels(self, ctx: RuleContext) -> None:
        m, x = ctx.module, ctx.arg(0, "input")
        if m.affine or m.track_running_stats:
            per_channel(ctx, x, "num_features")
        else:
            ctx.set_output(copy_info(ctx.channels(x)))

    output_shape = LayerKind.output_shape  # instance norms accept unbatched input: let them run


def group_norm_channels(ctx: RuleContext, x, num_groups: int, owner: str | None = None) -> None:
    layout = ctx.layout(x, 1)
    if not ctx.require_divisible(layout, num_groups):
        ctx.pin_layout(layout, f"GroupNorm {owner or ctx.path} normalises concatenated channels")
    ctx.record_module({"num_channels": layout}, path=owner)
    ctx.set_output(copy_info(ctx.channels(x)))


class _AffineStock:
    """A norm whose stock class's init is ``ones``/``zeros`` on its affine tensors (if any)."""

    stock: type

    def reset(self, module: nn.Module) -> None:
        if type(module) is self.stock:
            if module.weight is not None:
                _init_affine(module)
        else:
            module.reset_parameters()

    def fresh_init_writes_all(self, module: nn.Module) -> bool:
        return type(module) is self.stock and _affine_as_flagged(module)


class GroupNorm(_AffineStock, LayerKind):
    classes = (nn.GroupNorm,)
    stock = nn.GroupNorm
    tensors = {"weight": {0: "num_channels"}, "bias": {0: "num_channels"}}

    def channels(self, ctx: RuleContext) -> None:
        group_norm_channels(ctx, ctx.arg(0, "input"), ctx.module.num_groups)

    def output_shape(self, module: nn.Module, x: torch.Tensor) -> tuple[int, ...] | None:
        return norm_output_shape(module, x)



class LayerNorm(_AffineStock, LayerKind):
    """``nn.LayerNorm`` over the last dimension (over several: pinned)."""

    classes = (nn.LayerNorm,)
    stock = nn.LayerNorm
    tensors = {"weight": {0: "normalized_shape"}, "bias": {0: "normalized_shape"}}

    def channels(self, ctx: RuleContext) -> None:
        x = ctx.arg(0, "input")
        shape = tuple(ctx.module.normalized_shape)
        if len(shape) == 1:
            ctx.record_module({"normalized_shape": ctx.layout(x, -1)})
        else:
            for k in range(len(shape)):
                ctx.pin_layout(ctx.layout(x, -1 - k), f"LayerNorm {ctx.path} normalises several dimensions")
        ctx.set_output(copy_info(ctx.channels(x)))

    def output_shape(self, module: nn.Module, x: torch.Tensor) -> tuple[int, ...] | None:
        shape = tuple(module.normalized_shape)
        if tuple(x.shape[-len(shape):]) != shape:
            return None
        for t in (module.weight, module.bias):
            if t is not None and tuple(t.shape) != shape:
                return None
        return tuple(x.shape)



class PReLU(LayerKind):
    """``nn.PReLU``: one slope per channel, or one for all."""

    classes = (nn.PReLU,)
    tensors = {"weight": {0: "num_parameters"}}

    def channels(self, ctx: RuleContext) -> None:
        x = ctx.arg(0, "input")
        if ctx.module.num_parameters > 1:
            ctx.record_module({"num_parameters": ctx.layout(x, 1)})
        ctx.set_output(copy_info(ctx.channels(x)))

    def output_shape(self, module: nn.Module, x: torch.Tensor) -> tuple[int, ...] | None:
        n = module.weight.numel()
        if n != 1 and (x.dim() < 2 or x.shape[1] != n):
            return None
        return tuple(x.shape)


KINDS = (BatchNorm(), InstanceNorm(), GroupNorm(), LayerNorm(), PReLU())
