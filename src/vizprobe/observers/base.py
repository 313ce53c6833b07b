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
from vizprobe.stimuli.manifest import CONDITIONS, load_manifest


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


def trial_views(
    package: str | Path, condition: str, kinds: Sequence[str] = ("main",), manifest: dict | None = None
) -> list[TrialView]:
    """The package's trials of the given kinds as seen in `condition`, in manifest order."""
    if condition not in CONDITIONS:
        raise VizprobeError(f"unknown condition {condition!r}; choose from {', '.join(CONDITIONS)}")
    package = Path(package)
    manifest = manifest if manifest is not None else load_manifest(package)
    layers = {u["unit"]: u["layer"] for u in manifest["units"]}
    views = []
    for trial in manifest["trials"]:
        if trial["kind"] not in kinds:
            continue
        if condition != "none" and condition not in trial["references"]:
            raise VizprobeError(f"the package has no {condition!r} references; build it with that condition")
        left, right = trial["options"]
        views.append(
            TrialView(
                trial_id=trial["trial_id"],
                kind=trial["kind"],
                condition=condition,
                unit=trial["unit"],
                layer=layers.get(trial["unit"], trial["unit"].rsplit(":", 1)[0]),
                image_set=int(trial["image_set"]),
                references=tuple(package / r for r in trial["references"].get(condition, [])),
                query=package / trial["base_image"],
                options=(package / left["image"], package / right["image"]),
                patches=tuple(tuple(o["patch"]) if o["patch"] is not None else None for o in (left, right)),
                image_size=int(manifest["image_size"]),
            )
        )
    return views


class Observer(ABC):
    """Answers trials in batches. Subclasses set `name` and implement `predict`."""

    name: str = "observer"
    expertise: str = "machine"

    @abstractmethod
    def predict(self, views: Sequence[TrialView]) -> np.ndarray:
        """Probability of choosing the right-hand option (choice 1) for each view, shape (len(views),)."""


_OBSERVERS: dict[str, Callable[..., Observer]] = {}


def register_observer(name: str, factory: Callable[..., Observer]) -> Callable[..., Observer]:
    """Make an observer available by name to `vizprobe simulate`, `analyze` and the demo."""
    _OBSERVERS[name] = factory
    return factory


def list_observers() -> list[str]:
    return sorted(_OBSERVERS)


def get_observer(name: str, **kwargs) -> Observer:
    if name not in _OBSERVERS:
        raise VizprobeError(f"unknown observer {name!r}; choose from {', '.join(list_observers()) or '(none)'}")
    return _OBSERVERS[name](**kwargs)
