"""vizprobe: does an explanation of a CNN unit let people predict what the unit does?

The public API mirrors the pipeline: load a model (`load_model`), address its units (`Unit`),
scan an image collection (`vizprobe.scan.scan`, `ScanResult`).
"""

from vizprobe.errors import VizprobeError
from vizprobe.models import list_models, load_model
from vizprobe.scan.result import ScanResult
from vizprobe.units import Unit

__version__ = "0.1.0"

__all__ = ["ScanResult", "Unit", "VizprobeError", "__version__", "list_models", "load_model"]
