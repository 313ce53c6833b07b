"""The exclusion criteria, defined once in `vizprobe.exclusion` (below the server and the analysis); kept here
so that `vizprobe.analysis.exclusion` imports keep working."""

from vizprobe.exclusion import KEY, ExclusionCriteria, ExclusionResult, apply_exclusion

__all__ = ["KEY", "ExclusionCriteria", "ExclusionResult", "apply_exclusion"]
