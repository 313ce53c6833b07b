"""Stimulus packages: the trials and task lists of the psychophysics experiment, and their manifest."""

from vizprobe.stimuli.build import BuildSettings, build_stimuli
from vizprobe.stimuli.manifest import CONDITIONS, load_manifest, validate

__all__ = ["CONDITIONS", "BuildSettings", "build_stimuli", "load_manifest", "validate"]
