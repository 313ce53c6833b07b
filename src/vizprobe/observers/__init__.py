"""Machine observers: answer trials from what a participant sees, to predict human performance.

The answering, simulation and power functions (and the similarity observer, which needs torch) are
imported on first use, so `vizprobe.observers.base` stays light for the analysis and the server.
"""

from importlib import import_module

from vizprobe.observers.base import Observer, TrialView, get_observer, list_observers, register_observer, trial_views

_LAZY = {
    "answer_package": "answer",
    "predict_package": "answer",
    "predicted_accuracy": "answer",
    "as_observer": "answer",
    "power_analysis": "power",
    "closed_form_participants": "power",
    "SimilarityObserver": "similarity",
    "FeatureEmbedder": "embedding",
}

__all__ = ["Observer", "TrialView", "get_observer", "list_observers", "register_observer", "trial_views", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f"vizprobe.observers.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'vizprobe.observers' has no attribute {name!r}")
