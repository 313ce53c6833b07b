"""The server secret that keys the HMAC of worker ids: made once, kept in a file readable only by its owner."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from vizprobe.errors import VizprobeError

SECRET_NAME = "vizprobe-secret.key"


def default_secret_file(db_path: Path | None) -> Path:
    """Beside a SQLite file (`DB.secret`); for PostgreSQL, in the working directory."""
    if db_path is not None:
        return db_path.with_name(db_path.name + ".secret")
    return Path.cwd() / SECRET_NAME


def load_or_create_secret(path: str | Path) -> bytes:
    """Read the secret, or create it atomically (O_EXCL, mode 0600) when it does not exist yet."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another server process made it first
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
    text = path.read_text().strip()
    if len(text) < 32:
        raise VizprobeError(
            f"secret file {path} is empty or too short; restore it from a backup; workers are recognised by it"
        )
    return text.encode()


def keyed_hash(secret: bytes, value: str) -> str:
    """HMAC-SHA256 of a platform id: equal ids match, the id itself cannot be read back."""
    return hmac.new(secret, value.strip().encode(), hashlib.sha256).hexdigest()
