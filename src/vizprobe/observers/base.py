"""What an observer sees and how it answers: the interface shared by machine observers and baselines.

An observer gets `TrialView`s, built from a stimulus package exactly as a participant sees a trial (the
references of one condition, the query, the two occluded options and where they are occluded; in the exemplar
task the references of the unit's strongest and of its weakest images and the two query images), never the
unit's activations or the correct answer, and returns the probability of choosing the right-hand option (in the
exemplar task: the second, lower one).
"""

from __future__ import annotations

import zlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

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
    references: tuple[Path, ...]  # empty in condition `none`; the exemplar task: the unit's strongest images
    query: Path | None  # the unoccluded query (None in the exemplar task, whose options are the queries)
    options: tuple[Path, Path]  # left, right (the exemplar task: upper, lower)
    patches: tuple[tuple[int, int, int] | None, tuple[int, int, int] | None]  # (x, y, size) or None (not occluded)
    image_size: int
    task: str = "occlusion"
    min_references: tuple[Path, ...] = ()  # the exemplar task: the unit's weakest images


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
            query=manifest.path(trial.base_image) if trial.base_image else None,
            options=tuple(manifest.path(o.image) for o in as_shown(trial.options, trial.correct, side)),
            patches=tuple(o.patch for o in as_shown(trial.options, trial.correct, side)),
            image_size=manifest.image_size,
            task=manifest.task,
            min_references=tuple(manifest.path(r) for r in trial.min_references_for(condition)),
        )
        for trial, side in zip(trials, max_sides, strict=True)
    ]


def control_donors(manifest: Manifest, seed: int = 0) -> dict[str, str]:
    """For each unit of the package, another unit whose references its control trials show: one of the same
    layer where the package has one, else any other unit; drawn per unit from `seed` and the unit's name."""
    units = [u for u in manifest.units.values() if u.role in ("main", "catch")] or list(manifest.units.values())
    donors = {}
    for unit in units:
        same = [u.unit for u in units if u.layer == unit.layer and u.unit != unit.unit]
        others = same or [u.unit for u in units if u.unit != unit.unit]
        if others:
            rng = np.random.default_rng([seed, zlib.crc32(unit.unit.encode())])
            donors[unit.unit] = others[int(rng.integers(len(others)))]
    return donors


def control_views(manifest: Manifest, views: Sequence[TrialView], donors: dict[str, str]) -> list[TrialView]:
    """The views with each trial's references replaced by its donor unit's (`control_donors`) in the same
    condition (the donor's trial of the same image set, else its first): a control an observer that understood
    the unit from its references should fail. Views without references, or whose unit has no donor, are dropped."""
    by_unit: dict[str, list] = {}
    for trial in manifest.trials.values():
        by_unit.setdefault(trial.unit, []).append(trial)
    out = []
    for view in views:
        donor = donors.get(view.unit)
        if not view.references or donor is None:
            continue
        candidates = [t for t in by_unit[donor] if t.references_for(view.condition)]
        if not candidates:
            continue
        same_set = [t for t in candidates if t.image_set == view.image_set]
        trial = (same_set or candidates)[0]
        references = tuple(manifest.path(r) for r in trial.references_for(view.condition))
        lows = tuple(manifest.path(r) for r in trial.min_references_for(view.condition))
        out.append(replace(view, references=references, min_references=lows))
    return out


class Observer(ABC):
    """Answers trials in batches. Subclasses set `name` and implement `predict`."""

    name: str = "observer"
    expertise: str = "machine"
    uses_references: bool = False  # its answers depend on the references (so a control with another unit's tells)
    embedder_label: str | None = None  # `MODEL:LAYER,...` of the network it embeds images with, if any

    @abstractmethod
    def predict(self, views: Sequence[TrialView]) -> np.ndarray:
        """Probability of choosing the right-hand option (choice 1) for each view, shape (len(views),)."""
