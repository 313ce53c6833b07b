"""Dataset scan: find each unit's most and least activating images in a collection.

The scan itself (which needs torch) is imported on first use, so readers of a run dir stay light.
"""

from importlib import import_module

from vizprobe.scan.result import Exemplar, ScanResult
from vizprobe.scan.settings import ScanSettings

__all__ = ["Exemplar", "ScanResult", "ScanSettings", "ScanStats", "scan"]


def __getattr__(name: str):
    if name in ("scan", "ScanStats"):
        return getattr(import_module("vizprobe.scan.run"), name)
    raise AttributeError(f"module 'vizprobe.scan' has no attribute {name!r}")
