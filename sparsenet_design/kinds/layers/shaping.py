"""Layers without per-channel tensors: activations and dropout (channels pass
through), pooling, resizing and padding (shapes change, channels do not mix),
flattening and pixel shuffles (channels fold into other dimensions), and
multi-head attention."""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from ..ops.reshape import flatten_rule, pixel_shuffle_rule
from ...channels.context import RuleContext
from ...channels.rule_helpers import copy_info, elementwise, structural
from ..base import LayerKind


def _same_shape(module: nn.Module, x: torch.Tensor) -> tuple[int, ...]:
    return tuple(x.shape)


class Activation(LayerKind):
    """Element-wise layers whose output has their input's shape."""

    classes = (
        nn.Identity, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
        nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Sigmoid, nn.Tanh, nn.Softplus, nn.Softsign,
        nn.Tanhshrink, nn.LogSigmoid, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
    )
    channels = staticmethod(elementwise)
    output_shape = staticmethod(_same_shape)


class ElementwiseChecked(LayerKind):
    """Element-wise layers that check their input's rank or size: they run in the
    shape pass, so that a wrong input raises their own error."""

    classes = (nn.Threshold, nn.Softmax, nn.LogSoftmax, nn.Softmax2d, nn.LocalResponseNorm)
    channels = staticmethod(elementwise)


class Resampling(LayerKind):
    """Pooling, upsampling and padding layers."""

    classes = (
        nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
        nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
        nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, nn.LPPool2d,
        nn.Upsample, nn.UpsamplingBilinear2d, nn.UpsamplingNearest2d,
        nn.ZeroPad2d, nn.ConstantPad1d, nn.ConstantPad2d, nn.ConstantPad3d,
        nn.ReflectionPad1d, nn.ReflectionPad2d, nn.ReflectionPad3d,
        nn.ReplicationPad1d, nn.ReplicationPad2d, nn.ReplicationPad3d, nn.CircularPad2d,
    )
    channels = staticmethod(structural)


class Flatten(LayerKind):
    classes = (nn.Flatten, nn.Unflatten)
    channels = staticmethod(flatten_rule)


class PixelShuffle(LayerKind):
    classes = (nn.PixelShuffle, nn.PixelUnshuffle)
    channels = staticmethod(pixel_shuffle_rule)


class MultiheadAttention(LayerKind):
    """``nn.MultiheadAttention`` with one embedding width for query, key and value
    (kept divisible by the head count)."""

    classes = (nn.MultiheadAttention,)

    def channels(self, ctx: RuleContext) -> None:
        m = ctx.module
        q, k, v = ctx.arg(0, "query"), ctx.arg(1, "key"), ctx.arg(2, "value")
        lq = ctx.layout(q, -1)
        if not m._qkv_same_embed_dim:
            for a in (q, k, v):
                ctx.pin(a, f"{ctx.path} has kdim/vdim different from embed_dim")
        ctx.merge(lq, ctx.layout(k, -1))
        ctx.merge(lq, ctx.layout(v, -1))
        if not ctx.require_divisible(lq, m.num_heads):
            ctx.pin_layout(lq, f"attention {ctx.path} reads concatenated channels")
        ctx.record_module({"embed_dim": lq}, [("in", lq), ("out", lq)])
        ctx.set_output((copy_info(ctx.channels(q)), None))

    def resize(self, module: nn.MultiheadAttention, widths: Mapping[str, int], indices, fresh: bool) -> nn.Module:
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


KINDS = (Activation(), ElementwiseChecked(), Resampling(), Flatten(), PixelShuffle(), MultiheadAttention())
