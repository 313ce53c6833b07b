"""The study as the server sees it: the manifest's trials, tasks and practice trials, stored once in the database."""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from functools import cached_property
from urllib.parse import quote

from sqlalchemy import select
from sqlalchemy.orm import Session

from vizprobe.errors import VizprobeError
from vizprobe.stimuli.manifest import dumps

from .db import Study, Task


@dataclass(frozen=True)
class StudyManifest:
    """Read-only views of a manifest that the handlers and the export need."""

    manifest: dict

    @cached_property
    def trials(self) -> dict[str, dict]:
        return {t["trial_id"]: t for t in self.manifest["trials"]}

    @cached_property
    def tasks(self) -> dict[str, dict]:
        return {t["task_id"]: t for t in self.manifest["tasks"]}

    @cached_property
    def practice_ids(self) -> list[str]:
        return list(self.manifest.get("practice_trial_ids", []))

    @cached_property
    def layers(self) -> dict[str, str]:
        """Unit name -> layer path."""
        return {u["unit"]: u["layer"] for u in self.manifest["units"]}

    @cached_property
    def images(self) -> frozenset[str]:
        return frozenset(self.manifest["images"])

    def task_trials(self, task_id: str) -> list[dict]:
        return [self.trials[i] for i in self.tasks[task_id]["trial_ids"]]

    def practice_trials(self, n: int) -> list[dict]:
        return [self.trials[i] for i in self.practice_ids[:n]]


def image_url(path: str) -> str:
    return "/stimuli/" + quote(path)


def trial_view(trial: dict, index: int, condition: str, *, practice: bool) -> dict:
    """A trial as the page gets it; the right answer only for practice trials (for feedback)."""
    view = {
        "index": index,
        "trial_id": trial["trial_id"],
        "kind": "practice" if practice else trial["kind"],
        "references": [image_url(p) for p in trial["references"].get(condition, [])],
        "query": image_url(trial["base_image"]),
        "options": [image_url(o["image"]) for o in trial["options"]],
    }
    if practice:
        view["correct"] = trial["correct"]
    return view


def manifest_digest(manifest: dict) -> str:
    return hashlib.sha256(dumps(manifest).encode()).hexdigest()


def open_study(session: Session, manifest: dict, settings: dict, completion_code: str | None) -> Study:
    """Create the study and its tasks on first start; on later starts check it is the same package."""
    digest = manifest_digest(manifest)
    study = session.get(Study, 1)
    if study is None:
        study = Study(
            id=1,
            manifest_sha256=digest,
            manifest_json=dumps(manifest),
            completion_code=completion_code or secrets.token_hex(4).upper(),
        )
        session.add(study)
        for position, task in enumerate(manifest["tasks"]):
            session.add(Task(task_id=task["task_id"], condition=task["condition"], position=position))
    elif study.manifest_sha256 != digest:
        raise VizprobeError("this database holds a study of another stimulus package; pass a new --db for this package")
    if completion_code:
        study.completion_code = completion_code
    study.settings_json = json.dumps(settings, sort_keys=True)
    return study


def load_study(session: Session) -> tuple[Study, StudyManifest]:
    """The stored study and its manifest (what the export needs: the database alone)."""
    study = session.scalars(select(Study).where(Study.id == 1)).one_or_none()
    if study is None:
        raise VizprobeError("the database holds no study yet; start `vizprobe serve` on it first")
    return study, StudyManifest(json.loads(study.manifest_json))
