"""The experiment database: SQLAlchemy 2 mapped classes and the engine set-up (SQLite WAL or PostgreSQL)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    func,
    inspect,
    select,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from vizprobe.errors import VizprobeError

DEFAULT_DB = "vizprobe-experiment.db"


class TaskState:
    """`Task.state`: free, running (handed to a session), completed, or exhausted (its last allowed participant,
    the `max_assignments`-th, failed the exclusion criteria: not offered again)."""

    FREE, RUNNING, COMPLETED, EXHAUSTED = "free", "running", "completed", "exhausted"


class SessionStatus:
    """`ParticipantSession.status`: active, completed, expired (silent too long: its task was handed to someone
    else), returned (the participant stopped with the page's "stop" button: the task is free at once), or failed
    (completed, but the exclusion criteria failed and the task was posted again)."""

    ACTIVE, COMPLETED, EXPIRED, RETURNED, FAILED = "active", "completed", "expired", "returned", "failed"
    FINISHED = (COMPLETED, FAILED)
    CLOSED = (EXPIRED, RETURNED)  # left unfinished; no more answers are taken
    # As the export writes them (`session_status` column of the responses format).
    EXPORTED = {
        ACTIVE: "running",
        COMPLETED: "completed",
        EXPIRED: "expired",
        RETURNED: "returned",
        FAILED: "failed_criteria",
    }


def utcnow() -> datetime:
    """Naive UTC now: SQLite keeps no time zone, so every timestamp is naive UTC on both back ends."""
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Study(Base):
    """The one study of this database: the stimulus manifest it was created from, and the server's settings."""

    __tablename__ = "study"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    manifest_sha256: Mapped[str] = mapped_column(String(64))
    manifest_json: Mapped[str] = mapped_column(Text)
    settings_json: Mapped[str] = mapped_column(Text, default="{}")
    completion_code: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # Identifies the HMAC secret the study's worker ids were keyed with (a hash of it, not the secret).
    secret_fingerprint: Mapped[str | None] = mapped_column(String(64), nullable=True)


class Task(Base):
    """A task (trial list) of the manifest and its assignment state: free, running (by a session) or completed."""

    __tablename__ = "tasks"
    task_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    condition: Mapped[str] = mapped_column(String(20), index=True)
    position: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(10), default=TaskState.FREE, index=True)
    session_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class ParticipantSession(Base):
    """A participant's session (table `sessions`); the worker id and platform ids are kept only as HMACs."""

    __tablename__ = "sessions"
    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    worker_hmac: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)
    platform: Mapped[str] = mapped_column(String(20))
    platform_ids_hmac: Mapped[str] = mapped_column(Text, default="{}")
    condition: Mapped[str] = mapped_column(String(20))
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.task_id"))
    expertise: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(10), default=SessionStatus.ACTIVE)
    consented_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    instruction_time_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    practice_attempts: Mapped[int] = mapped_column(Integer, default=0)
    practice_passed: Mapped[bool] = mapped_column(Boolean, default=False)
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_active_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    total_time_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    completion_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    debrief_json: Mapped[str | None] = mapped_column(Text, nullable=True)


class Response(Base):
    """One answer; (session, phase, attempt, trial_index) is unique, which makes sending idempotent."""

    __tablename__ = "responses"
    __table_args__ = (UniqueConstraint("session_id", "phase", "attempt", "trial_index", name="uq_response_key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id"), index=True)
    phase: Mapped[str] = mapped_column(String(10))
    attempt: Mapped[int] = mapped_column(Integer)
    trial_index: Mapped[int] = mapped_column(Integer)
    trial_id: Mapped[str] = mapped_column(String(200))
    choice: Mapped[int] = mapped_column(Integer)
    confidence: Mapped[int] = mapped_column(Integer)
    rt_ms: Mapped[float] = mapped_column(Float)
    correct: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # Attention while the trial was shown (None in studies recorded before it was kept).
    away_count: Mapped[int | None] = mapped_column(Integer, nullable=True)
    away_ms: Mapped[float | None] = mapped_column(Float, nullable=True)


def normalize_url(db: str | None) -> str:
    """`None` -> SQLite file in the working directory; a bare path -> SQLite; `postgresql://` -> psycopg 3."""
    if not db:
        return f"sqlite:///{Path.cwd() / DEFAULT_DB}"
    if "://" not in db:
        return f"sqlite:///{Path(db).resolve()}"
    for prefix in ("postgresql://", "postgres://"):
        if db.startswith(prefix):
            return "postgresql+psycopg://" + db[len(prefix) :]
    if db.startswith(("sqlite:///", "postgresql+psycopg://")):
        return db
    raise VizprobeError(f"--db {db!r} is not supported: give a file path, sqlite:///PATH or postgresql://...")


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL, else None."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise VizprobeError(f"--db {url!r} is not a database URL") from None
    if parsed.get_backend_name() != "sqlite":
        return None
    if not parsed.database or parsed.database == ":memory:":
        raise VizprobeError("--db must name a SQLite file (an in-memory database cannot be shared)")
    return Path(parsed.database)


