"""The FastAPI app of `vizprobe serve`: the participant page, the stimulus images, the JSON API and the admin page.

One router per area (pages, participant API, admin); handlers get the running `Experiment` through
`Depends(experiment)` and return typed response models, so the OpenAPI schema at `/docs` documents the API.
"""

from __future__ import annotations

import hmac
import re
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from vizprobe.stimuli.manifest import Manifest

from .db import Database
from .export import frame_from_session
from .guard import Guard
from .schemas import (
    SESSION_ID_PATTERN,
    CompleteIn,
    CompleteOut,
    ConfigOut,
    ErrorOut,
    EventIn,
    OkOut,
    PreviewOut,
    ProgressOut,
    RespondOut,
    ResponseIn,
    SessionIn,
    SessionState,
    SubmissionOut,
)
from .secret import admin_token as load_admin_token
from .secret import default_admin_token_file, default_secret_file
from .service import ApiError, Experiment
from .settings import Settings

STATIC_DIR = Path(__file__).with_name("static")
ADMIN_DIR = Path(__file__).with_name("admin")
ERRORS = {status: {"model": ErrorOut} for status in (401, 403, 404, 409, 413, 422, 500, 503)}
SESSION_COOKIE = "vizprobe_session"
NO_STORE = {"Cache-Control": "no-store"}  # admin pages and the export hold study data: never cached


def create_app(
    stimuli_dir: str | Path,
    db_url: str | None = None,
    settings: Settings | None = None,
    *,
    admin_token: str | None = None,
    admin_token_file: str | Path | None = None,
    secret_file: str | Path | None = None,
    static_dir: str | Path | None = None,
    debug: bool = False,
    change_settings: bool = False,
    **options,
) -> FastAPI:
    """Build the app for one stimulus package and database (created on first start; the manifest is stored in it).

    `settings` (or the same fields as keyword `options`, None meaning the default) are checked against the
    package before anything is opened. The admin token is `admin_token`, else $VIZPROBE_ADMIN_TOKEN, else the
    contents of `admin_token_file` (default beside the secret; made on first start).
    """
    stimuli_dir = Path(stimuli_dir)
    manifest = Manifest.load(stimuli_dir)
    settings = (settings or Settings.from_options(**options)).checked(len(manifest.practice_ids))
    db = Database(db_url)
    secret_file = Path(secret_file or default_secret_file(db.path, db.url))
    experiment = Experiment(db, manifest, settings, secret_file, change_settings=change_settings)
    app = FastAPI(title="vizprobe experiment", version="1", docs_url="/docs", redoc_url=None)
    app.state.experiment, app.state.db = experiment, db
    token_file = Path(admin_token_file or default_admin_token_file(secret_file))
    token, created = (admin_token, False) if admin_token else load_admin_token(token_file)
    app.state.admin_token, app.state.admin_token_file, app.state.admin_token_created = token, token_file, created
    app.state.stimuli_dir, app.state.static_dir = stimuli_dir.resolve(), Path(static_dir or STATIC_DIR)
    _add_error_handlers(app)
    app.add_middleware(Guard, platform=settings.platform, debug=debug)
    app.mount("/static", StaticFiles(directory=app.state.static_dir, check_dir=False), name="static")
    app.include_router(pages)
    app.include_router(api, prefix="/api", responses=ERRORS)
    app.include_router(admin, responses=ERRORS)
    return app


def running_experiment(request: Request) -> Experiment:
    """The running experiment (a dependency of every handler)."""
    return request.app.state.experiment


Running = Annotated[Experiment, Depends(running_experiment)]


def _error(status: int, error: str, message: str, **extra: object) -> JSONResponse:
    return JSONResponse({"error": error, "message": message, **extra}, status_code=status)


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


# --- pages: the participant page and the manifest's images (nothing else from the package) ----------------------
pages = APIRouter(include_in_schema=False)


def _built_page(request: Request, name: str) -> Response:
    page = request.app.state.static_dir / name
    if not page.is_file():
        return _error(503, "frontend_missing", "front end not built: run `make frontend`")
    return FileResponse(page, headers={"Cache-Control": "no-cache"})


@pages.get("/")
def index(request: Request) -> Response:
    return _built_page(request, "index.html")


