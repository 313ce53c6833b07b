"""Dataset scan: find each unit's most and least activating images in a collection."""

from vizprobe.scan.result import Exemplar, ScanResult
from vizprobe.scan.run import ScanStats, scan

__all__ = ["Exemplar", "ScanResult", "ScanStats", "scan"]
