"""The AdaCoF warp as one torch custom op: ``torch.ops.sdesign_adacof.adacof_warp``.

``adacof_warp(input, weight, alpha, beta, dilation)`` computes, for every output
pixel (i, j),

    out(i, j) = Σ_k Σ_l W_ij^(k,l) · I(i + d·k + α_ij^(k,l), j + d·l + β_ij^(k,l))

with bilinear sampling from the replication-padded input (see
:mod:`sdesign_adacof.ops.geometry` for the two accepted input sizes). Its
gradient flows to all four tensors, the input included.

Two options reproduce the published CUDA kernels (AdaCoF-pytorch, CDFI), on
every backend:

- ``truncate=True``: the integer part of each offset is taken by a C cast,
  rounding toward zero, instead of ``floor``. For a negative fractional offset
  the bilinear fractions become negative and the value is extrapolated from the
  pixel pair on the other side of the sample. Published weights were trained
  with this sampling.
- ``published_grad=True``: the backward of the published kernels: the weight
  and offset gradients sum over input channels 0-2 only, and the input gets a
  zero gradient (so in CDFI the feature-pyramid convs never learn through the
  warp). Only for reproducing a published training run exactly.

Being a custom op (with a fake implementation) it stays one node under
``torch.fx``, ``torch.export`` and ``torch.compile``, and the core's channel
graph treats it with the rule the plugin registers. Backends:

- ``"cupy"``: the CUDA kernels, for float32/float64 CUDA tensors when CuPy is installed;
- ``"torch"``: the pure-PyTorch path (any device; ``grid_sample`` based);
- ``"reference"``: the exact gather/scatter PyTorch path (slower; the CUDA kernels' arithmetic);
- ``"auto"`` (default): CuPy where it applies, PyTorch otherwise.

Choose with :func:`use_backend` (a context manager) or the environment variable
``SDESIGN_ADACOF_BACKEND``. Under CUDA autocast the op runs in float32.
"""
from __future__ import annotations

import contextlib
import os

import torch

from sparsenet_design.plugin_api import SdesignError

from . import cupy_kernels
from .geometry import math_dtype, output_dtype, warp_geometry
from .warp_torch import (warp_backward_reference, warp_backward_torch, warp_forward_reference,
                         warp_forward_torch)

BACKENDS = ("auto", "torch", "reference", "cupy")
_backend = os.environ.get("SDESIGN_ADACOF_BACKEND", "auto")


@contextlib.contextmanager
def use_backend(name: str):
    """Run the warp with backend ``name`` ("auto", "torch" or "cupy") inside the block."""
    global _backend
    if name not in BACKENDS:
        raise SdesignError(f"Unknown AdaCoF warp backend {name!r}; choose one of {', '.join(BACKENDS)}.")
    previous, _backend = _backend, name
    try:
        yield
    finally:
        _backend = previous


def _use_cupy(t: torch.Tensor, dtype: torch.dtype) -> bool:
    if _backend in ("torch", "reference"):
        return False
    ok = t.is_cuda and dtype in (torch.float32, torch.float64) and cupy_kernels.cupy_available()
    if _backend == "cupy" and not ok:
        raise SdesignError(
            "The AdaCoF warp was asked to use the CuPy kernels, but they need float32/float64 CUDA "
            f"tensors and an installed CuPy (got a {t.device} tensor, CuPy available: "
            f"{cupy_kernels.cupy_available()}). Install sdesign-adacof[cuda] or use backend 'torch'."
        )
    return ok


@torch.library.custom_op("sdesign_adacof::adacof_warp", mutates_args=())
def _warp_op(input: torch.Tensor, weight: torch.Tensor, alpha: torch.Tensor,
             beta: torch.Tensor, dilation: int, truncate: bool = False,
             published_grad: bool = False) -> torch.Tensor:
    geo = warp_geometry(input, weight, alpha, beta, dilation)
    out_dtype = output_dtype(input, weight, alpha, beta)
    dtype = math_dtype(out_dtype)
    if _use_cupy(input, dtype):
        cast = lambda t: t.to(dtype).contiguous()  # noqa: E731
        out = cupy_kernels.forward_cuda(geo, cast(input), cast(weight), cast(alpha), cast(beta), truncate)
        return out.to(out_dtype)
    forward = warp_forward_reference if _backend == "reference" else warp_forward_torch
    return forward(input, weight, alpha, beta, dilation, truncate)


