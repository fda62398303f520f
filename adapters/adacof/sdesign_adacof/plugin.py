"""Entry point ``sparsenet_design.plugins: adacof``: teach the core about the warp op.

The warp's output carries the channels of its image argument (0); the per-pixel
kernel weights, alpha and beta (arguments 1, 2, 3) have F² channels with fixed
meaning, so their producers keep that width.
"""
from __future__ import annotations


def register() -> None:
    """Register the AdaCoF warp's channel rule with the core. Safe to call repeatedly."""
    from sparsenet_design.rules import passthrough_rule, register_function_rule

    from .ops.warp import adacof_warp_op

    register_function_rule(adacof_warp_op, passthrough_rule(0, pinned_args=(1, 2, 3)))