def _sqlite_engine(url: str) -> Engine:
    """A SQLite engine in WAL mode whose transactions all start with BEGIN IMMEDIATE (writers never deadlock)."""
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=8)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # let the "begin" hook below issue BEGIN
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")  # a stored response survives a power cut, not only a crash
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


class Database:
    """Engine, session factory and a transaction helper; SQLite transactions are also serialized in-process."""

    def __init__(self, db: str | None, *, create: bool = True) -> None:
        self.url = normalize_url(db)
        self.path = sqlite_path(self.url)
        if self.path is not None:
            if not create and not self.path.is_file():
                raise VizprobeError(f"no experiment database at {self.path}; pass the --db that `vizprobe serve` used")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.engine = _sqlite_engine(self.url)
        else:
            self.engine = create_engine(self.url, pool_size=10, max_overflow=20, pool_pre_ping=True)
        self.is_postgres = self.engine.dialect.name == "postgresql"
        self._lock = threading.Lock() if self.path is not None else None
        self._factory = sessionmaker(self.engine, expire_on_commit=False)
        try:
            new_file = self.path is not None and not self.path.exists()
            if self.path is not None and not new_file:
                self._check_integrity()
            if create:
                Base.metadata.create_all(self.engine)
                self._add_missing_columns()
                self._check_schema()
            elif not inspect(self.engine).has_table("study"):
                raise VizprobeError(f"{self.url_for_people} holds no vizprobe experiment; check --db")
            if new_file and self.path.exists():
                os.chmod(self.path, 0o600)  # answers and keyed worker ids: for the study's owner only
        except VizprobeError:
            raise
        except Exception as error:  # driver errors: refused connection, bad credentials, unreadable file
            raise VizprobeError(
                f"cannot open the database {self.url_for_people}: {str(error).splitlines()[0]}"
            ) from None

    def _check_integrity(self) -> None:
        """Refuse a damaged SQLite file at start rather than serve until the first read of a broken page."""
        try:
            with self.engine.connect() as conn:
                result = [row[0] for row in conn.exec_driver_sql("PRAGMA quick_check").fetchall()]
        except Exception as error:  # "file is not a database", "database disk image is malformed"
            result = [str(error).splitlines()[0]]
        if result != ["ok"]:
            raise VizprobeError(
                f"the database {self.path} is damaged ({result[0][:120]}); restore it from a backup "
                "(docs/deploy.md) or start a new study with another --db"
            )

    def _add_missing_columns(self) -> None:
        """Columns added to the schema since a study's database was created (nullable, so old rows stay valid)."""
        added = {
            "study": {"secret_fingerprint": "VARCHAR(64)"},
            "responses": {"away_count": "INTEGER", "away_ms": "FLOAT"},
        }
        for table, columns in added.items():
            present = {c["name"] for c in inspect(self.engine).get_columns(table)}
            for name, kind in columns.items():
                if name not in present:
                    with self.engine.begin() as conn:
                        conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")

    def _check_schema(self) -> None:
        """Every table has the columns this version reads (a database of another program, or one altered by
        hand, is refused at start instead of failing at the first answer)."""
        inspector = inspect(self.engine)
        for table in Base.metadata.sorted_tables:
            present = {c["name"] for c in inspector.get_columns(table.name)}
            missing = sorted(c.name for c in table.columns if c.name not in present)
            if missing:
                raise VizprobeError(
                    f"the database {self.url_for_people} has a table {table.name!r} without the column(s) "
                    f"{', '.join(missing)}: it is not a vizprobe experiment database of this version; check --db"
                )

    @property
    def url_for_people(self) -> str:
        """The URL without its password, for messages."""
        return make_url(self.url).render_as_string(hide_password=True)

    @contextmanager
    def tx(self) -> Iterator[Session]:
        """One transaction: committed on success, rolled back on any exception."""
        with self._lock or nullcontext(), self._factory() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()


def task_assignments(s: Session, task_id: str | None = None) -> dict[str, int]:
    """Task id -> its finished sessions (completed or failed): the assignments it used, which `--max-assignments`
    caps and the export reports (one task's only, when `task_id` is given)."""
    query = select(ParticipantSession.task_id, func.count()).where(
        ParticipantSession.status.in_(SessionStatus.FINISHED)
    )
    if task_id is not None:
        query = query.where(ParticipantSession.task_id == task_id)
    return {task: int(n) for task, n in s.execute(query.group_by(ParticipantSession.task_id))}
