"""The FastAPI app of `vizprobe serve`: the participant page, the stimulus images, the JSON API and the admin page."""

from __future__ import annotations

import hmac
import html
import secrets
from pathlib import Path
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from vizprobe.errors import VizprobeError
from vizprobe.stimuli.manifest import load_manifest

from .db import Database
from .export import frame_from_session
from .schemas import CompleteIn, EventIn, ResponseIn, SessionIn
from .secret import default_secret_file
from .service import PLATFORMS, ApiError, Experiment, Settings

STATIC_DIR = Path(__file__).with_name("static")


def _error(status: int, error: str, message: str, **extra: object) -> JSONResponse:
    return JSONResponse({"error": error, "message": message, **extra}, status_code=status)


def _check_options(n_practice: int, available: int, attempts: int, platform: str, timeout_s: float) -> None:
    """Refuse impossible server options with one line naming the fix."""
    if platform not in PLATFORMS:
        raise VizprobeError(f"--platform {platform!r}: choose one of {', '.join(PLATFORMS)}")
    if not 0 <= n_practice <= available:
        raise VizprobeError(f"--practice {n_practice}: the package has {available} practice trials (0 skips)")
    if attempts < 1:
        raise VizprobeError(f"--practice-attempts {attempts}: must be at least 1")
    if timeout_s <= 0:
        raise VizprobeError("--task-timeout must be positive")


def create_app(
    stimuli_dir: str | Path,
    db_url: str | None = None,
    *,
    platform: str = "local",
    completion_code: str | None = None,
    practice: int | None = None,
    practice_attempts: int = 5,
    expert: bool = False,
    admin_token: str | None = None,
    task_timeout_s: float = 30 * 60.0,
    secret_file: str | Path | None = None,
    static_dir: str | Path | None = None,
) -> FastAPI:
    """Build the app for one stimulus package and database (created on first start; the manifest is stored in it)."""
    stimuli_dir = Path(stimuli_dir)
    manifest = load_manifest(stimuli_dir)
    available = len(manifest.get("practice_trial_ids", []))
    n_practice = available if practice is None else practice
    _check_options(n_practice, available, practice_attempts, platform, task_timeout_s)
    db = Database(db_url)
    settings = Settings(platform, completion_code, n_practice, practice_attempts, expert, task_timeout_s)
    experiment = Experiment(db, manifest, settings, Path(secret_file or default_secret_file(db.path)))
    static = Path(static_dir or STATIC_DIR)

    app = FastAPI(title="vizprobe experiment", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.experiment, app.state.db = experiment, db
    app.state.admin_token = admin_token or secrets.token_urlsafe(16)
    _add_error_handlers(app)
    _add_pages(app, stimuli_dir, experiment, static)
    _add_api(app, experiment)
    _add_admin(app, experiment)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    """Every error, validation included, as `{"error": ..., "message": ...}`."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.error, exc.message, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
        message = str(first.get("msg", "invalid request")).removeprefix("Value error, ")
        return _error(422, "invalid_request", f"{where}: {message}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error(exc.status_code, code, str(exc.detail))


def _add_pages(app: FastAPI, stimuli_dir: Path, experiment: Experiment, static: Path) -> None:
    """The participant page, its built scripts, and the manifest's images (nothing else from the package)."""
    app.mount("/static", StaticFiles(directory=static, check_dir=False), name="static")

    @app.get("/", include_in_schema=False)
    def index() -> Response:
        page = static / "index.html"
        if not page.is_file():
            return _error(503, "frontend_missing", "front end not built: run `make frontend`")
        return FileResponse(page, headers={"Cache-Control": "no-cache"})

    root = stimuli_dir.resolve()

    @app.get("/stimuli/{path:path}", include_in_schema=False)
    def stimulus(path: str) -> Response:
        target = (root / path).resolve() if path in experiment.study.images else None
        if target is None or not target.is_relative_to(root) or not target.is_file():
            raise ApiError(404, "not_found", "no such stimulus image")
        return FileResponse(target, headers={"Cache-Control": "public, max-age=86400, immutable"})


def _add_api(app: FastAPI, experiment: Experiment) -> None:
    """The participant API of docs/experiment-api.md; each handler hands the checked body to the service."""

    @app.get("/api/config")
    def config() -> dict:
        return experiment.config()

    @app.post("/api/sessions")
    def start(body: SessionIn) -> dict:
        return experiment.start(body)

    @app.post("/api/sessions/{sid}/events")
    def event(sid: str, body: EventIn) -> dict:
        return experiment.event(sid, body)

    @app.post("/api/sessions/{sid}/responses")
    def respond(sid: str, body: ResponseIn) -> dict:
        return experiment.respond(sid, body)

    @app.post("/api/sessions/{sid}/complete")
    def complete(sid: str, body: CompleteIn) -> dict:
        return experiment.complete(sid, body)


def _add_admin(app: FastAPI, experiment: Experiment) -> None:
    """Progress and export behind the admin token (Bearer header or ?token=)."""

    def require_token(request: Request) -> str:
        header = request.headers.get("authorization", "")
        given = header[7:] if header.lower().startswith("bearer ") else request.query_params.get("token", "")
        if not hmac.compare_digest(given.encode(), app.state.admin_token.encode()):
            raise ApiError(401, "unauthorized", "admin routes need the admin token (printed by `vizprobe serve`)")
        return given

    @app.get("/api/admin/progress")
    def progress(_: str = Depends(require_token)) -> dict:
        return experiment.progress()

    @app.get("/api/admin/export.csv")
    def export_csv(_: str = Depends(require_token)) -> Response:
        with experiment.db.tx() as s:
            frame = frame_from_session(s)
        headers = {"Content-Disposition": 'attachment; filename="responses.csv"'}
        return Response(frame.to_csv(index=False), media_type="text/csv", headers=headers)

    @app.get("/admin", include_in_schema=False)
    def admin_page(token: str = Depends(require_token)) -> HTMLResponse:
        return HTMLResponse(admin_html(experiment.progress(), token))


def admin_html(progress: dict, token: str) -> str:
    """A plain server-rendered page: one row per condition, and the export link."""
    head = (
        "<tr><th>condition</th><th>tasks</th><th>completed</th><th>running</th><th>free</th><th>participants</th></tr>"
    )
    rows = "".join(
        f"<tr><td>{html.escape(c)}</td>"
        + "".join(f"<td>{v[k]}</td>" for k in ("tasks", "completed", "running", "free", "participants"))
        + "</tr>"
        for c, v in sorted(progress["conditions"].items())
    )
    link = html.escape(f"/api/admin/export.csv?token={quote(token)}")
    return (
        "<!doctype html><meta charset=utf-8><title>vizprobe admin</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:.3em 1em;border-bottom:1px solid #ccc}</style>"
        f"<h1>Experiment progress</h1><table>{head}{rows}</table>"
        f'<p>{progress["responses"]} responses stored. <a href="{link}">Download responses.csv</a></p>'
    )
