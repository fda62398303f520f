"""sdesign-adacof: AdaCoF / CDFI frame interpolation for sparsenet-design.

``from sdesign_adacof import AdaCoF, CDFI, adacof_warp, load_published``.
"""
from .checkpoints import load_published
from .models.adacof import AdaCoF, occlusion_smoothness, offset_smoothness
from .models.cdfi import CDFI, GridNet
from .models.mode import EXACT, PUBLISHED, PUBLISHED_TRAINING, Mode, set_mode
from .models.unet import AdaCoFUNet
from .ops.warp import adacof_warp, use_backend

__all__ = ["AdaCoF", "AdaCoFUNet", "CDFI", "EXACT", "GridNet", "Mode", "PUBLISHED", "PUBLISHED_TRAINING",
           "adacof_warp", "load_published", "occlusion_smoothness", "offset_smoothness", "set_mode",
           "use_backend"]