@pages.get("/start")
def start_page(request: Request) -> Response:
    """The MTurk HIT's page: it opens the study in a window of its own and submits the assignment when done."""
    return _built_page(request, "start.html")


@pages.get("/stimuli/{path:path}")
def stimulus(path: str, request: Request, experiment: Running) -> Response:
    root = request.app.state.stimuli_dir
    target = (root / path).resolve() if path in experiment.manifest.images else None
    if target is None or not target.is_relative_to(root) or not target.is_file():
        raise ApiError(404, "not_found", "no such stimulus image")
    return FileResponse(target, headers={"Cache-Control": "public, max-age=86400, immutable"})


# --- the participant API of docs/experiment-api.md: each handler hands the checked body to the service ------------
api = APIRouter(tags=["participant"])


@api.get("/config", response_model=ConfigOut)
def config(experiment: Running) -> dict:
    return experiment.config()


@api.get("/preview", response_model=PreviewOut, response_model_exclude_unset=True)
def preview(experiment: Running) -> dict:
    return experiment.preview()


@api.post("/sessions", response_model=SessionState, response_model_exclude_unset=True)
def start(body: SessionIn, experiment: Running, request: Request, response: Response) -> dict:
    """A reload resumes by the id the page kept, else by the session cookie (the page's storage may be gone)."""
    cookie = request.cookies.get(SESSION_COOKIE, "")
    if body.resume is None and re.fullmatch(SESSION_ID_PATTERN, cookie):
        body = body.model_copy(update={"resume": cookie})
    state = experiment.start(body)
    response.set_cookie(
        SESSION_COOKIE,
        state["session_id"],
        max_age=7 * 86400,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    return state


@api.post("/submission", response_model=SubmissionOut, response_model_exclude_unset=True)
def submission(body: SessionIn, experiment: Running) -> dict:
    """The session of one platform submission (worker id and assignment id), for the MTurk start page."""
    return experiment.submission(body)


@api.post("/sessions/{sid}/events", response_model=OkOut)
def event(sid: str, body: EventIn, experiment: Running) -> dict:
    return experiment.event(sid, body)


@api.post("/sessions/{sid}/responses", response_model=RespondOut, response_model_exclude_unset=True)
def respond(sid: str, body: ResponseIn, experiment: Running) -> dict:
    return experiment.respond(sid, body)


@api.post("/sessions/{sid}/return", response_model=OkOut)
def withdraw(sid: str, experiment: Running) -> dict:
    return experiment.withdraw(sid)


@api.post("/sessions/{sid}/complete", response_model=CompleteOut)
def complete(sid: str, body: CompleteIn, experiment: Running) -> dict:
    return experiment.complete(sid, body)


# --- admin: progress and export behind the admin token (an `Authorization: Bearer` header, never a URL) --------
def admin_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    given = header[7:] if header.lower().startswith("bearer ") else ""
    if not hmac.compare_digest(given.encode(), request.app.state.admin_token.encode()):
        raise ApiError(401, "unauthorized", "admin routes need the admin token as an `Authorization: Bearer` header")
    return given


AdminToken = Annotated[str, Depends(admin_token)]
admin = APIRouter(tags=["admin"])


@admin.get("/api/admin/progress", response_model=ProgressOut)
def progress(_: AdminToken, experiment: Running, response: Response) -> dict:
    response.headers.update(NO_STORE)
    return experiment.progress()


@admin.get("/api/admin/export.csv", response_class=Response)
def export_csv(_: AdminToken, experiment: Running) -> Response:
    with experiment.db.tx() as s:
        frame = frame_from_session(s)
    headers = {"Content-Disposition": 'attachment; filename="responses.csv"', **NO_STORE}
    return Response(frame.to_csv(index=False), media_type="text/csv", headers=headers)


@admin.get("/admin", include_in_schema=False)
def admin_page() -> FileResponse:
    """The page holds no data: it asks for the token and fetches progress and export with it."""
    return FileResponse(ADMIN_DIR / "admin.html", headers=NO_STORE)


@admin.get("/admin.js", include_in_schema=False)
def admin_script() -> FileResponse:
    return FileResponse(ADMIN_DIR / "admin.js", media_type="text/javascript", headers={"Cache-Control": "no-cache"})