@_warp_op.register_fake
def _warp_fake(input, weight, alpha, beta, dilation, truncate=False, published_grad=False):
    torch._check(input.dim() == 4 and weight.dim() == 4,
                 lambda: "adacof_warp expects 4-D tensors (B, C, H, W)")
    torch._check(weight.shape == alpha.shape and weight.shape == beta.shape,
                 lambda: "adacof_warp: weight, alpha and beta must have one shape")
    dtype = output_dtype(input, weight, alpha, beta)
    return input.new_empty((input.shape[0], input.shape[1], weight.shape[2], weight.shape[3]), dtype=dtype)


@torch.library.custom_op("sdesign_adacof::adacof_warp_backward", mutates_args=())
def _warp_backward_op(grad_output: torch.Tensor, input: torch.Tensor, weight: torch.Tensor,
                      alpha: torch.Tensor, beta: torch.Tensor, dilation: int,
                      input_grad: bool, truncate: bool = False
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    geo = warp_geometry(input, weight, alpha, beta, dilation)
    dtype = math_dtype(output_dtype(input, weight, alpha, beta))
    if _use_cupy(input, dtype):
        cast = lambda t: t.to(dtype).contiguous()  # noqa: E731
        grads = cupy_kernels.backward_cuda(geo, cast(grad_output), cast(input), cast(weight),
                                           cast(alpha), cast(beta), input_grad, truncate)
        return tuple(g.to(t.dtype) for g, t in zip(grads, (input, weight, alpha, beta)))
    backward = warp_backward_reference if _backend == "reference" else warp_backward_torch
    return backward(grad_output, input, weight, alpha, beta, dilation, input_grad, truncate)


@_warp_backward_op.register_fake
def _warp_backward_fake(grad_output, input, weight, alpha, beta, dilation, input_grad, truncate=False):
    return (torch.empty_like(input), torch.empty_like(weight),
            torch.empty_like(alpha), torch.empty_like(beta))


#: Input channels the published backward sums the weight and offset gradients over.
PUBLISHED_GRAD_CHANNELS = 3


def _setup_context(ctx, inputs, output):
    input, weight, alpha, beta, dilation = inputs[:5]
    ctx.save_for_backward(input, weight, alpha, beta)
    ctx.dilation = dilation
    ctx.truncate = bool(inputs[5]) if len(inputs) > 5 else False
    ctx.published_grad = bool(inputs[6]) if len(inputs) > 6 else False


def _backward(ctx, grad_output):
    input, weight, alpha, beta = ctx.saved_tensors
    need = ctx.needs_input_grad
    if ctx.published_grad:
        # the published kernels: channels 0-2 only for W, α, β; nothing for the input
        c = min(PUBLISHED_GRAD_CHANNELS, input.shape[1])
        _, grad_weight, grad_alpha, grad_beta = _warp_backward_op(
            grad_output[:, :c].contiguous(), input[:, :c].contiguous(), weight, alpha, beta,
            ctx.dilation, False, ctx.truncate)
        grad_input = torch.zeros_like(input) if need[0] else None
    else:
        grad_input, grad_weight, grad_alpha, grad_beta = _warp_backward_op(
            grad_output, input, weight, alpha, beta, ctx.dilation, bool(need[0]), ctx.truncate)
    return (grad_input if need[0] else None, grad_weight if need[1] else None,
            grad_alpha if need[2] else None, grad_beta if need[3] else None, None, None, None)


_warp_op.register_autograd(_backward, setup_context=_setup_context)
torch.library.register_autocast("sdesign_adacof::adacof_warp", "cuda", torch.float32)
torch.library.register_autocast("sdesign_adacof::adacof_warp", "cpu", torch.float32)

#: The custom op object (also reachable as ``torch.ops.sdesign_adacof.adacof_warp``).
adacof_warp_op = _warp_op


def adacof_warp(input: torch.Tensor, weight: torch.Tensor, alpha: torch.Tensor,
                beta: torch.Tensor, dilation: int = 1, truncate: bool = False,
                published_grad: bool = False) -> torch.Tensor:
    """Warp ``input`` (B, C, H, W) with per-pixel kernels ``weight`` and offsets
    ``alpha`` (rows), ``beta`` (columns), each (B, F², H, W); returns (B, C, H, W).

    ``input`` may also be pre-padded by ``(F-1)·dilation`` in total per
    dimension (the published kernels' convention). Differentiable w.r.t. all four
    tensors. ``truncate`` and ``published_grad`` reproduce the published
    kernels' sampling and backward (see the module docstring). Kept free of
    shape checks so ``torch.fx`` traces it as one op node.
    """
    if truncate or published_grad:
        return torch.ops.sdesign_adacof.adacof_warp(input, weight, alpha, beta, dilation,
                                                    bool(truncate), bool(published_grad))
    return torch.ops.sdesign_adacof.adacof_warp(input, weight, alpha, beta, dilation)
