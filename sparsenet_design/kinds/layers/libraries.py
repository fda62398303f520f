"""Kinds for layers of popular libraries, named by dotted path so that the core
imports none of them.

Each of these classes overrides ``forward``, so without a kind it would be traced
through (which works: the functional calls inside are attributed back to it).
As kinds they are one call each: fewer nodes to trace and analyse, a shape by
formula, and width attributes kept in step. Every kind here computes what the
class's ``forward`` computes, channel for channel:

- timm's norm-act layers (``BatchNormAct2d``, ``GroupNormAct``, ``LayerNormAct2d``,
  …): a norm, then dropout and an activation as child modules;
- timm's norm layers (``LayerNorm2d`` over the channel dimension of an NCHW map,
  ``LayerNorm``, ``GroupNorm``, ``GroupNorm1`` and their float32 variants);
- transformers' ``Conv1D`` (GPT, GPT-2): a linear layer with its weight stored (in, out).
"""
from __future__ import annotations

import torch
from torch import nn

from ...channels.context import RuleContext
from ...channels.rule_helpers import copy_info
from ..base import LayerKind
from .norms import group_norm_channels, norm_output_shape, per_channel
from .weights import linear_channels

_TIMM_NORM_ACT = "timm.layers.norm_act"
_TIMM_NORM = "timm.layers.norm"


def _children_hold_no_channels(module: nn.Module) -> bool:
    """A norm-act layer's dropout and activation are per-element with no tensors of
    their own (a per-channel PReLU would need its own width: the channels are pinned)."""
    return all(p.numel() <= 1 for child in module.children() for p in child.parameters())


def _norm_act(ctx: RuleContext, attr: str, dim: int) -> None:
    x = ctx.arg(0, "x")
    if not _children_hold_no_channels(ctx.module):
        ctx.pin(x, f"{ctx.describe()} applies an activation with per-channel parameters")
        ctx.set_output(copy_info(ctx.channels(x)))
        return
    per_channel(ctx, x, attr, dim=dim)


class BatchNormAct(LayerKind):
    """Batch norm, then dropout and an activation."""

    classes = (f"{_TIMM_NORM_ACT}.BatchNormAct2d", f"{_TIMM_NORM_ACT}.SyncBatchNormAct")
    tensors = {n: {0: "num_features"} for n in ("weight", "bias", "running_mean", "running_var")}

    def channels(self, ctx: RuleContext) -> None:
        _norm_act(ctx, "num_features", 1)

    def output_shape(self, module: nn.Module, x: torch.Tensor) -> tuple[int, ...] | None:
        return norm_output_shape(module, x) if x.dim() == 4 else None


def _group_norm_like(ctx: RuleContext) -> None:
    x = ctx.arg(0, "x")
    if not _children_hold_no_channels(ctx.module):
        ctx.pin(x, f"{ctx.describe()} applies an activation with per-channel parameters")
        ctx.set_output(copy_info(ctx.channels(x)))
        return
    group_norm_channels(ctx, x, ctx.module.num_groups)


class GroupNormLike(LayerKind):
    """Group norm (optionally then dropout and an activation)."""

    classes = (
        f"{_TIMM_NORM_ACT}.GroupNormAct", f"{_TIMM_NORM_ACT}.GroupNorm1Act",
        f"{_TIMM_NORM}.GroupNorm", f"{_TIMM_NORM}.GroupNorm1",
    )
    tensors = {"weight": {0: "num_channels"}, "bias": {0: "num_channels"}}
    channels = staticmethod(_group_norm_like)

    def output_shape(self, module: nn.Module, x: torch.Tensor) -> tuple[int, ...] | None:
        return norm_output_shape(module, x)


def _layer_norm_fits(module: nn.Module, x: torch.Tensor, dim: int) -> bool:
    shape = tuple(module.normalized_shape)
    if len(shape) != 1 or x.dim() < 2 or x.shape[dim] != shape[0]:
        return False
    return all(t is None or tuple(t.shape) == shape for t in (module.weight, module.bias))


class LayerNormLastDim(LayerKind):
    """Layer norm over the last dimension (optionally then dropout and an activation)."""

    classes = (
        f"{_TIMM_NORM_ACT}.LayerNormAct", f"{_TIMM_NORM_ACT}.LayerNormActFp32",
        f"{_TIMM_NORM}.LayerNorm", f"{_TIMM_NORM}.LayerNormFp32",
    )
    tensors = {"weight": {0: "normalized_shape"}, "bias": {0: "normalized_shape"}}

    def channels(self, ctx: RuleContext) -> None:
        if len(ctx.module.normalized_shape) != 1:
            ctx.pin(ctx.arg(0, "x"), f"{ctx.describe()} normalises several dimensions")
            ctx.set_output(copy_info(ctx.channels(ctx.arg(0, "x"))))
            return
        _norm_act(ctx, "normalized_shape", -1)

    def output_shape(self, module: nn.Module, x: torch.Tensor) -> tuple[int, ...] | None:
        return tuple(x.shape) if _layer_norm_fits(module, x, -1) else None


class LayerNormChannels(LayerNormLastDim):
    """Layer norm over the channels of an NCHW map (permuted to the last dimension
    and back), optionally then dropout and an activation."""

    classes = (
        f"{_TIMM_NORM_ACT}.LayerNormAct2d", f"{_TIMM_NORM_ACT}.LayerNormAct2dFp32",
        f"{_TIMM_NORM}.LayerNorm2d", f"{_TIMM_NORM}.LayerNorm2dFp32",
    )

    def channels(self, ctx: RuleContext) -> None:
        _norm_act(ctx, "normalized_shape", 1)

    def output_shape(self, module: nn.Module, x: torch.Tensor) -> tuple[int, ...] | None:
        return tuple(x.shape) if x.dim() == 4 and _layer_norm_fits(module, x, 1) else None


class TransposedLinear(LayerKind):
    """A linear layer whose weight is stored (in, out): transformers' ``Conv1D``."""

    classes = ("transformers.pytorch_utils.Conv1D",)
    prunable = True
    roles = ("nx", "nf")
    tensors = {"weight": {0: "nx", 1: "nf"}, "bias": {0: "nf"}}

    def channels(self, ctx: RuleContext) -> None:
        ctx.set_output(linear_channels(ctx, ctx.module, ctx.arg(0, "x"), attrs=self.roles))

    def output_shape(self, module: nn.Module, x: torch.Tensor) -> tuple[int, ...] | None:
        w = module.weight
        if x.dim() < 1 or w.dim() != 2 or x.shape[-1] != w.shape[0] or module.bias.shape[0] != w.shape[1]:
            return None
        return (*x.shape[:-1], w.shape[1])

    def reset(self, module: nn.Module) -> None:
        """As the class initialises itself (it has no ``reset_parameters``)."""
        with torch.no_grad():
            module.weight.normal_(0.0, 0.02)
            module.bias.zero_()


KINDS = (BatchNormAct(), GroupNormLike(), LayerNormLastDim(), LayerNormChannels(), TransposedLinear())
