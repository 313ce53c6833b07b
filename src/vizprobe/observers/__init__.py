"""Machine observers: answer trials from what a participant sees, to predict human performance."""

from vizprobe.observers.base import Observer, TrialView, get_observer, list_observers, register_observer, trial_views

__all__ = ["Observer", "TrialView", "get_observer", "list_observers", "register_observer", "trial_views"]
