"""Run the experiment app under uvicorn and tell the experimenter where the participant and admin pages are."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import uvicorn

from .app import create_app
from .settings import PLATFORMS, Settings


def serve(
    stimuli: str | Path,
    db: str | None,
    settings: Settings | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    **options,
) -> None:
    """Create the app (fails fast on bad options), print the URLs, and serve until interrupted."""
    app = create_app(stimuli, db, settings, **options)
    base = f"http://{host}:{port}"
    platform = app.state.experiment.settings.platform
    print(f"database: {app.state.db.url_for_people}")
    print(f"participant page: {base}/{PLATFORMS[platform]}")
    print(f"admin page: {base}/admin?token={quote(app.state.admin_token)}")
    print(f"completion code: {app.state.experiment.completion_code}", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=5)
