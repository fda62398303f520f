"""A crash the tests inject, never shipped: with this folder on ``PYTHONPATH`` and
``TEST_CRASH_AFTER_STEPS=N`` in the environment, every Python process started
(torchrun's workers too) dies like ``kill -9`` (``os._exit(17)``: no cleanup, no
final checkpoint) right after its N-th optimizer step."""
import os

_AFTER = os.environ.get("TEST_CRASH_AFTER_STEPS")

if _AFTER:
    from sparsenet_design.training.trainer import Trainer

    _step = Trainer._optimizer_step

    def _step_then_die(self, *args, **kwargs):
        result = _step(self, *args, **kwargs)
        if self.step >= int(_AFTER):
            os._exit(17)
        return result

    Trainer._optimizer_step = _step_then_die
