"""What the API does, without HTTP: sessions, events, responses, completion and progress, one transaction each."""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import asdict
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from vizprobe.errors import VizprobeError
from vizprobe.stimuli.manifest import Manifest, Trial

from .assignment import claim_task, release_abandoned
from .db import (
    Database,
    ParticipantSession,
    Response,
    SessionStatus,
    Study,
    Task,
    TaskState,
    task_assignments,
    utcnow,
)
from .export import frame_from_session
from .schemas import SESSION_ID_PATTERN, WORKER_ID_KEYS, CompleteIn, EventIn, ResponseIn, SessionIn
from .secret import fingerprint, keyed_hash, load_or_create_secret, read_secret
from .settings import MTURK_PREVIEW, PROLIFIC_DONE, SUBMISSION_ID_KEY, WORKER_ID_KEY, Settings
from .study import main_sides, open_study, practice_per_round, practice_round, trial_view


class ApiError(Exception):
    """A refusal with an HTTP status, a machine-readable code and a one-line message (nothing was stored)."""

    def __init__(self, status: int, error: str, message: str, **extra: object) -> None:
        super().__init__(message)
        self.status, self.error, self.message, self.extra = status, error, message, extra


class Experiment:
    """The running experiment: the study's database, its package's manifest, the settings and the secret for
    worker-id HMACs."""

    def __init__(
        self, db: Database, manifest: Manifest, settings: Settings, secret_file: Path, change_settings: bool = False
    ) -> None:
        settings = settings.checked(len(manifest.practice_ids))
        self.db, self.settings, self.manifest = db, settings, manifest
        self.exclusion = manifest.exclusion or _older_package_criteria()
        if "practice_obvious" not in manifest.settings:
            _older_package_practice(len(manifest.practice_ids))
        stored = {k: v for k, v in asdict(settings).items() if k != "completion_code"}
        with db.tx() as s:
            existing = s.get(Study, 1)
            self.secret = read_secret(secret_file) if existing is not None else load_or_create_secret(secret_file)
            study = open_study(s, manifest, stored, settings.completion_code, allow_change=change_settings)
            if study.secret_fingerprint is None:
                study.secret_fingerprint = fingerprint(self.secret)
            elif study.secret_fingerprint != fingerprint(self.secret):
                raise VizprobeError(
                    f"the secret file {secret_file} is not the one this study was started with (its worker ids "
                    "would not be recognised); restore the study's own secret file or pass it with --secret-file"
                )
            self.completion_code = study.completion_code

    # --- helpers -----------------------------------------------------------------------------------------
    def _session(self, s: Session, sid: str) -> ParticipantSession:
        """The session row (locked on PostgreSQL); 404 when unknown, 409 when its task was handed to someone else."""
        if not re.fullmatch(SESSION_ID_PATTERN, sid):  # never send a malformed id (a NUL byte, say) to the database
            raise ApiError(404, "unknown_session", "no such session; reload the page to start again")
        query = select(ParticipantSession).where(ParticipantSession.id == sid)
        if self.db.is_postgres:
            query = query.with_for_update()
        participant = s.scalars(query).one_or_none()
        if participant is None:
            raise ApiError(404, "unknown_session", "no such session; reload the page to start again")
        if participant.status == SessionStatus.EXPIRED:
            raise ApiError(409, "session_expired", "this session timed out and its task went to someone else")
        if participant.status == SessionStatus.RETURNED:
            raise ApiError(409, "session_returned", "this session was stopped by its participant")
        return participant

    def _answered(self, s: Session, sid: str) -> set[int]:
        rows = s.scalars(select(Response.trial_index).where(Response.session_id == sid, Response.phase == "main"))
        return set(rows)

    def _practice_answers(self, s: Session, p: ParticipantSession) -> list[dict]:
        """The stored answers of the latest practice round, so that a reload can finish that round."""
        rows = s.execute(
            select(Response.trial_index, Response.correct)
            .where(Response.session_id == p.id, Response.phase == "practice", Response.attempt == p.practice_attempts)
            .order_by(Response.trial_index)
        )
        return [{"trial_index": index, "correct": correct} for index, correct in rows]

    def _practice_trials(self, p: ParticipantSession) -> list[Trial]:
        """The practice pool of a session: none with `--practice 0`, or in condition `none` unless
        `practice_in_none`."""
        if self.settings.practice == 0 or (p.condition == "none" and not self.settings.practice_in_none):
            return []
        return self.manifest.practice_trials()

    def _round(self, p: ParticipantSession, attempt: int) -> list[tuple[Trial, int]]:
        """Practice round `attempt` of a session (`vizprobe.experiment.study.practice_round`)."""
        per_round = practice_per_round(self.settings.practice, len(self.manifest.practice_ids))
        return practice_round(p.id, attempt, self._practice_trials(p), per_round, self.manifest.practice_obvious)

    def _example(self, condition: str) -> dict | None:
        """The trial the instruction pages illustrate (and an MTurk preview shows): the practice pool's most obvious
        trial with the condition's references, its maximal option where the session shows it; None when the
        package has no practice trials (the pages then go without pictures). Never a main trial: a preview must not
        show one."""
        pool = self.manifest.practice_trials(1)
        if not pool:
            return None
        return trial_view(pool[0], 0, condition, pool[0].correct, practice=True)

    def _redirect(self, code: str) -> str | None:
        return PROLIFIC_DONE + quote(code) if self.settings.platform == "prolific" else None

    def state(self, s: Session, p: ParticipantSession) -> dict:
        """The SessionState of docs/experiment-api.md."""
        trials = self.manifest.task_trials(p.task_id)
        practice = self._practice_trials(p)
        main_sides_ = main_sides(p.id, p.task_id, len(trials), self.settings.sides)
        rounds = (
            [
                [
                    trial_view(t, i, p.condition, side, practice=True)
                    for i, (t, side) in enumerate(self._round(p, attempt))
                ]
                for attempt in range(1, self.settings.practice_attempts + 1)
            ]
            if practice
            else []
        )
        answered = self._answered(s, p.id)
        next_index = next((i for i in range(len(trials)) if i not in answered), len(trials))
        done = p.status in SessionStatus.FINISHED
        return {
            "session_id": p.id,
            "condition": p.condition,
            "task_id": p.task_id,
            "expertise": p.expertise,
            "consented": p.consented_at is not None,
            "instructions_done": p.instruction_time_s is not None,
            "practice_passed": p.practice_passed,
            "practice_attempts": p.practice_attempts,
            "practice_answers": self._practice_answers(s, p),
            "practice": rounds[0] if rounds else [],
            "practice_rounds": rounds,
            "trials": [trial_view(t, i, p.condition, main_sides_[i], practice=False) for i, t in enumerate(trials)],
            "example": self._example(p.condition),
            "next_trial_index": next_index,
            "completed": done,
            "completion_code": p.completion_code if done else None,
            "redirect_url": self._redirect(p.completion_code) if done and p.completion_code else None,
        }

    # --- API ---------------------------------------------------------------------------------------------
    def config(self) -> dict:
        return {
            "platform": self.settings.platform,
            "practice_attempts": self.settings.practice_attempts,
            "n_practice": self.settings.practice,
            "texts": {"time_sentence": time_sentence(self.exclusion)} | self.settings.texts,
            "task": self.manifest.task,
            "continue_ms": self.settings.continue_ms,
        }

    def start(self, body: SessionIn) -> dict:
        """Resume a session (reload or returning worker) or start one on the next task; retried once on a race."""
        try:
            return self._start(body)
        except IntegrityError:  # the same worker started twice at once: the other request's session wins
            return self._start(body)

    def _admit(self, body: SessionIn) -> None:
        """Before a new session: refuse an MTurk preview (it must take no task) and, on a crowd platform, a visitor
        without its worker id."""
        if body.platform_ids.get("assignmentId") == MTURK_PREVIEW:
            raise ApiError(403, "preview", "this is a preview of the HIT: accept it to start the study")
        key = WORKER_ID_KEY.get(self.settings.platform)
        if key and key not in body.platform_ids:
            raise ApiError(
                403,
                "missing_worker_id",
                f"this study runs on {self.settings.platform}: open it from there (its link carries {key})",
            )

    def preview(self) -> dict:
        """What an MTurk preview shows: the instructions' example trial in a condition with references (the first
        task's condition otherwise); none when the package has no practice trials."""
        task = next(
            (t for t in self.manifest.tasks.values() if t.condition != "none"), next(iter(self.manifest.tasks.values()))
        )
        return {"condition": task.condition, "example": self._example(task.condition)}

    def _start(self, body: SessionIn) -> dict:
        worker = next((body.platform_ids[k] for k in WORKER_ID_KEYS if k in body.platform_ids), None)
        worker_hmac = keyed_hash(self.secret, worker) if worker else None
        now = utcnow()
        with self.db.tx() as s:
            if body.resume:
                p = s.scalars(select(ParticipantSession).where(ParticipantSession.id == body.resume)).one_or_none()
                if p is not None and (worker_hmac is None or p.worker_hmac in (None, worker_hmac)):
                    return self._reopen(s, p, now)
            if worker_hmac is not None:
                p = s.scalars(
                    select(ParticipantSession).where(ParticipantSession.worker_hmac == worker_hmac)
                ).one_or_none()
                if p is not None and self._same_submission(p, body):
                    # The platform's own ids of this submission (MTurk's assignment, Prolific's session) are
                    # known only to the worker and the researcher: a reload without the page's storage resumes.
                    return self._reopen(s, p, now)
                if p is not None:
                    if p.status != SessionStatus.ACTIVE:
                        raise ApiError(403, "already_participated", "you have already taken part in this study")
                    # The worker id alone is no password: reopening a session takes its id (page or cookie) or
                    # the platform's id of the submission.
                    raise ApiError(
                        409, "session_elsewhere", "this id has a session open in another browser; please continue there"
                    )
            self._admit(body)
            release_abandoned(s, now, self.settings.task_timeout_s)
            sid = secrets.token_urlsafe(18)
            task = claim_task(s, sid, now, skip_locked=self.db.is_postgres)
            if task is None:
                raise ApiError(503, "no_tasks", "all tasks of this study are taken; thank you for your interest")
            ids = {k: keyed_hash(self.secret, v) for k, v in sorted(body.platform_ids.items())}
            p = ParticipantSession(
                id=sid,
                worker_hmac=worker_hmac,
                platform=self.settings.platform,
                platform_ids_hmac=json.dumps(ids),
                condition=task.condition,
                task_id=task.task_id,
                expertise="expert" if self.settings.expert else "lay",
                started_at=now,
                last_active_at=now,
            )
            s.add(p)
            s.flush()
            return self.state(s, p)

    def submission(self, body: SessionIn) -> dict:
        """Where the session of this submission (worker id and the platform's submission id) stands; the
        completion code once it is finished. Nothing is started or changed."""
        worker = next((body.platform_ids[k] for k in WORKER_ID_KEYS if k in body.platform_ids), None)
        if not worker:
            raise ApiError(422, "missing_worker_id", "the platform's worker id is needed")
        with self.db.tx() as s:
            p = s.scalars(
                select(ParticipantSession).where(ParticipantSession.worker_hmac == keyed_hash(self.secret, worker))
            ).one_or_none()
            if p is None or not self._same_submission(p, body):
                return {"status": "none"}
            if p.status in SessionStatus.FINISHED:
                return {"status": "finished", "completion_code": p.completion_code}
            return {"status": "closed" if p.status in SessionStatus.CLOSED else "running"}

    def _reopen(self, s: Session, p: ParticipantSession, now) -> dict:
        """A returning participant's session as it stands; refused once it timed out or was stopped."""
        if p.status == SessionStatus.EXPIRED:
            raise ApiError(403, "session_expired", "this session timed out; thank you for your interest")
        if p.status == SessionStatus.RETURNED:
            raise ApiError(403, "session_returned", "you stopped this study; thank you for your time")
        p.last_active_at = now
        return self.state(s, p)

    def _same_submission(self, p: ParticipantSession, body: SessionIn) -> bool:
        """Whether the request carries the platform's id of this session's submission (MTurk's assignmentId,
        Prolific's SESSION_ID), as stored (keyed) when the session started."""
        key = SUBMISSION_ID_KEY.get(p.platform)
        value = body.platform_ids.get(key) if key else None
        if not value or value == MTURK_PREVIEW:
            return False
        return json.loads(p.platform_ids_hmac or "{}").get(key) == keyed_hash(self.secret, value)

    def event(self, sid: str, body: EventIn) -> dict:
        """Record consent or the instructions' reading time; the first value is kept."""
        with self.db.tx() as s:
            p = self._session(s, sid)
            if body.event == "consent" and p.consented_at is None:
                p.consented_at = utcnow()
            elif body.event == "instructions" and p.instruction_time_s is None:
                p.instruction_time_s = body.duration_s
            p.last_active_at = utcnow()
        return {"ok": True}

    def _trial(self, p: ParticipantSession, body: ResponseIn) -> tuple[Trial, int]:
        """The manifest trial a response answers and the side its maximal option was shown on; 422 when index or
        attempt is out of range."""
        if body.phase == "practice":
            trials, attempts = [t for t, _ in self._round(p, 1)], (1, self.settings.practice_attempts)
        else:
            trials, attempts = self.manifest.task_trials(p.task_id), (0, 0)
        if body.trial_index >= len(trials):
            raise ApiError(422, "out_of_range", f"{body.phase} trial_index must be below {len(trials)}")
        if not attempts[0] <= body.attempt <= attempts[1]:
            raise ApiError(422, "out_of_range", f"{body.phase} attempt must be in {attempts[0]}..{attempts[1]}")
        if body.phase == "practice":
            return self._round(p, body.attempt)[body.trial_index]
        return trials[body.trial_index], main_sides(p.id, p.task_id, len(trials), self.settings.sides)[body.trial_index]

    def _check_flow(self, p: ParticipantSession, body: ResponseIn) -> None:
        """The page's order, enforced: consent and instructions before any trial, practice (where the session
        has it) passed or its rounds used up before main trials; 409 `out_of_order` otherwise."""
        if p.consented_at is None or p.instruction_time_s is None:
            raise ApiError(409, "out_of_order", "trials come after consent and instructions")
        practice_open = not p.practice_passed and p.practice_attempts < self.settings.practice_attempts
        if body.phase == "main" and self._practice_trials(p) and practice_open:
            raise ApiError(409, "out_of_order", "main trials come after the practice")
        if body.phase == "practice" and body.attempt > p.practice_attempts + 1:
            raise ApiError(409, "out_of_order", f"practice round {body.attempt} before round {p.practice_attempts + 1}")

    def respond(self, sid: str, body: ResponseIn) -> dict:
        """Store one answer idempotently: same key and answer again is a duplicate; another answer is a conflict."""
        with self.db.tx() as s:
            p = self._session(s, sid)
            trial, max_side = self._trial(p, body)
            self._check_flow(p, body)
            key = (Response.session_id == sid, Response.phase == body.phase, Response.attempt == body.attempt)
            old = s.scalars(select(Response).where(*key, Response.trial_index == body.trial_index)).one_or_none()
            if old is not None and (old.choice, old.confidence) != (body.choice, body.confidence):
                raise ApiError(409, "conflicting_duplicate", "this trial already has a different answer")
            correct = old.correct if old is not None else int(body.choice == max_side)
            if old is None:
                s.add(Response(session_id=sid, trial_id=trial.trial_id, correct=correct, **body.model_dump()))
                s.flush()
                if body.phase == "practice":
                    p.practice_attempts = max(p.practice_attempts, body.attempt)
                    right = s.scalar(select(func.count()).where(*key, Response.correct == 1))
                    p.practice_passed = p.practice_passed or right == len(self._round(p, body.attempt))
            p.last_active_at = utcnow()
            result = {"stored": True, "duplicate": old is not None}
            if body.phase == "practice":
                result["correct"] = correct
            answered = self._answered(s, sid)
            n = len(self.manifest.task_trials(p.task_id))
            result["next_trial_index"] = next((i for i in range(n) if i not in answered), n)
            return result

    def complete(self, sid: str, body: CompleteIn) -> dict:
        """Close the session and hand out the completion code, only when every main and catch answer is stored."""
        with self.db.tx() as s:
            p = self._session(s, sid)
            if p.status not in SessionStatus.FINISHED:
                answered = self._answered(s, sid)
                missing = [i for i in range(len(self.manifest.task_trials(p.task_id))) if i not in answered]
                if missing:
                    raise ApiError(409, "incomplete", f"{len(missing)} trial(s) have no stored answer", missing=missing)
                now = utcnow()
                p.status, p.completed_at, p.last_active_at = SessionStatus.COMPLETED, now, now
                p.total_time_s, p.debrief_json = body.total_time_s, json.dumps(body.debrief)
                p.completion_code = self.completion_code
                task = s.get(Task, p.task_id)
                if self.settings.repost_failed and self._fails_exclusion(s, p):
                    p.status = SessionStatus.FAILED
                    if task_assignments(s, task.task_id).get(task.task_id, 0) < self.settings.max_assignments:
                        task.state, task.session_id, task.started_at = TaskState.FREE, None, None  # posted again
                    else:
                        task.state, task.completed_at = TaskState.EXHAUSTED, now
                else:
                    task.state, task.completed_at = TaskState.COMPLETED, now
            return {"completion_code": p.completion_code, "redirect_url": self._redirect(p.completion_code)}

    def withdraw(self, sid: str) -> dict:
        """The participant stops (the page's "stop" button): status `returned`, the task free for someone else at
        once; the answers given so far stay stored (exported, left out of `analyze`). Repeating it is harmless."""
        with self.db.tx() as s:
            try:
                p = self._session(s, sid)
            except ApiError as refused:
                if refused.error == "session_returned":
                    return {"ok": True}
                raise
            if p.status in SessionStatus.FINISHED:
                raise ApiError(409, "already_completed", "this session is complete; there is nothing to stop")
            p.status, p.last_active_at = SessionStatus.RETURNED, utcnow()
            task = s.get(Task, p.task_id)
            if task.state == TaskState.RUNNING and task.session_id == sid:
                task.state, task.session_id, task.started_at = TaskState.FREE, None, None
        return {"ok": True}

    def _fails_exclusion(self, s: Session, p: ParticipantSession) -> bool:
        """Whether the finished session fails the package's exclusion criteria (the rule `analyze` applies)."""
        from vizprobe.exclusion import apply_exclusion

        s.flush()
        frame = frame_from_session(s, p.id, self.manifest)
        return bool(len(frame)) and bool(apply_exclusion(frame, self.exclusion).excluded)

    def progress(self) -> dict:
        """Tasks per condition and state, participants per condition (`failed`: finished sessions whose task was
        posted again), and the number of stored responses."""
        with self.db.tx() as s:
            out: dict[str, dict[str, int]] = {}
            for condition, state, n in s.execute(
                select(Task.condition, Task.state, func.count()).group_by(Task.condition, Task.state)
            ):
                row = out.setdefault(
                    condition,
                    {
                        "tasks": 0,
                        "completed": 0,
                        "running": 0,
                        "free": 0,
                        "exhausted": 0,
                        "participants": 0,
                        "failed": 0,
                        "expired": 0,
                        "returned": 0,
                        "assignments": 0,
                        "away_trials": 0,
                    },
                )
                row["tasks"] += n
                row[state] += n
            for condition, n in s.execute(
                select(ParticipantSession.condition, func.count()).group_by(ParticipantSession.condition)
            ):
                out[condition]["participants"] = n
            by_status = select(ParticipantSession.condition, ParticipantSession.status, func.count()).group_by(
                ParticipantSession.condition, ParticipantSession.status
            )
            for condition, status, n in s.execute(by_status):
                if status in (SessionStatus.FAILED, *SessionStatus.CLOSED):
                    out[condition][status] = n
                if status in SessionStatus.FINISHED:
                    out[condition]["assignments"] += n  # finished sessions: what the --max-assignments cap counts
            away = (
                select(ParticipantSession.condition, func.count())
                .join(Response, Response.session_id == ParticipantSession.id)
                .where(Response.phase == "main", Response.away_count > 0)
                .group_by(ParticipantSession.condition)
            )
            for condition, n in s.execute(away):
                out[condition]["away_trials"] = n
            responses = s.scalar(select(func.count()).select_from(Response))
            study = s.get(Study, 1)
            return {"conditions": out, "responses": responses, "study_created": study.created_at.isoformat() + "Z"}


def time_sentence(criteria) -> str:
    """What the consent page says about the time: the longest session the exclusion criteria keep (in any
    condition), so the page never promises more than the analysis allows."""
    limits = [criteria.max_total_time_s] + [
        float(c["max_total_time_s"]) for c in criteria.per_condition.values() if "max_total_time_s" in c
    ]
    return f"It takes up to {min(limits) / 60:.3g} minutes."


def _older_package_practice(pool: int) -> None:
    """A package built before the practice pool: served with its own practice trials, and the log says so."""
    import logging

    logging.getLogger("vizprobe.serve").warning(
        "the stimulus package predates the authors' practice pool (built by an older vizprobe): each round draws "
        f"from its {pool} practice trial(s), the first of them the obvious one; rebuild it for a pool of 10 "
        "(1 obvious of 3 + 3 others per round)"
    )


def _older_package_criteria():
    """A package built before its exclusion criteria were recorded is re-posted by the default protocol's."""
    import logging

    from vizprobe.protocol import get_protocol

    logging.getLogger("vizprobe.serve").warning(
        "the stimulus package records no exclusion criteria (built by an older vizprobe): re-posting by the default "
        "protocol's; rebuild it to record its own"
    )
    return get_protocol().exclusion
