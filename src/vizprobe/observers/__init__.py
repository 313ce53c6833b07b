"""Machine observers and baselines: answer trials from what a participant sees, to predict human performance.

One registry (`register_observer`, `get_observer`, `list_observers`) holds the baselines and the machine
observers. The answering, simulation and power functions (and the similarity observer, which needs torch)
are imported on first use, so `vizprobe.observers.base` and the registry stay light for the analysis and the server.
"""

from importlib import import_module

from vizprobe.observers.base import Observer, TrialView, trial_views
from vizprobe.observers.registry import get_observer, list_observers, observer_entry, register_observer

_LAZY = {
    "answer_package": "answer",
    "predict_package": "answer",
    "predicted_accuracy": "answer",
    "run_baselines": "answer",
    "BASELINES": "baselines",
    "spectral_residual": "baselines",
    "power_analysis": "power",
    "closed_form_participants": "power",
    "simulate": "simulate",
    "SimilarityObserver": "similarity",
    "FeatureEmbedder": "embedding",
    "choose_embedder": "embedding",
    "DecisionRule": "rule",
    "fit_rule": "fit",
    "ColourEmbedder": "colour",
    "EmbeddingFunction": "embedding",
}

__all__ = [
    "Observer",
    "TrialView",
    "get_observer",
    "list_observers",
    "observer_entry",
    "register_observer",
    "trial_views",
    *_LAZY,
]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f"vizprobe.observers.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'vizprobe.observers' has no attribute {name!r}")
