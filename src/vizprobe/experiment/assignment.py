"""Which task a new participant gets: the next free task of the condition with the fewest tasks taken."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from .db import ParticipantSession, SessionStatus, Task, TaskState


def release_abandoned(session: Session, now: datetime, timeout_s: float) -> int:
    """Return to the pool every running task whose session has been silent for longer than `timeout_s`."""
    cutoff = now - timedelta(seconds=timeout_s)
    expired = session.execute(
        update(ParticipantSession)
        .where(ParticipantSession.status == SessionStatus.ACTIVE, ParticipantSession.last_active_at < cutoff)
        .values(status=SessionStatus.EXPIRED)
        .returning(ParticipantSession.id)
    )
    stale_ids = list(expired.scalars())
    if stale_ids:
        session.execute(
            update(Task)
            .where(Task.state == TaskState.RUNNING, Task.session_id.in_(stale_ids))
            .values(state=TaskState.FREE, session_id=None, started_at=None)
        )
    return len(stale_ids)


def taken_per_condition(session: Session) -> dict[str, int]:
    """Completed-or-running tasks per condition (conditions with none count 0)."""
    rows = session.execute(
        select(Task.condition, func.count())
        .where(Task.state.in_((TaskState.RUNNING, TaskState.COMPLETED)))
        .group_by(Task.condition)
    )
    counts = {c: 0 for c in session.scalars(select(Task.condition).distinct())}
    counts.update(dict(rows.all()))
    return counts


def claim_task(session: Session, session_id: str, now: datetime, *, skip_locked: bool) -> Task | None:
    """Mark and return the next task for a new session, or None when every task is taken.

    Conditions are tried in order of fewest completed-or-running tasks (ties: alphabetical); within one,
    the first free task in manifest order. On PostgreSQL the row is taken with FOR UPDATE SKIP LOCKED, so
    concurrent requests never get the same task; SQLite transactions are already serialized.
    """
    counts = taken_per_condition(session)
    for condition in sorted(counts, key=lambda c: (counts[c], c)):
        query = (
            select(Task)
            .where(Task.condition == condition, Task.state == TaskState.FREE)
            .order_by(Task.position)
            .limit(1)
        )
        if skip_locked:
            query = query.with_for_update(skip_locked=True)
        task = session.scalars(query).first()
        if task is not None:
            task.state, task.session_id, task.started_at = TaskState.RUNNING, session_id, now
            return task
    return None
