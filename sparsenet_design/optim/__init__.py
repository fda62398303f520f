"""OBProx-SG for l1-regularised training, and helpers to set it up."""
from .param_groups import l1_param_groups
from .obproxsg import OBProxSG
from .schedule import OptimizerConfigError, PhaseSchedule, epochs_to_steps

__all__ = ["OBProxSG", "OptimizerConfigError", "PhaseSchedule", "epochs_to_steps", "l1_param_groups"]
