"""Stimulus packages: the trials and task lists of the psychophysics experiment, and their manifest.

The builder (which needs torch) is imported on first use, so readers of a package stay light.
"""

from importlib import import_module

from vizprobe.stimuli.manifest import CONDITIONS, load_manifest, validate

__all__ = ["CONDITIONS", "BuildSettings", "build_stimuli", "load_manifest", "validate"]


def __getattr__(name: str):
    if name in ("BuildSettings", "build_stimuli"):
        return getattr(import_module("vizprobe.stimuli.build"), name)
    raise AttributeError(f"module 'vizprobe.stimuli' has no attribute {name!r}")
