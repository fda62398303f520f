"""Which steps of OBProx-SG are P-steps and which are O-steps."""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import SdesignError


class OptimizerConfigError(SdesignError, ValueError):
    """An OBProx-SG setting is out of range (also a ``ValueError``, as torch's own optimizers raise)."""


def _count(value, name: str, *, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise OptimizerConfigError(
            f"OBProx-SG needs {name} to be a whole number of optimizer steps ≥ 0, got {value!r}. "
            "Convert epochs to steps with sparsenet_design.optim.epochs_to_steps(epochs, steps_per_epoch)."
        )
    return value


@dataclass(frozen=True)
class PhaseSchedule:
    """``n_p`` P-steps then O-steps forever; with ``n_o``, repeating cycles of
    ``n_p`` P-steps followed by ``n_o`` O-steps (``n_o=0``: P-steps only)."""

    n_p: int
    n_o: int | None = None

    def __post_init__(self) -> None:
        _count(self.n_p, "n_p")
        _count(self.n_o, "n_o", allow_none=True)
        if self.n_o is not None and self.n_p + self.n_o == 0:
            raise OptimizerConfigError(
                "OBProx-SG got n_p=0 and n_o=0: a cycle must hold at least one step. "
                "Use n_o=None for 'n_p P-steps, then O-steps for good'."
            )

    def is_p_step(self, step_index: int) -> bool:
        """Whether the step with this 0-based index is a P-step."""
        if self.n_o is None:
            return step_index < self.n_p
        return step_index % (self.n_p + self.n_o) < self.n_p


def epochs_to_steps(epochs: float, steps_per_epoch: int, accumulation: int = 1) -> int:
    """Optimizer steps in ``epochs`` epochs of ``steps_per_epoch`` batches each,
    stepping once every ``accumulation`` batches (a partial group at the end of
    an epoch still steps, as the training loop does). Fractional epochs round up."""
    if isinstance(steps_per_epoch, bool) or not isinstance(steps_per_epoch, int) or steps_per_epoch < 1:
        raise OptimizerConfigError(f"steps_per_epoch must be a whole number ≥ 1, got {steps_per_epoch!r}.")
    if isinstance(accumulation, bool) or not isinstance(accumulation, int) or accumulation < 1:
        raise OptimizerConfigError(f"accumulation must be a whole number ≥ 1, got {accumulation!r}.")
    if not isinstance(epochs, (int, float)) or isinstance(epochs, bool) or not math.isfinite(epochs) or epochs < 0:
        raise OptimizerConfigError(f"epochs must be a finite number ≥ 0, got {epochs!r}.")
    per_epoch = math.ceil(steps_per_epoch / accumulation)
    return int(math.ceil(epochs * per_epoch - 1e-9))
