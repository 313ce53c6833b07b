"""Run the experiment app under uvicorn and tell the experimenter where the participant and admin pages are."""

from __future__ import annotations

import ipaddress
import os
import sys
from pathlib import Path

import uvicorn

from vizprobe.errors import VizprobeError

from .app import create_app
from .secret import ADMIN_TOKEN_ENV
from .settings import PLATFORMS, Settings


def serve(
    stimuli: str | Path,
    db: str | None,
    settings: Settings | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    **options,
) -> None:
    """Create the app (fails fast on bad options), print the URLs, and serve until interrupted."""
    if bool(ssl_certfile) != bool(ssl_keyfile):
        raise VizprobeError("HTTPS needs both --ssl-certfile and --ssl-keyfile")
    app = create_app(stimuli, db, settings, **options)
    base = f"{'https' if ssl_certfile else 'http'}://{host}:{port}"
    if not ssl_certfile and not _loopback(host):
        print(
            f"WARNING: serving {host} over plain HTTP: participants' answers and the admin token travel "
            "unencrypted; use --ssl-certfile/--ssl-keyfile or a reverse proxy with HTTPS (docs/deploy.md)",
            file=sys.stderr,
            flush=True,
        )
    platform = app.state.experiment.settings.platform
    print(f"database: {app.state.db.url_for_people}")
    print(f"participant page: {base}/{PLATFORMS[platform]}")
    print(f"admin page: {base}/admin")
    print(_admin_token_line(app), flush=True)
    print(f"completion code: {app.state.experiment.completion_code}", flush=True)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=5,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
    )


def _admin_token_line(app) -> str:
    """A new token is shown once; after that only where it is kept."""
    state = app.state
    if state.admin_token_created:
        return f"admin token (shown only now; kept in {state.admin_token_file}, mode 0600): {state.admin_token}"
    if os.environ.get(ADMIN_TOKEN_ENV):
        return f"admin token: from ${ADMIN_TOKEN_ENV}"
    return f"admin token: in {state.admin_token_file}"


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
