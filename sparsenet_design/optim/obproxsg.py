"""OBProx-SG (Chen et al. 2020) as a ``torch.optim.Optimizer``.

It minimises ``f(θ) + Σ_groups λ_g‖θ_g‖₁`` with two kinds of step
(formulas in :mod:`.kernels` and docs/design.md, section 1): P-steps (a gradient step then
soft-thresholding by ``lr·λ``) and O-steps (a step inside the current orthant:
no coordinate changes sign and zeros stay zero). The first ``n_p`` calls of
:meth:`step` are P-steps and the rest O-steps; with ``n_o`` the optimizer
repeats cycles of ``n_p`` P-steps and ``n_o`` O-steps.

* Groups with ``lam == 0`` (biases, norms: see :func:`l1_param_groups`) are
  outside the l1 term, so both phases give them a plain SGD step.
* Momentum (default off, as in the paper) follows ``torch.optim.SGD``:
  ``b ← μ·b + (1 − dampening)·g`` (``b = g`` on the first step),
  ``d = b`` or, with Nesterov, ``d = g + μ·b``; the P/O step then uses ``d``
  in place of ``g``. The buffer runs on across the P→O switch.
* The phase counter (:attr:`steps_done`) advances once per call of
  :meth:`step`, so a step that ``GradScaler`` skips (inf/NaN gradients) does
  not count. It is saved in :meth:`state_dict`.
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import torch
from torch.optim import Optimizer

from ..errors import CheckpointError
from . import kernels
from .schedule import OptimizerConfigError, PhaseSchedule

_STATE_KEY = "obproxsg"


def _check_hyper(name: str, value: Any, *, upper: float | None = None) -> float:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0 or (
        upper is not None and value >= upper
    ):
        bound = f" and < {upper}" if upper is not None else ""
        raise OptimizerConfigError(f"OBProx-SG needs {name} to be a finite number ≥ 0{bound}, got {value!r}.")
    return float(value)


class OBProxSG(Optimizer):
    """OBProx-SG: ``OBProxSG(params, lr, lam, n_p, n_o=None, momentum=0.0)``.

    ``params`` is an iterable of tensors or of param-group dicts; a group may
    override ``lr``, ``lam``, ``momentum``, ``dampening`` and ``nesterov``.
    ``compiled=True`` runs the update through ``torch.compile`` (one fused pass
    per tensor, as cheap as an SGD step; compiles on the first P- and O-step,
    which takes seconds), ``compiled=False`` uses vectorised ``torch._foreach_*``
    ops (about 2–3× an SGD step on CPU), and ``None`` (default) compiles for
    groups of at least ``kernels.COMPILE_MIN_ELEMENTS`` elements only, where
    the saving outweighs the compile time.
    """

    def __init__(
        self,
        params,
        lr: float,
        lam: float,
        n_p: int,
        n_o: int | None = None,
        momentum: float = 0.0,
        dampening: float = 0.0,
        nesterov: bool = False,
        *,
        compiled: bool | None = None,
    ) -> None:
        self.schedule = PhaseSchedule(n_p, n_o)
        defaults = dict(
            lr=_check_hyper("lr", lr),
            lam=_check_hyper("lam", lam),
            momentum=_check_hyper("momentum", momentum, upper=1.0),
            dampening=_check_hyper("dampening", dampening, upper=1.0 + 1e-12),
            nesterov=bool(nesterov),
        )
        if nesterov and (momentum <= 0 or dampening != 0):
            raise OptimizerConfigError("OBProx-SG: nesterov=True needs momentum > 0 and dampening = 0 (as in SGD).")
        super().__init__(params, defaults)
        for group in self.param_groups:
            for key in ("lr", "lam", "momentum"):
                group[key] = _check_hyper(f"{key} of a param group", group[key], upper=1.0 if key == "momentum" else None)
        self.compiled = None if compiled is None else bool(compiled)
        self.steps_done = 0

    @property
    def is_p_step(self) -> bool:
        """Whether the next call of :meth:`step` is a P-step."""
        return self.schedule.is_p_step(self.steps_done)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        proximal = self.is_p_step
        for group in self.param_groups:
            by_kind: dict[tuple[torch.device, torch.dtype], tuple[list, list]] = defaultdict(lambda: ([], []))
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise OptimizerConfigError(
                        "OBProx-SG does not support sparse gradients (e.g. nn.Embedding(sparse=True)); "
                        "use dense gradients for the parameters it optimises."
                    )
                params, grads = by_kind[(p.device, p.dtype)]
                params.append(p)
                grads.append(p.grad)
            for params, grads in by_kind.values():
                directions = self._directions(group, params, grads)
                self._update(group, params, directions, proximal)
        self.steps_done += 1
        return loss

    def _directions(self, group: dict, params: list, grads: list) -> list:
        mu = group["momentum"]
        if mu == 0:
            return grads
        buffers, old_buffers, old_grads = [], [], []
        for p, g in zip(params, grads):
            state = self.state[p]
            buf = state.get("momentum_buffer")
            if buf is None:
                state["momentum_buffer"] = buf = g.detach().clone()
            else:
                old_buffers.append(buf)
                old_grads.append(g)
            buffers.append(buf)
        if old_buffers:
            torch._foreach_mul_(old_buffers, mu)
            torch._foreach_add_(old_buffers, old_grads, alpha=1.0 - group["dampening"])
        if group["nesterov"]:
            return torch._foreach_add(grads, buffers, alpha=mu)
        return buffers

    def _update(self, group: dict, params: list, directions: list, proximal: bool) -> None:
        lr, lam = group["lr"], group["lam"]
        if lam == 0:
            kernels.sgd_step_(params, directions, lr)
            return
        compiled = self.compiled
        if compiled is None:
            compiled = sum(p.numel() for p in params) >= kernels.COMPILE_MIN_ELEMENTS
        if proximal:
            kernels.prox_step_(params, directions, lr, lam, compiled=compiled)
        else:
            kernels.orthant_step_(params, directions, lr, lam, compiled=compiled)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state[_STATE_KEY] = {"steps_done": self.steps_done, "n_p": self.schedule.n_p, "n_o": self.schedule.n_o}
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore momentum buffers, param groups and the phase counter. The
        schedule (``n_p``, ``n_o``) stays the one this optimizer was built with."""
        state_dict = dict(state_dict)
        extra = state_dict.pop(_STATE_KEY, None)
        if not isinstance(extra, dict) or not isinstance(extra.get("steps_done"), int):
            raise CheckpointError(
                "This optimizer state was not saved by OBProx-SG (no 'obproxsg' entry with the step count), "
                "so the P/O phase cannot be resumed. Load a state_dict() of an OBProxSG optimizer."
            )
        super().load_state_dict(state_dict)
        self.steps_done = extra["steps_done"]
