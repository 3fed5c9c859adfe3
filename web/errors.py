"""One error path: the core's exceptions, HTTP errors and validation errors all become
``{"status", "message"}`` JSON under /api/, an HTML fragment under /partials/ and an HTML page
elsewhere.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from search.errors import (  # noqa: F401 - the web layer's errors, re-exported
    CrossfindError,
    DiskFull,
    RequestTimeout,
    ServiceUnavailable,
    Unauthorized,
    Unprocessable,
    is_catalog_unreachable,
    is_disk_full,
)


def validation_message(errors: list[dict[str, Any]] | Any) -> str:
    """Pydantic/FastAPI error list -> one readable line naming the field."""
    parts = []
    for err in list(errors)[:3]:
        loc = ".".join(str(x) for x in err.get("loc", ()) if x not in ("body", "query", "path"))
        msg = str(err.get("msg", "invalid value"))
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts) or "invalid request"


def error_response(
    request: Request, status: int, message: str, headers: dict | None = None
) -> Response:
    """The answer for an error, shaped for who asked (API client, page script, browser)."""
    path = request.url.path
    if path.startswith("/api/") or path in ("/healthz", "/openapi.json"):
        return JSONResponse({"status": status, "message": message}, status, headers=headers)
    templates = request.app.state.templates
    name = "_error.html" if path.startswith("/partials/") else "error.html"
    return templates.TemplateResponse(
        request, name, {"status": status, "message": message}, status_code=status, headers=headers
    )


def _allowed_methods(request: Request, fallback: str) -> str:
    """Every documented method at this path. A path can have routes in several routers, and
    Starlette's own 405 names only the first route's methods."""
    methods: set[str] = set()
    for template, item in request.app.openapi().get("paths", {}).items():
        if compile_path(template)[0].match(request.url.path):
            methods |= {m.upper() for m in item}
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods)) or fallback


async def unexpected(request: Request, exc: Exception) -> Response:
    if is_disk_full(exc):  # e.g. SQLite cannot map a reader's -shm file: not a bug, a full disk
        services = getattr(request.app.state, "services", None)
        full = DiskFull.of(exc, getattr(services, "db", "the index"))
        return error_response(request, full.status, full.message)
    if is_catalog_unreachable(exc):  # the PostgreSQL catalog's server is down: retry later
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        return error_response(request, 503, f"the catalog cannot be reached ({first}); try again")
    # a bug: answer in the same shape, with the traceback in the server log
    logging.getLogger("web").exception("unhandled error on %s", request.url.path, exc_info=exc)
    return error_response(request, 500, f"internal error: {type(exc).__name__}")


class CatchErrors:
    """Answers an unexpected exception with the JSON/HTML 500 and stops it there.

    Starlette's outermost error middleware sends the same 500 but then re-raises, and uvicorn,
    seeing an exception escape the app, closes the connection: a keep-alive client's next
    request on it is reset (2 resets in 60 s of 16 clients, measured, while an indexing run
    made searches fail). One failed request must not take the connection down with it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:
            if started:  # half a response is out: only closing the connection can end it
                raise
            response = await unexpected(Request(scope), exc)
            await response(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    async def crossfind_error(request: Request, exc: CrossfindError) -> Response:
        headers = {"WWW-Authenticate": 'Basic realm="crossfind"'} if exc.status == 401 else None
        return error_response(request, exc.status, exc.message, headers)

    async def http_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code in (204, 304):
            return Response(status_code=exc.status_code, headers=exc.headers)
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            allow = _allowed_methods(request, (headers or {}).get("Allow", ""))
            headers = {**(headers or {}), "Allow": allow}
        if exc.status_code == 404 and message == "Not Found":
            message = f"nothing at {request.url.path}"
        return error_response(request, exc.status_code, message, headers)

    async def invalid_request(
        request: Request, exc: RequestValidationError | ValidationError
    ) -> Response:
        return error_response(request, 422, validation_message(exc.errors()))

    app.add_exception_handler(CrossfindError, crossfind_error)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, invalid_request)  # type: ignore[arg-type]
    app.add_exception_handler(ValidationError, invalid_request)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, unexpected)  # errors raised outside CatchErrors
    app.add_middleware(CatchErrors)
