"""The study as the server sees it: the package's manifest, stored once in the database; trials for the page."""

from __future__ import annotations

import hashlib
import json
import secrets
from functools import lru_cache
from urllib.parse import quote

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from vizprobe.errors import VizprobeError
from vizprobe.stimuli.manifest import Manifest, Trial
from vizprobe.stimuli.sides import as_shown, max_sides, task_coin_sides

from .db import ParticipantSession, Study, Task, utcnow
from .settings import PRACTICE_PER_ROUND


def image_url(path: str) -> str:
    return "/stimuli/" + quote(path)


@lru_cache(maxsize=4096)
def session_sides(session_id: str, phase: str, n: int) -> tuple[int, ...]:
    """The side of the maximal option in each of a session's `n` trials of `phase` (balanced, see stimuli.sides);
    cached, since every answer and every exported row asks for it again."""
    return tuple(max_sides(f"{session_id}:{phase}", n))


def main_sides(session_id: str, task_id: str, n: int, sides: str = "balanced") -> tuple[int, ...]:
    """The side of the maximal option in each main trial of a session: balanced per session (vizprobe), or the
    authors' coin per trial seeded by the task (`vizprobe serve --sides authors`)."""
    if sides == "authors":
        return tuple(task_coin_sides(task_id, n))
    return session_sides(session_id, "main", n)


def practice_per_round(given: int | None, pool: int) -> int:
    """Trials per practice round: `--practice N`, else the authors' 4, never more than the pool holds."""
    return min(PRACTICE_PER_ROUND if given is None else given, pool)


def practice_round(
    session_id: str, attempt: int, pool: list[Trial], per_round: int, obvious: int = 1
) -> list[tuple[Trial, int]]:
    """Round `attempt` of a session's practice as (trial, side of its maximal option), drawn anew each round as the
    authors did (mturk/cf/task.js): one of the pool's `obvious` first trials (the largest gaps) first, then
    `per_round - 1` of the non-obvious others in a drawn order (the other obvious ones only where the non-obvious
    are too few), with sides drawn for this round; seeded by the session and the round, so a reload shows the
    same round. A participant who failed cannot pass the next round by remembering it."""
    per_round = min(per_round, len(pool))
    if per_round == 0:
        return []
    digest = hashlib.sha256(f"{session_id}:practice:{attempt}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    n_obvious = max(1, min(obvious, len(pool)))
    first = int(rng.integers(n_obvious))
    non_obvious = list(range(n_obvious, len(pool)))
    spare = [i for i in range(n_obvious) if i != first]
    others = [non_obvious[int(i)] for i in rng.permutation(len(non_obvious))]
    others = (others + [spare[int(i)] for i in rng.permutation(len(spare))])[: per_round - 1]
    order = [pool[first], *(pool[i] for i in others)]
    return list(zip(order, session_sides(session_id, f"practice:{attempt}", len(order)), strict=True))


def trial_view(trial: Trial, index: int, condition: str, max_side: int, *, practice: bool) -> dict:
    """A trial as the page gets it (a `TrialOut`), its options on this participant's sides; the right answer
    only for practice trials (for feedback)."""
    view = {
        "index": index,
        "trial_id": trial.trial_id,
        "kind": "practice" if practice else trial.kind,
        "references": [image_url(p) for p in trial.references_for(condition)],
        "query": image_url(trial.base_image) if trial.base_image else "",
        "options": [image_url(o.image) for o in as_shown(trial.options, trial.correct, max_side)],
    }
    if trial.min_references:
        view["min_references"] = [image_url(p) for p in trial.min_references_for(condition)]
    if practice:
        view["correct"] = max_side
    return view


def open_study(
    session: Session, manifest: Manifest, settings: dict, completion_code: str | None, allow_change: bool = False
) -> Study:
    """Create the study and its tasks on first start; on later starts check it is the same package."""
    digest = manifest.digest
    study = session.get(Study, 1)
    if study is None:
        study = Study(
            id=1,
            manifest_sha256=digest,
            manifest_json=manifest.dumps(),
            completion_code=completion_code or secrets.token_hex(4).upper(),
        )
        session.add(study)
        for position, task in enumerate(manifest.tasks.values()):
            session.add(Task(task_id=task.task_id, condition=task.condition, position=position))
    elif study.manifest_sha256 != digest:
        raise VizprobeError("this database holds a study of another stimulus package; pass a new --db for this package")
    old = json.loads(study.settings_json or "{}")
    changes = _changes(session, study, old, settings, completion_code)
    if changes and not allow_change:
        first, (was, now) = next(iter(changes.items()))
        raise VizprobeError(
            f"{first} was {was!r} and would become {now!r}, but this study has participants already; changing it "
            "mid-study makes sessions differ: pass --change-settings to do it anyway (the change is recorded)"
        )
    history = old.get("changes", [])
    if changes:
        history = [*history, {"at": utcnow().isoformat() + "Z", "changed": {k: list(v) for k, v in changes.items()}}]
    if completion_code:
        study.completion_code = completion_code
    study.settings_json = json.dumps(settings | ({"changes": history} if history else {}), sort_keys=True)
    return study


# Settings whose change would make participants of one study differ (texts and the timeout may change).
GUARDED = (
    "platform",
    "practice",
    "practice_attempts",
    "practice_in_none",
    "expert",
    "repost_failed",
    "max_assignments",
    "continue_ms",
    "sides",
)


def _changes(session: Session, study: Study, old: dict, new: dict, completion_code: str | None) -> dict:
    """Guarded settings that differ from the stored ones, once the study has sessions: name -> (old, new)."""
    if session.scalar(select(func.count()).select_from(ParticipantSession)) == 0:
        return {}
    changes = {k: (old[k], new[k]) for k in GUARDED if k in old and k in new and old[k] != new[k]}
    if completion_code and completion_code != study.completion_code:
        changes["completion_code"] = (study.completion_code, completion_code)
    return changes


def stored_study(session: Session) -> Study:
    """The database's study row; a one-line error when `vizprobe serve` never ran on it."""
    study = session.scalars(select(Study).where(Study.id == 1)).one_or_none()
    if study is None:
        raise VizprobeError("the database holds no study yet; start `vizprobe serve` on it first")
    return study


def load_study(session: Session) -> tuple[Study, Manifest]:
    """The stored study and its manifest (what the export needs: the database alone)."""
    study = stored_study(session)
    return study, Manifest.from_dict(json.loads(study.manifest_json), where="the stored study")
