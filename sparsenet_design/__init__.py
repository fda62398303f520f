"""sparsenet-design: turn sparsity into architecture.

Sparsify any ``nn.Module`` with OBProx-SG, measure how dense every layer became,
and rebuild a compact dense model whose widths follow that density (the √d rule).
"""
from .design.density import DensityReport, density_report
from .errors import SdesignError
from .design.analysis import design_spec
from .rebuild.build import apply_spec
from .rebuild.reconstruct import reconstruct
from .design.spec import DesignSpec

__version__ = "0.1.0"

__all__ = [
    "DensityReport",
    "DesignSpec",
    "SdesignError",
    "__version__",
    "apply_spec",
    "compress",
    "density_report",
    "design_spec",
    "reconstruct",
    "sparsify",
]


def __getattr__(name):
    # the pipeline pulls in the optimizer, training loop and CLI helpers: load on first use
    if name in ("compress", "sparsify", "CompressResult"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'sparsenet_design' has no attribute {name!r}")
