"""Export the stored responses in the responses format; the database alone suffices (the manifest is stored in it)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from vizprobe.responses import COLUMN_NAMES, validate_responses, write_responses
from vizprobe.stimuli.manifest import Manifest

from .db import Database, ParticipantSession, Response, SessionStatus, task_assignments
from .study import load_study, main_sides, practice_per_round, practice_round, stored_study


def participant_label(pk: int) -> str:
    """Anonymous participant id from the session's order of arrival: p0001, p0002, ..."""
    return f"p{pk:04d}"


def frame_from_session(s: Session, session_id: str | None = None, manifest: Manifest | None = None) -> pd.DataFrame:
    """One row per stored response, practice rows included, in session order then phase, attempt and index
    (only those of `session_id` when given). `manifest`: the stored study's, when the caller holds it already
    (reading it back from the database validates the whole manifest again)."""
    if manifest is None:
        study, manifest = load_study(s)
    else:
        study = stored_study(s)
    pool = manifest.practice_trials()
    stored = json.loads(study.settings_json or "{}")
    per_round = practice_per_round(stored.get("practice"), len(pool))
    sides = stored.get("sides", "balanced")

    def max_side(p: ParticipantSession, phase: str, attempt: int, index: int) -> int:
        if phase == "practice":
            return practice_round(p.id, attempt, pool, per_round, manifest.practice_obvious)[index][1]
        return main_sides(p.id, p.task_id, len(manifest.tasks[p.task_id].trial_ids), sides)[index]

    query = (
        select(Response, ParticipantSession)
        .join(ParticipantSession, ParticipantSession.id == Response.session_id)
        .order_by(ParticipantSession.pk, Response.phase.desc(), Response.attempt, Response.trial_index)
    )
    if session_id is not None:
        query = query.where(ParticipantSession.id == session_id)
    used = task_assignments(s)
    rows = []
    results = list(s.execute(query))
    away: dict[str, list[float]] = {}
    for r, p in results:
        total = away.setdefault(p.id, [0, 0.0])
        total[0] += r.away_count or 0
        total[1] += r.away_ms or 0.0
    for r, p in results:
        trial = manifest.trials[r.trial_id]
        rows.append(
            {
                "participant_id": participant_label(p.pk),
                "condition": p.condition,
                "task_id": p.task_id,
                "trial_id": r.trial_id,
                "unit": trial.unit,
                "layer": manifest.layer_of(trial.unit),
                "image_set": trial.image_set,
                "is_catch": int(trial.kind == "catch"),
                "is_practice": int(r.phase == "practice"),
                "choice": r.choice,
                "max_side": max_side(p, r.phase, r.attempt, r.trial_index),
                "correct": r.correct,
                "confidence": r.confidence,
                "rt_ms": r.rt_ms,
                "instruction_time_s": p.instruction_time_s,
                "total_time_s": p.total_time_s,
                "practice_attempts": p.practice_attempts,
                "expertise": p.expertise,
                "session_status": SessionStatus.EXPORTED.get(p.status, p.status),
                "task_assignments": used.get(p.task_id, 0),
                "away_count": r.away_count,
                "away_ms": r.away_ms,
                "session_away_count": away[p.id][0] if r.away_count is not None else None,
                "session_away_ms": away[p.id][1] if r.away_ms is not None else None,
            }
        )
    return validate_responses(pd.DataFrame(rows, columns=list(COLUMN_NAMES)))


def export_frame(db_url: str) -> pd.DataFrame:
    """The responses table of an experiment database (SQLite path/URL or postgresql://...)."""
    db = Database(db_url, create=False)
    try:
        with db.tx() as s:
            return frame_from_session(s)
    finally:
        db.dispose()


def export_responses(db_url: str, out_csv: str | Path) -> Path:
    """Write the responses CSV atomically; returns its path."""
    return write_responses(export_frame(db_url), out_csv)
