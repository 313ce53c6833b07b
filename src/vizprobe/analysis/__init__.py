"""Analysis of responses: exclusion, accuracy, baselines, error consistency, and the report."""

from vizprobe.analysis.accuracy import StatsSettings, accuracy_table, pairwise_tests, summarize
from vizprobe.analysis.consistency import error_consistency, kappa, kappa_matrix
from vizprobe.analysis.exclusion import ExclusionCriteria, apply_exclusion
from vizprobe.analysis.report import analyze, compute, load_responses

__all__ = [
    "ExclusionCriteria",
    "StatsSettings",
    "accuracy_table",
    "analyze",
    "apply_exclusion",
    "compute",
    "error_consistency",
    "kappa",
    "kappa_matrix",
    "load_responses",
    "pairwise_tests",
    "summarize",
]
