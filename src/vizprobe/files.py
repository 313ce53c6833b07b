"""Small helpers for writing files so that a crash never leaves one half-written."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from vizprobe.errors import VizprobeError


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, fsync, then rename over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


@contextmanager
def staged_dir(out: str | Path, marker: str, what: str) -> Iterator[Path]:
    """Build a folder in a temporary sibling of `out`, then put it in place of `out` in one rename.

    `out` may be replaced only if it holds `marker` (i.e. it is an earlier output of the same kind);
    on any error the staging folder is removed and `out` is left as it was.
    """
    out = Path(out)
    if out.exists() and not (out / marker).is_file():
        raise VizprobeError(f"--out {out} exists and is not a {what}; choose a new folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield staging
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def cache_root() -> Path:
    """vizprobe's persistent cache (demo photos, exported graphs): `$VIZPROBE_CACHE`, else the user's cache dir."""
    given = os.environ.get("VIZPROBE_CACHE")
    return Path(given) if given else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vizprobe"


def safe_name(text: str) -> str:
    """A file-name-safe version of a layer path or alias (`mixed4a/3x3` -> `mixed4a__3x3`)."""
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in text.replace("/", "__"))
