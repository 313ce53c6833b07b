"""vizprobe: does an explanation of a CNN unit let people predict what the unit does?

The public API mirrors the pipeline: load a model (`load_model`), address its units (`Unit`),
scan an image collection (`vizprobe.scan.scan`, `ScanResult`). Names that need torch are imported
on first use, so the experiment server and the analysis start without loading torch.
"""

from importlib import import_module

from vizprobe.errors import VizprobeError

__version__ = "0.1.0"
DEFAULT_MODEL = "efficientnet-lite0"  # the model whose weights ship with the package (PyPI)

_LAZY = {
    "list_models": "vizprobe.models",
    "load_model": "vizprobe.models",
    "ScanResult": "vizprobe.scan.result",
    "Unit": "vizprobe.units",
}

__all__ = ["DEFAULT_MODEL", "ScanResult", "Unit", "VizprobeError", "__version__", "list_models", "load_model"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vizprobe' has no attribute {name!r}")
