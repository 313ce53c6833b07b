"""The score stage (scan -> score -> explore): a number per unit from an observer answering the unit's tasks,
beside the colour-statistics baseline and a control, and its validation against people's per-unit accuracy.

`score` (one call for every task and form), `exemplar_scores` (units of one scan), `score_layers` (whole layers of
several scans, resumable, on Ray), `validate` (machine against people, with their noise ceiling). Imported on
first use, so that `import vizprobe.score` stays light.
"""

from importlib import import_module

_LAZY = {
    "score": "api",
    "occlusion_scores": "api",
    "ScoreSettings": "exemplar",
    "exemplar_scores": "exemplar",
    "score_layers": "layers",
    "by_depth": "layers",
    "validate": "validate",
    "simulate_exemplar": "simulate",
    "stratified_units": "select",
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f"vizprobe.score.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'vizprobe.score' has no attribute {name!r}")
