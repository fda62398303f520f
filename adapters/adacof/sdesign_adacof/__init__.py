"""sdesign-adacof: AdaCoF / CDFI frame interpolation for sparsenet-design.

``from sdesign_adacof import AdaCoF, CDFI, adacof_warp``.
"""
from .models.adacof import AdaCoF, occlusion_smoothness, offset_smoothness
from .models.cdfi import CDFI, GridNet
from .models.unet import AdaCoFUNet
from .ops.warp import adacof_warp, use_backend

__all__ = ["AdaCoF", "AdaCoFUNet", "CDFI", "GridNet", "adacof_warp", "occlusion_smoothness",
           "offset_smoothness", "use_backend"]
