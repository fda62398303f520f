"""The two OBProx-SG updates on lists of same-device, same-dtype tensors.

Both take the parameters ``xs`` (updated in place), the search directions
``ds`` (the gradients, or the momentum directions), the learning rate ``lr``
and the threshold ``thr = lr·λ``:

- P-step: ``x ← S(x − lr·d, thr)`` with the soft threshold
  ``S(y, t) = sign(y)·max(|y| − t, 0) = y − clamp(y, −t, t)``;
- O-step: with ``ζ = sign(x)``, ``x̂ = x − lr·d − thr·ζ`` (``= x − lr·(d + λζ)``),
  and ``x ← x̂`` where ``x̂·ζ > 0``, else 0. Written as ``x ← ζ·relu(ζ·x̂)``:
  multiplying by ``ζ ∈ {−1, 0, 1}`` is exact, so the result is bit-for-bit
  "keep x̂ where it has x's sign", a coordinate can never change sign, and a
  zero (``ζ = 0``) stays zero.

Two implementations:

``foreach_*``
    ``torch._foreach_*`` ops (multi-tensor kernels on CUDA), any device and
    dtype, no compilation. The P-step is two passes over memory (a foreach
    ``add_`` and an in-place ``softshrink``), the O-step six.
``fused_*``
    The same formulas compiled once with ``torch.compile`` (Inductor: one
    vectorised C++/OpenMP loop per tensor on CPU, Triton on CUDA), so each
    step is a single read of ``x`` and ``d`` and a single write of ``x`` —
    the memory traffic of a plain SGD step. ``lr`` and ``thr`` are passed as
    0-dim tensors so a changing learning rate never triggers a recompile.
"""
from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Sequence

import torch

Tensors = Sequence[torch.Tensor]


# ---- foreach ------------------------------------------------------------------

def foreach_sgd_step(xs: Tensors, ds: Tensors, lr: float) -> None:
    """``x ← x − lr·d`` (groups with λ = 0 take plain gradient steps)."""
    torch._foreach_add_(xs, ds, alpha=-lr)


def foreach_p_step(xs: Tensors, ds: Tensors, lr: float, thr: float) -> None:
    torch._foreach_add_(xs, ds, alpha=-lr)  # y = x − lr·d
    if thr > 0:
        for x in xs:  # S(y, thr) in place: one elementwise kernel per tensor, no masks
            torch._C._nn.softshrink(x, thr, out=x)


def foreach_o_step(xs: Tensors, ds: Tensors, lr: float, thr: float) -> None:
    zeta = torch._foreach_sign(xs)
    torch._foreach_add_(xs, ds, alpha=-lr)    # x − lr·d
    torch._foreach_add_(xs, zeta, alpha=-thr)  # x̂ = x − lr·d − thr·ζ
    torch._foreach_mul_(xs, zeta)             # ζ·x̂
    torch._foreach_clamp_min_(xs, 0.0)        # relu(ζ·x̂): 0 where x̂·ζ ≤ 0
    torch._foreach_mul_(xs, zeta)             # ζ·relu(ζ·x̂)


# ---- fused (torch.compile) ------------------------------------------------------

def _p_step_lists(xs: list[torch.Tensor], ds: list[torch.Tensor], lr: torch.Tensor, thr: torch.Tensor) -> None:
    for x, d in zip(xs, ds):
        y = x - lr * d
        x.copy_(y - y.clamp(-thr, thr))


def _o_step_lists(xs: list[torch.Tensor], ds: list[torch.Tensor], lr: torch.Tensor, thr: torch.Tensor) -> None:
    for x, d in zip(xs, ds):
        zeta = x.sign()
        x_hat = x - lr * d - thr * zeta
        x.copy_(zeta * (zeta * x_hat).clamp_min(0))


_compiled: dict[str, Callable] = {}
_broken: dict[str, str] = {}  # device type -> why fusing failed there
_lock = threading.Lock()


def fused_supported(device: torch.device) -> bool:
    """Whether the fused path may be tried on ``device`` (it may still fail to
    compile, e.g. without a C++ compiler; then :func:`fused_step` says so once
    and the caller falls back to foreach)."""
    if device.type not in ("cpu", "cuda") or device.type in _broken:
        return False
    try:
        import torch._inductor  # noqa: F401
    except Exception:  # pragma: no cover - torch built without inductor
        return False
    return not torch.compiler.is_compiling()


def _get(kind: str) -> Callable:
    with _lock:
        fn = _compiled.get(kind)
        if fn is None:
            impl = _p_step_lists if kind == "p" else _o_step_lists
            fn = torch.compile(impl, fullgraph=True, dynamic=False)
            _compiled[kind] = fn
        return fn


def scalar(value: float, like: torch.Tensor) -> torch.Tensor:
    """A 0-dim tensor holding ``value`` on ``like``'s device, in float64 for
    float64 parameters and float32 otherwise (bf16/fp16 keep lr exact-ish)."""
    dtype = torch.float64 if like.dtype == torch.float64 else torch.float32
    return torch.tensor(value, dtype=dtype, device=like.device)


def fused_step(kind: str, xs: list[torch.Tensor], ds: list[torch.Tensor], lr: float, thr: float) -> bool:
    """Run the compiled ``kind`` (``"p"`` or ``"o"``) step; ``False`` (and the
    parameters untouched) when compiling is not possible here."""
    device = xs[0].device
    try:
        _get(kind)(xs, ds, scalar(lr, xs[0]), scalar(thr, xs[0]))
        return True
    except Exception as exc:  # compile-time failure: no compiler, no triton, ...
        reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        _broken[device.type] = reason
        warnings.warn(
            f"OBProx-SG: the fused (torch.compile) step is unavailable on {device.type} ({reason}); "
            "using the torch._foreach_ step instead (same results, more memory traffic). "
            "Pass fused=False to silence this.",
            RuntimeWarning,
            stacklevel=3,
        )
        return False
