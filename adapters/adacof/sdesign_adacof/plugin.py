"""Entry point ``sparsenet_design.plugins: adacof``: teach the core about the warp op.

The warp's output carries the channels of its image argument (0); the per-pixel
kernel weights, alpha and beta (arguments 1, 2, 3) have F² channels with fixed
meaning, so their producers keep that width.
"""
from __future__ import annotations

_KIND = None


def warp_kind():
    """The op kind of the AdaCoF warp (one object, made once)."""
    global _KIND
    if _KIND is None:
        from sparsenet_design.plugin_api import OpKind

        from sparsenet_design.plugin_api import passthrough_rule
        from .ops.warp import adacof_warp_op

        channels = passthrough_rule(0, pinned_args=(1, 2, 3))
        _KIND = OpKind(adacof_warp_op, name="AdaCoF warp", channels=channels)
    return _KIND


def register() -> None:
    """Register the AdaCoF warp's kind with the core. Safe to call repeatedly."""
    from sparsenet_design.plugin_api import register_kind

    register_kind(warp_kind())
