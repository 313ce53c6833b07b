"""What `vizprobe crowd` keeps in the study's database, so that `watch` can be killed and resumed: the posting
(platform, sandbox, the HITs' settings), every HIT or study posted and every submission seen with its decision.

Worker ids are kept as the study's HMACs, like the server's; platform credentials are never stored.
"""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import Boolean, DateTime, Float, Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from vizprobe.errors import VizprobeError
from vizprobe.experiment.db import Base, Database, utcnow


class HitState:
    """`CrowdHit.state`: posting (asked for, not yet confirmed), open, expired, gone (deleted on the platform's
    side) or closed (expired by vizprobe once the study was done)."""

    POSTING, OPEN, EXPIRED, GONE, CLOSED = "posting", "open", "expired", "gone", "closed"
    # HITs whose counts and submissions may still change (a closed HIT's workers still at it may submit)
    SYNCED = (OPEN, EXPIRED, CLOSED)


class Decision:
    """`CrowdAssignment.decision`: approved or rejected by vizprobe, auto-approved by the platform, or held for the
    researcher (a submission vizprobe cannot match to a session)."""

    APPROVED, REJECTED, AUTO, HELD = "approved", "rejected", "auto_approved", "held"
    PAID = (APPROVED, AUTO)


class CrowdStudy(Base):
    """The study's posting on a crowd platform (one per database)."""

    __tablename__ = "crowd_study"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    platform: Mapped[str] = mapped_column(String(20))
    sandbox: Mapped[bool] = mapped_column(Boolean, default=False)
    name: Mapped[str] = mapped_column(String(100))
    settings_json: Mapped[str] = mapped_column(Text, default="{}")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    @property
    def settings(self) -> dict:
        return json.loads(self.settings_json)


class CrowdHit(Base):
    """One HIT (MTurk) or study (Prolific); `token` is the idempotency token it was created with, `places` the
    number of assignments vizprobe wants it to have."""

    __tablename__ = "crowd_hits"
    token: Mapped[str] = mapped_column(String(64), primary_key=True)
    hit_id: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)
    places: Mapped[int] = mapped_column(Integer)
    reward_usd: Mapped[float] = mapped_column(Float)
    state: Mapped[str] = mapped_column(String(10), default=HitState.POSTING, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    available: Mapped[int] = mapped_column(Integer, default=0)
    pending: Mapped[int] = mapped_column(Integer, default=0)
    completed: Mapped[int] = mapped_column(Integer, default=0)


class CrowdAssignment(Base):
    """One submission seen on the platform and what was decided about it (at most once: idempotent by id)."""

    __tablename__ = "crowd_assignments"
    assignment_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    hit_id: Mapped[str] = mapped_column(String(64), index=True)
    worker_hmac: Mapped[str] = mapped_column(String(64))
    platform_status: Mapped[str] = mapped_column(String(20))
    decision: Mapped[str | None] = mapped_column(String(20), nullable=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    reward_usd: Mapped[float] = mapped_column(Float)
    qualified: Mapped[bool] = mapped_column(Boolean, default=False)
    seen_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


TABLES = [CrowdStudy.__table__, CrowdHit.__table__, CrowdAssignment.__table__]


def open_crowd(db_url: str) -> Database:
    """The study's database with the crowd tables (made if missing); a one-line error when `serve` never ran."""
    db = Database(db_url, create=False)
    Base.metadata.create_all(db.engine, tables=TABLES)
    return db


def crowd_study(s: Session, platform: str) -> CrowdStudy:
    """The posting of this database, or a one-line error saying to post first."""
    study = s.get(CrowdStudy, 1)
    if study is None:
        raise VizprobeError(f"this study was never posted: run `vizprobe crowd post --platform {platform}` first")
    if study.platform != platform:
        where = study.platform
        raise VizprobeError(f"this study was posted on {where}, not {platform}: pass --platform {where}")
    return study


def hits(s: Session, *states: str) -> list[CrowdHit]:
    query = select(CrowdHit).order_by(CrowdHit.created_at, CrowdHit.token)
    return list(s.scalars(query.where(CrowdHit.state.in_(states)) if states else query))
