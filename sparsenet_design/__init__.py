"""sparsenet-design: turn sparsity into architecture."""
from .density import DensityReport, density_report
from .errors import SdesignError

__version__ = "0.1.0"

__all__ = ["DensityReport", "SdesignError", "density_report", "__version__"]
