"""The P-step, O-step and plain SGD update, in place, on lists of tensors
of one device and dtype (``params[i]`` moves along ``directions[i]``, the
gradient or the momentum direction).

Formulas (docs/design.md, section 1), with ``t = lr·λ``:

* P-step: ``y = x − lr·d``; ``x ← sign(y)·max(|y| − t, 0)``, computed as
  ``y − clamp(y, −t, t)``, which is the same number bit for bit;
* O-step: ``ζ = sign(x)``; ``x̂ = x − lr·(d + λζ)``; ``x ← x̂`` where
  ``x̂·ζ > 0``, else 0, computed as ``ζ·max(ζ·x̂, 0)`` (multiplying by ±1 is
  exact, and ``ζ = 0`` keeps zeros at zero).

Two implementations:

* eager: ``torch._foreach_*`` ops over the tensors cut into flat
  chunks of about ``CHUNK_ELEMENTS`` elements, so the few temporaries an
  update needs stay in cache instead of costing extra trips to memory;
* compiled: the same formulas through ``torch.compile``, one fused loop per
  tensor that reads ``x`` and ``d`` once and writes ``x`` once (the same
  memory traffic as SGD). It compiles on first use (seconds to tens of
  seconds) and falls back to eager, with a warning, where compiling fails.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor

#: Elements per chunk of the eager path: a chunk and its temporaries fit in L2/L3.
CHUNK_ELEMENTS = 1 << 18
#: With ``compiled=None``, groups of at least this many elements use the compiled step.
COMPILE_MIN_ELEMENTS = 1 << 22


def _chunk_batches(
    params: Sequence[Tensor], directions: Sequence[Tensor], budget: int
) -> Iterator[tuple[list[Tensor], list[Tensor]]]:
    """Matching lists of flat views, about ``budget`` elements per batch.
    Tensors that are not both contiguous go whole (elementwise ops stay correct)."""
    batch_p: list[Tensor] = []
    batch_d: list[Tensor] = []
    size = 0
    for x, d in zip(params, directions):
        if x.is_contiguous() and d.is_contiguous() and x.numel() > budget:
            pieces = zip(x.view(-1).split(budget), d.view(-1).split(budget))
        else:
            pieces = ((x, d),)
        for px, pd in pieces:
            if batch_p and size + px.numel() > budget:
                yield batch_p, batch_d
                batch_p, batch_d, size = [], [], 0
            batch_p.append(px)
            batch_d.append(pd)
            size += px.numel()
    if batch_p:
        yield batch_p, batch_d


def sgd_step_(params: Sequence[Tensor], directions: Sequence[Tensor], lr: float) -> None:
    torch._foreach_add_(list(params), list(directions), alpha=-lr)


def prox_step_eager_(params: Sequence[Tensor], directions: Sequence[Tensor], lr: float, lam: float) -> None:
    threshold = lr * lam
    for xs, ds in _chunk_batches(params, directions, CHUNK_ELEMENTS):
        torch._foreach_add_(xs, ds, alpha=-lr)  # y
        clipped = torch._foreach_clamp_min(xs, -threshold)
        torch._foreach_clamp_max_(clipped, threshold)
        torch._foreach_sub_(xs, clipped)  # y − clamp(y, −t, t)


def orthant_step_eager_(params: Sequence[Tensor], directions: Sequence[Tensor], lr: float, lam: float) -> None:
    for xs, ds in _chunk_batches(params, directions, CHUNK_ELEMENTS):
        zeta = torch._foreach_sign(xs)
        moves = torch._foreach_add(ds, zeta, alpha=lam)  # d + λζ
        torch._foreach_add_(xs, moves, alpha=-lr)  # x̂
        torch._foreach_mul_(xs, zeta)
        torch._foreach_clamp_min_(xs, 0.0)
        torch._foreach_mul_(xs, zeta)  # ζ·max(ζ·x̂, 0)


def _prox_kernel(params: list[Tensor], directions: list[Tensor], lr: Tensor, threshold: Tensor) -> None:
    for x, d in zip(params, directions):
        y = x - lr * d
        x.copy_(y - torch.clamp(y, -threshold, threshold))


def _orthant_kernel(params: list[Tensor], directions: list[Tensor], lr: Tensor, lam: Tensor) -> None:
    for x, d in zip(params, directions):
        zeta = torch.sign(x)
        x_hat = x - lr * (d + lam * zeta)
        x.copy_(torch.where(x_hat * zeta > 0, x_hat, torch.zeros_like(x_hat)))


_compiled: dict[str, Callable] = {}
_compile_failed = False


def _run_compiled(name: str, kernel: Callable, params, directions, a: float, b: float) -> bool:
    """Run ``kernel`` compiled; False (after one warning) where compiling is not possible."""
    global _compile_failed
    if _compile_failed:
        return False
    fn = _compiled.get(name)
    if fn is None:
        fn = _compiled[name] = torch.compile(kernel, dynamic=False)
    device = params[0].device
    a_t = torch.tensor(a, dtype=torch.float32, device=device)
    b_t = torch.tensor(b, dtype=torch.float32, device=device)
    try:
        fn([p.detach() for p in params], [d.detach() for d in directions], a_t, b_t)
    except Exception as exc:  # compiler missing or backend failure: the eager path is always right
        _compile_failed = True
        warnings.warn(
            f"OBProx-SG: torch.compile of the fused step failed ({type(exc).__name__}: {exc}); "
            "using the eager foreach step instead (same results, slower).",
            RuntimeWarning,
            stacklevel=3,
        )
        return False
    return True


def prox_step_(params, directions, lr: float, lam: float, *, compiled: bool = False) -> None:
    if not (compiled and _run_compiled("prox", _prox_kernel, params, directions, lr, lr * lam)):
        prox_step_eager_(params, directions, lr, lam)


def orthant_step_(params, directions, lr: float, lam: float, *, compiled: bool = False) -> None:
    if not (compiled and _run_compiled("orthant", _orthant_kernel, params, directions, lr, lam)):
        orthant_step_eager_(params, directions, lr, lam)
