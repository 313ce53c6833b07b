"""The server secret that keys the HMAC of worker ids: made once, kept in a file readable only by its owner."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from pathlib import Path

from vizprobe.errors import VizprobeError


def default_secret_file(db_path: Path | None, db_url: str = "") -> Path:
    """Beside a SQLite file (`DB.secret`); for PostgreSQL, one file per database under ~/.vizprobe/secrets
    (never the working directory: a server started elsewhere must find the same secret)."""
    if db_path is not None:
        return db_path.with_name(db_path.name + ".secret")
    from sqlalchemy.engine import make_url

    url = make_url(db_url)
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{url.host or 'local'}_{url.port or 5432}_{url.database or 'postgres'}")
    return Path.home() / ".vizprobe" / "secrets" / f"{name}.key"


ADMIN_TOKEN_ENV = "VIZPROBE_ADMIN_TOKEN"


def default_admin_token_file(secret_file: Path) -> Path:
    """The admin token's file, beside the study's secret (`DB.secret` -> `DB.admin-token`)."""
    return secret_file.with_name(secret_file.name.removesuffix(".secret").removesuffix(".key") + ".admin-token")


def admin_token(token_file: str | Path) -> tuple[str, bool]:
    """The admin token from $VIZPROBE_ADMIN_TOKEN, else from `token_file` (created 0600 on first use).

    Returns (token, created): a new token is shown once by `vizprobe serve`, never again (it is not a URL
    parameter either: the admin page sends it as a header)."""
    from_env = os.environ.get(ADMIN_TOKEN_ENV, "").strip()
    if from_env:
        if len(from_env) < 16:
            raise VizprobeError(f"${ADMIN_TOKEN_ENV} is shorter than 16 characters; use a long random token")
        return from_env, False
    path = Path(token_file)
    created = not path.exists()
    text = _read_or_create(path, secrets.token_urlsafe(24))
    if len(text) < 16:
        raise VizprobeError(f"admin token file {path} holds fewer than 16 characters; delete it to make a new token")
    return text, created


def fingerprint(secret: bytes) -> str:
    """A public identifier of a secret (it reveals nothing of it): which secret a study's ids were keyed with."""
    return hashlib.sha256(b"vizprobe-secret-fingerprint:" + secret).hexdigest()[:32]


def read_secret(path: str | Path) -> bytes:
    """An existing secret, or a one-line error naming the file and how to restore it."""
    path = Path(path)
    if not path.is_file():
        raise VizprobeError(
            f"this study's secret file {path} is missing: worker ids cannot be recognised without it, so a worker "
            "could take part twice; restore it from the backup of the study (docs/deploy.md) or pass --secret-file"
        )
    return load_or_create_secret(path)


def load_or_create_secret(path: str | Path) -> bytes:
    """Read the secret, or create it atomically (O_EXCL, mode 0600) when it does not exist yet."""
    path = Path(path)
    text = _read_or_create(path, secrets.token_hex(32))
    if len(text) < 32:
        raise VizprobeError(
            f"secret file {path} is empty or too short; restore it from a backup; workers are recognised by it"
        )
    return text.encode()


def _read_or_create(path: Path, new_value: str) -> str:
    """The file's stripped text; the file is first created atomically (O_EXCL, mode 0600) when missing."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another server process made it first
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(new_value + "\n")
                handle.flush()
                os.fsync(handle.fileno())
    return path.read_text().strip()


def keyed_hash(secret: bytes, value: str) -> str:
    """HMAC-SHA256 of a platform id: equal ids match, the id itself cannot be read back."""
    return hmac.new(secret, value.strip().encode(), hashlib.sha256).hexdigest()
