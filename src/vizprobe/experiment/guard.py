"""One ASGI layer around the app: request size limit, security headers, and every unexpected error as JSON.

Starlette's own error page is plain text with a traceback; here an exception that no handler took becomes
`{"error": "internal"}` (500) or, for database and disk trouble, `{"error": "unavailable"}` (503 with
`Retry-After`, which the participant page retries), with one log line per error (the traceback only when
the server runs with `debug`).
"""

from __future__ import annotations

import json
import logging

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

log = logging.getLogger("vizprobe.experiment")

MAX_BODY_BYTES = 64 * 1024
RETRY_AFTER_S = 5
# The participant page loads only its own files; MTurk shows it in a frame on its own sites.
FRAME_ANCESTORS = {"mturk": "https://www.mturk.com https://workersandbox.mturk.com"}
UNAVAILABLE = (OperationalError, PoolTimeout, OSError)


def security_headers(platform: str) -> list[tuple[bytes, bytes]]:
    ancestors = FRAME_ANCESTORS.get(platform, "'none'")
    csp = (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "font-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self' https:; "
        f"frame-ancestors {ancestors}"
    )
    return [
        (b"content-security-policy", csp.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
        (b"cross-origin-opener-policy", b"same-origin"),
    ]


class Guard:
    """ASGI middleware: limits request bodies, adds security headers, turns unhandled errors into JSON."""

    def __init__(self, app, platform: str = "local", max_body: int = MAX_BODY_BYTES, debug: bool = False) -> None:
        self.app, self.max_body, self.debug = app, max_body, debug
        self.headers = security_headers(platform)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        docs = path.startswith(("/docs", "/openapi.json"))  # Swagger UI loads its own scripts and styles
        started = False

        async def send_with_headers(message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if not docs:
                    message = {**message, "headers": [*message.get("headers", []), *self.headers]}
            await send(message)

        body = await self._read_body(receive)
        if body is None:
            limit = f"request bodies are limited to {self.max_body} bytes"
            return await _send_json(send_with_headers, 413, "too_large", limit)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: disconnect notices

        try:
            await self.app(scope, replay, send_with_headers)
        except Exception as exc:  # noqa: BLE001 - the one place every unexpected error is turned into JSON
            unavailable = isinstance(exc, UNAVAILABLE) or (isinstance(exc, DBAPIError) and exc.connection_invalidated)
            status, code = (503, "unavailable") if unavailable else (500, "internal")
            log.error(
                "%s %s %s -> %d %s: %s",
                scope.get("method"),
                path,
                type(exc).__name__,
                status,
                code,
                str(exc).splitlines()[0][:200] if str(exc) else "",
                exc_info=self.debug,
            )
            if started:
                raise
            message = "the server is briefly unavailable; try again" if unavailable else "internal error"
            extra = [(b"retry-after", str(RETRY_AFTER_S).encode())] if unavailable else []
            await _send_json(send_with_headers, status, code, message, extra)

    async def _read_body(self, receive) -> bytes | None:
        """The whole request body, or None when it exceeds the limit."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


async def _send_json(send, status: int, error: str, message: str, headers: list | None = None) -> None:
    payload = json.dumps({"error": error, "message": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
