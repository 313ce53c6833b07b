"""The stimulus package manifest: one JSON file, validated against the schema shipped beside it, read
through the one `Manifest` class that the server, observers, simulation, export and analysis share.

Version 2 keys units by their canonical form (`LAYER_PATH:CHANNEL`) and records the spelling the user
gave as `label`; version 1 packages are refused with the command that rebuilds them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache, cached_property
from importlib import resources
from pathlib import Path

from vizprobe.condition_names import CONDITION_NAME, CONDITIONS, ordered_conditions  # noqa: F401  (re-exported)
from vizprobe.errors import VizprobeError
from vizprobe.exclusion import ExclusionCriteria

SCHEMA_VERSION = 2
MANIFEST = "manifest.json"
TRIAL_KINDS = ("main", "catch", "practice")


@cache
def schema() -> dict:
    return json.loads(resources.files("vizprobe.stimuli").joinpath("manifest.schema.json").read_text())


def validate(manifest: dict) -> None:
    """Raise a one-line VizprobeError naming the first place where `manifest` breaks the schema."""
    import jsonschema

    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema()).iter_errors(manifest))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise VizprobeError(f"manifest fails its schema at {where}: {error.message[:150]}")


def sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def dumps(manifest: dict) -> str:
    """Canonical text: the same manifest always gives the same bytes."""
    return json.dumps(manifest, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


@dataclass(frozen=True)
class Option:
    """One of a trial's two images: `patch` is (x, y, size) of its occlusion, or None when not occluded."""

    image: str
    patch: tuple[int, int, int] | None
    activation: float


@dataclass(frozen=True)
class Trial:
    """A trial of the package; `correct` is the index (0 left, 1 right) of the more activating option."""

    trial_id: str
    unit: str
    image_set: int
    kind: str
    base_image: str
    options: tuple[Option, Option]
    correct: int
    references: dict[str, tuple[str, ...]]
    activation_map: str | None = None
    # the exemplar task: each condition's references of the unit's weakest images (beside its strongest)
    min_references: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def references_for(self, condition: str) -> tuple[str, ...]:
        """The reference images a participant of `condition` sees (none in `none`); in the exemplar task, those of
        the unit's strongest images."""
        return self.references.get(condition, ())

    def min_references_for(self, condition: str) -> tuple[str, ...]:
        """The exemplar task's references of the unit's weakest images in `condition` (none in the occlusion task)."""
        return self.min_references.get(condition, ())


@dataclass(frozen=True)
class Task:
    """One participant's trial list in one condition."""

    task_id: str
    condition: str
    trial_ids: tuple[str, ...]


@dataclass(frozen=True)
class PackageUnit:
    """A unit of the package: canonical name, layer path, channel, the label the user gave, and its role
    (main, catch or practice: catch and practice units are never main units)."""

    unit: str
    layer: str
    channel: int
    label: str
    role: str = "main"
    activation_std: float | None = None  # over the scanned images (None in packages built before it was recorded)


def _trial(raw: dict) -> Trial:
    options = tuple(
        Option(o["image"], tuple(o["patch"]) if o["patch"] is not None else None, float(o["activation"]))
        for o in raw["options"]
    )
    references = {c: tuple(images) for c, images in raw["references"].items()}
    min_references = {c: tuple(images) for c, images in raw.get("min_references", {}).items()}
    return Trial(
        raw["trial_id"],
        raw["unit"],
        int(raw["image_set"]),
        raw["kind"],
        raw["base_image"],
        options,
        int(raw["correct"]),
        references,
        raw.get("activation_map"),
        min_references,
    )


