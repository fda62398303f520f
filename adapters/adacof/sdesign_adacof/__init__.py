"""sdesign-adacof: AdaCoF / CDFI frame interpolation for sparsenet-design."""
from .ops.warp import adacof_warp, use_backend

__all__ = ["adacof_warp", "use_backend"]
