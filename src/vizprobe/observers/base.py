"""What an observer sees and how it answers: the interface shared by machine observers and baselines.

An observer gets `TrialView`s, built from a stimulus package exactly as a participant sees a trial (the
references of one condition, the query, the two occluded options and where they are occluded), never the
unit's activations or the correct answer, and returns the probability of choosing the right-hand option.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vizprobe.errors import VizprobeError
from vizprobe.stimuli.manifest import Manifest
from vizprobe.stimuli.sides import as_shown


@dataclass(frozen=True)
class TrialView:
    """One trial as a participant of `condition` sees it. Paths are absolute image files."""

    trial_id: str
    kind: str  # main | catch | practice
    condition: str
    unit: str
    layer: str
    image_set: int
    references: tuple[Path, ...]  # empty in condition `none`
    query: Path
    options: tuple[Path, Path]  # left, right
    patches: tuple[tuple[int, int, int] | None, tuple[int, int, int] | None]  # (x, y, size) or None (not occluded)
    image_size: int


def as_manifest(package: str | Path | Manifest) -> Manifest:
    """A loaded manifest from a package folder (or the manifest itself)."""
    return package if isinstance(package, Manifest) else Manifest.load(package)


def trial_views(
    package: str | Path | Manifest,
    condition: str,
    kinds: Sequence[str] = ("main",),
    max_sides: Sequence[int] | None = None,
) -> list[TrialView]:
    """The package's trials of the given kinds as seen in `condition`, in manifest order; with `max_sides` (one
    per trial, see `vizprobe.stimuli.sides`) each trial's options are on those sides, else in stored order."""
    manifest = as_manifest(package)
    manifest.check_condition(condition)
    trials = manifest.trials_in(condition, kinds)
    if max_sides is None:
        max_sides = [t.correct for t in trials]
    return [
        TrialView(
            trial_id=trial.trial_id,
            kind=trial.kind,
            condition=condition,
            unit=trial.unit,
            layer=manifest.layer_of(trial.unit),
            image_set=trial.image_set,
            references=tuple(manifest.path(r) for r in trial.references_for(condition)),
            query=manifest.path(trial.base_image),
            options=tuple(manifest.path(o.image) for o in as_shown(trial.options, trial.correct, side)),
            patches=tuple(o.patch for o in as_shown(trial.options, trial.correct, side)),
            image_size=manifest.image_size,
        )
        for trial, side in zip(trials, max_sides, strict=True)
    ]


class Observer(ABC):
    """Answers trials in batches. Subclasses set `name` and implement `predict`."""

    name: str = "observer"
    expertise: str = "machine"

    @abstractmethod
    def predict(self, views: Sequence[TrialView]) -> np.ndarray:
        """Probability of choosing the right-hand option (choice 1) for each view, shape (len(views),)."""


@dataclass(frozen=True)
class ObserverEntry:
    """A registered observer: how to make it, and what it needs from the caller.

    `uses_device`: its factory takes `device=` (it runs a network). `privileged`: its factory takes
    `manifest=` and reads the correct answers (the oracle), so it bounds what an observer can reach.
    """

    name: str
    factory: Callable[..., Observer]
    description: str = ""
    uses_device: bool = False
    privileged: bool = False


_REGISTRY: dict[str, ObserverEntry] = {}


def register_observer(
    name: str, factory: Callable[..., Observer], description: str = "", *, uses_device: bool = False,
    privileged: bool = False,
) -> Callable[..., Observer]:  # fmt: skip
    """Make an observer available by name to `vizprobe observe`, `simulate`, `analyze` and the demo."""
    _REGISTRY[name] = ObserverEntry(name, factory, description, uses_device, privileged)
    return factory


def _similarity(**options) -> Observer:
    from vizprobe.observers.similarity import SimilarityObserver  # needs torch: imported when asked for

    return SimilarityObserver(**options)


def _load_builtin() -> None:
    """Register the built-in observers: the baselines (light) and the similarity observer (torch, on use)."""
    import vizprobe.observers.baselines  # noqa: F401  (registers on import)

    if "similarity" not in _REGISTRY:
        register_observer("similarity", _similarity, "perceptual similarity to the references", uses_device=True)


def list_observers() -> list[str]:
    """Names of the registered observers, built-in ones included."""
    _load_builtin()
    return sorted(_REGISTRY)


def observer_entry(name: str) -> ObserverEntry:
    _load_builtin()
    if name not in _REGISTRY:
        raise VizprobeError(f"unknown observer {name!r}; choose from {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def get_observer(
    observer: str | Observer, *, device: str | None = None, manifest: Manifest | None = None, **options
) -> Observer:
    """An observer by registered name (or the instance itself). `device` reaches observers that run a
    network, `manifest` the privileged ones (which need it); `options` go to the factory."""
    if isinstance(observer, Observer):
        return observer
    entry = observer_entry(observer)
    if entry.uses_device and device is not None:
        options["device"] = device
    if entry.privileged:
        if manifest is None:
            raise VizprobeError(f"observer {observer!r} reads the correct answers: it needs the stimulus package")
        options["manifest"] = manifest
    return entry.factory(**options)
