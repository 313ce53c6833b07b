"""Stimulus packages: the trials and task lists of the psychophysics experiment, and their manifest.

The builder (which needs torch) is imported on first use, so readers of a package stay light.
"""

from importlib import import_module

from vizprobe.stimuli.manifest import CONDITIONS, Manifest, validate
from vizprobe.stimuli.settings import BuildSettings

__all__ = ["CONDITIONS", "BuildSettings", "Manifest", "build_stimuli", "validate"]


def __getattr__(name: str):
    if name == "build_stimuli":
        return getattr(import_module("vizprobe.stimuli.build"), name)
    raise AttributeError(f"module 'vizprobe.stimuli' has no attribute {name!r}")