@dataclass(frozen=True, eq=False)
class Manifest:
    """A validated manifest with typed views; `package` is the folder it came from (None when built in memory)."""

    data: dict
    package: Path | None = None

    @classmethod
    def load(cls, package: str | Path, *, check_images: bool = False) -> Manifest:
        """Read and validate a package's manifest; optionally verify every image's sha256."""
        package = Path(package)
        path = package / MANIFEST
        if not path.is_file():
            raise VizprobeError(f"{package} is not a stimulus package (no {MANIFEST}); run `vizprobe build` first")
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise VizprobeError(f"{path} is not valid JSON ({error}); rebuild it with `vizprobe build`") from None
        manifest = cls.from_dict(data, package, where=str(path))
        if check_images:
            for rel, digest in manifest.images.items():
                if sha256(package / rel) != digest:
                    raise VizprobeError(f"image {rel} in {package} does not match its sha256; rebuild the package")
        return manifest

    @classmethod
    def from_dict(cls, data: dict, package: str | Path | None = None, *, where: str = "manifest") -> Manifest:
        """Validate `data` (schema and references between its parts) and wrap it."""
        version = data.get("schema_version") if isinstance(data, dict) else None
        if version != SCHEMA_VERSION:
            raise VizprobeError(
                f"{where} has schema_version {version}; this vizprobe reads {SCHEMA_VERSION}: "
                "rebuild the package with `vizprobe build`"
            )
        validate(data)
        manifest = cls(data, Path(package) if package is not None else None)
        manifest._check_references()
        return manifest

    def _check_references(self) -> None:
        """Every task's trial, practice trial and trial unit exists (the schema cannot say so)."""
        for task in self.tasks.values():
            missing = [t for t in task.trial_ids if t not in self.trials]
            if missing:
                raise VizprobeError(f"task {task.task_id} names unknown trial {missing[0]!r}; rebuild the package")
            foreign = [t for t in task.trial_ids if task.condition not in self.trials[t].references]
            if foreign:
                raise VizprobeError(
                    f"task {task.task_id} names trial {foreign[0]!r}, which has no {task.condition} variant; "
                    "rebuild the package"
                )
        missing = [t for t in self.practice_ids if t not in self.trials]
        if missing:
            raise VizprobeError(f"practice trial {missing[0]!r} is not in the manifest; rebuild the package")
        unknown = {t.unit for t in self.trials.values()} - set(self.units)
        if unknown:
            raise VizprobeError(f"trials name unit {sorted(unknown)[0]!r}, which the manifest does not list")

    # --- plain values ------------------------------------------------------------------------------------
    @property
    def model(self) -> str:
        return self.data["model"]

    @property
    def task(self) -> str:
        """What a participant judges (`vizprobe.tasks`): occlusion (the paper's task) or exemplar."""
        return self.data.get("task", "occlusion")

    @property
    def image_size(self) -> int:
        return int(self.data["image_size"])

    @property
    def settings(self) -> dict:
        return self.data.get("settings", {})

    @property
    def exclusion(self):
        """The exclusion criteria the package was built with (`vizprobe.exclusion.ExclusionCriteria`), or None for a
        package built before they were recorded."""
        given = self.settings.get("exclusion")
        return None if given is None else ExclusionCriteria.from_dict(given)

    @property
    def images(self) -> dict[str, str]:
        """Package-relative image path -> sha256."""
        return self.data["images"]

    @cached_property
    def digest(self) -> str:
        """sha256 of the canonical text: identifies the package (the server stores it)."""
        return hashlib.sha256(dumps(self.data).encode()).hexdigest()

    def dumps(self) -> str:
        return dumps(self.data)

    def path(self, rel: str) -> Path:
        """The file of a package-relative image path."""
        if self.package is None:
            raise VizprobeError("this manifest was not loaded from a package folder; load it with Manifest.load")
        return self.package / rel

    # --- typed views -------------------------------------------------------------------------------------
    @cached_property
    def units(self) -> dict[str, PackageUnit]:
        """Canonical unit name -> unit, in manifest order."""
        return {
            u["unit"]: PackageUnit(
                u["unit"],
                u["layer"],
                int(u["channel"]),
                u.get("label", u["unit"]),
                u.get("role", "main"),
                float(u["activation_std"]) if u.get("activation_std") is not None else None,
            )
            for u in self.data["units"]
        }

    def units_of(self, role: str = "main") -> list[PackageUnit]:
        """The package's units of one role, in manifest order."""
        return [u for u in self.units.values() if u.role == role]

    def trial_gap(self, trial: Trial) -> float | None:
        """How easy a trial is: (more - less activating option) / the unit's standard deviation over the scan, the
        criterion the catch and practice units were picked by; None where the package records no deviation."""
        std = self.units[trial.unit].activation_std
        if not std:
            return None
        more, less = trial.options[trial.correct], trial.options[1 - trial.correct]
        return (more.activation - less.activation) / std

    def layer_of(self, unit: str) -> str:
        """The layer (module path) of one of the package's units."""
        return self.units[unit].layer

    @cached_property
    def trials(self) -> dict[str, Trial]:
        """Trial id -> trial, in manifest order."""
        return {raw["trial_id"]: _trial(raw) for raw in self.data["trials"]}

    def trials_of(self, kinds: Sequence[str] = ("main",)) -> list[Trial]:
        """The trials of the given kinds, in manifest order."""
        return [t for t in self.trials.values() if t.kind in kinds]

    def trials_in(self, condition: str, kinds: Sequence[str] = ("main",)) -> list[Trial]:
        """The trials of the given kinds that a participant of `condition` can be shown, in manifest order
        (a catch trial exists in two variants: one for `none`, one for the conditions with references)."""
        return [t for t in self.trials_of(kinds) if condition in t.references]

    @cached_property
    def tasks(self) -> dict[str, Task]:
        """Task id -> task, in manifest order."""
        return {t["task_id"]: Task(t["task_id"], t["condition"], tuple(t["trial_ids"])) for t in self.data["tasks"]}

    def tasks_of(self, condition: str) -> list[Task]:
        return [t for t in self.tasks.values() if t.condition == condition]

    def task_trials(self, task_id: str) -> list[Trial]:
        return [self.trials[i] for i in self.tasks[task_id].trial_ids]

    @property
    def practice_ids(self) -> list[str]:
        return list(self.data.get("practice_trial_ids", []))

    def practice_trials(self, n: int | None = None) -> list[Trial]:
        """The first `n` practice trials (all by default: the practice pool, the most obvious first)."""
        ids = self.practice_ids if n is None else self.practice_ids[:n]
        return [self.trials[i] for i in ids]

    @property
    def practice_obvious(self) -> int:
        """How many of the pool's first trials are obvious (one of them opens each round); 1 for older packages."""
        return int(self.settings.get("practice_obvious", 1))

    @cached_property
    def conditions(self) -> list[str]:
        """The conditions the package has tasks for, in the paper's order."""
        return ordered_conditions(t.condition for t in self.tasks.values())

    def check_condition(self, condition: str) -> None:
        """Refuse a condition the package was not built with, naming the ones it has."""
        if condition not in self.conditions:
            raise VizprobeError(
                f"the package has no condition {condition!r}; it has {', '.join(self.conditions) or 'none'}"
            )

    def correct_answers(self) -> dict[str, int]:
        """The scorer's key: trial id -> the more activating option (0 left, 1 right)."""
        return {t.trial_id: t.correct for t in self.trials.values()}
