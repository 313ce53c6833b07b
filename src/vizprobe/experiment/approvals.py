"""`vizprobe approvals`: which platform submissions to approve, from the platform's own export.

vizprobe stores worker ids only as HMACs, so it cannot list who took part; but given the platform's list of
submissions (worker ids in clear, from the researcher's platform account) it can key each id with the study's
secret and find the session. Decisions: `approve` (finished: every trial answered; participants who failed the
exclusion criteria are paid too, as platforms require, and are only left out of the analysis), `reject` with a
reason (the session never finished), `returned` (the participant stopped with the page's
stop button: ask them to return the submission), `unknown` (no session with this id: check the submission by hand).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from sqlalchemy import func, select

from vizprobe.errors import VizprobeError
from vizprobe.files import atomic_write_text

from .db import Database, ParticipantSession, Response, SessionStatus
from .secret import default_secret_file, fingerprint, keyed_hash, read_secret
from .study import load_study

# The column holding the worker id in each platform's export of submissions (the first one present is used).
WORKER_COLUMNS = {
    "prolific": ("Participant id", "Participant ID", "participant_id", "PROLIFIC_PID"),
    "mturk": ("WorkerId", "workerId", "Worker ID"),
}


def _worker_column(frame: pd.DataFrame, platform: str, path: Path) -> str:
    if platform not in WORKER_COLUMNS:
        raise VizprobeError(f"--platform {platform!r}: approvals exist for {', '.join(WORKER_COLUMNS)}")
    found = next((c for c in WORKER_COLUMNS[platform] if c in frame.columns), None)
    if found is None:
        raise VizprobeError(
            f"{path} has no worker id column for {platform} (looked for {', '.join(WORKER_COLUMNS[platform])}; "
            f"it has {', '.join(map(str, frame.columns[:8]))}); export the submissions from {platform} again"
        )
    return found


def decide(db_url: str, submissions: str | Path, platform: str, secret_file: str | Path | None = None) -> pd.DataFrame:
    """The submissions file with three columns added: `decision`, `reason` and `session_status`."""
    path = Path(submissions)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as error:
        raise VizprobeError(f"cannot read the submissions file {path}: {str(error).splitlines()[0]}") from None
    column = _worker_column(frame, platform, path)
    db = Database(db_url, create=False)
    try:
        secret = study_secret(db, secret_file)
        with db.tx() as s:
            rows = worker_decisions(s, secret, list(frame[column]))
    finally:
        db.dispose()
    return frame.assign(decision=[r[0] for r in rows], reason=[r[1] for r in rows], session_status=[r[2] for r in rows])


def study_secret(db: Database, secret_file: str | Path | None) -> bytes:
    """The study's HMAC secret (from `secret_file` or where `vizprobe serve` keeps it), checked against the study."""
    secret = read_secret(secret_file or default_secret_file(db.path, db.url))
    with db.tx() as s:
        study, _ = load_study(s)
    if study.secret_fingerprint not in (None, fingerprint(secret)):
        raise VizprobeError("the secret file is not this study's; pass the study's own with --secret-file")
    return secret


def worker_decisions(s, secret: bytes, worker_ids: list[str]) -> list[tuple[str, str, str]]:
    """(decision, reason, session status) for each platform worker id, by the rule above."""
    _, manifest = load_study(s)
    keyed = {keyed_hash(secret, w) for w in worker_ids if w.strip()}
    wanted = select(ParticipantSession).where(ParticipantSession.worker_hmac.in_(keyed))
    sessions = {p.worker_hmac: p for p in s.scalars(wanted)}  # only these workers' sessions, not every one
    per_session = select(Response.session_id, func.count()).where(
        Response.phase == "main", Response.session_id.in_([p.id for p in sessions.values()])
    )
    answered = dict(s.execute(per_session.group_by(Response.session_id)).all())
    return [
        _decision(sessions.get(keyed_hash(secret, w)) if w.strip() else None, answered, manifest) for w in worker_ids
    ]


def _decision(p: ParticipantSession | None, answered: dict, manifest) -> tuple[str, str, str]:
    if p is None:
        return "unknown", "no session of this study has this worker id", ""
    status = SessionStatus.EXPORTED.get(p.status, p.status)
    total = len(manifest.tasks[p.task_id].trial_ids)
    if p.status == SessionStatus.COMPLETED:
        return "approve", "finished", status
    if p.status == SessionStatus.FAILED:
        return "approve", "finished; failed the exclusion criteria (not analysed, task posted again)", status
    done = answered.get(p.id, 0)
    if p.status == SessionStatus.RETURNED:
        ask = "ask the participant to return the submission on the platform (no completion code was shown)"
        return "returned", f"stopped with the page's stop button after {done} of {total} trials: {ask}", status
    why = "timed out" if p.status == SessionStatus.EXPIRED else "still running"
    return "reject", f"did not finish: {done} of {total} trials answered, {why}, no completion code shown", status


def write_decisions(frame: pd.DataFrame, out: str | Path) -> Path:
    """Write the decisions CSV atomically."""
    atomic_write_text(out, frame.to_csv(index=False))
    return Path(out)
