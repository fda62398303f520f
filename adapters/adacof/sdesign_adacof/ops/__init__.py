"""The AdaCoF warp op (custom torch op, PyTorch path, optional CuPy kernels)."""
from .warp import adacof_warp, adacof_warp_op, use_backend
from .warp_torch import (warp_backward_reference, warp_backward_torch, warp_forward_reference,
                         warp_forward_torch)

__all__ = ["adacof_warp", "adacof_warp_op", "use_backend", "warp_backward_reference", "warp_backward_torch",
           "warp_forward_reference", "warp_forward_torch"]
