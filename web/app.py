"""``create_app``: the FastAPI application, its lifespan (models load once) and its limits."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio.to_thread
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from search.encoders.base import Encoder
from search.engine import Engine
from search.settings import Settings, get_settings
from web.errors import install_error_handlers
from web.indexing import IndexFn
from web.routes import api, pages
from web.services import Services

HERE = Path(__file__).resolve().parent
# base64 grows bytes by 4/3; a JSON body may carry a few parts under the per-file cap
_BODY_FACTOR = 1.5


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` with 413, by Content-Length or while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = (
            f"request body over the {self.max_bytes // 1_000_000} MB cap (CROSSFIND_MAX_UPLOAD_MB)"
        )
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await JSONResponse({"status": 413, "message": message}, 413)(scope, receive, send)
                return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:
                    raise HTTPException(413, message)
            return msg

        await self.app(scope, limited, send)


# The search page loads only its own script, styles and media (blob: for a query image's preview
# or a recording); it may not be framed by another site (clickjacking).
PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
PAGE_HEADERS = (
    (b"content-security-policy", PAGE_POLICY.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
)
# FastAPI's own API explorer pages, which load their scripts from elsewhere
_EXPLORER = ("/docs", "/redoc")


class PageHeaders:
    """Security headers on the HTML the app renders (the search page, its results partial,
    error pages): a content security policy, no framing, no type sniffing. A header a route
    set itself is kept."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(_EXPLORER):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                if dict(headers).get(b"content-type", b"").startswith(b"text/html"):
                    headers += [(n, v) for n, v in PAGE_HEADERS if n not in names]
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def allowed_hosts(settings: Settings) -> list[str] | None:
    """The Host names to answer (None: any): ``settings.allowed_hosts``, or for a server on a
    loopback address the loopback names."""
    if settings.allowed_hosts is not None:
        names = [h.strip().lower() for h in settings.allowed_hosts]
        return None if "*" in names else names
    try:
        loopback = ipaddress.ip_address(settings.host).is_loopback
    except ValueError:
        loopback = settings.host.lower() == "localhost"
    return list(LOOPBACK_NAMES) if loopback else None


class HostCheck:
    """Answer only requests whose Host header names this server.

    A server on 127.0.0.1 with open reads is reachable by any page the user's browser loads:
    a site whose name first resolves to its own server, then to 127.0.0.1 (DNS rebinding),
    is then same-origin with the API and reads the user's files through it. Its requests
    still carry its own name in Host, which is refused here.
    """

    def __init__(self, app: ASGIApp, names: list[str]) -> None:
        self.app = app
        self.names = set(names)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            host = _host_name(dict(scope.get("headers", [])).get(b"host", b""))
            if host and host not in self.names:
                message = (
                    f"this server answers to {', '.join(sorted(self.names))} only, not {host!r} "
                    "(a guard against DNS rebinding); set CROSSFIND_ALLOWED_HOSTS to add a name"
                )
                await JSONResponse({"status": 400, "message": message}, 400)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _host_name(header: bytes) -> str:
    """The name in a Host header, without its port ("[::1]:8000" -> "::1")."""
    host = header.decode("latin-1").strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def create_app(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    encoder: Encoder | None = None,
    index_fn: IndexFn | None = None,
) -> FastAPI:
    """The app over ``settings.db``, or over a ready ``engine`` (tests inject one).

    Models load in the lifespan, not here: building the app is instant.
    """
    settings = settings or get_settings()
    services = Services(settings, engine=engine, encoder=encoder, index_fn=index_fn)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await anyio.to_thread.run_sync(services.start)
        yield
        services.close()

    app = FastAPI(
        title="crossfind",
        version="0.1.0",
        description=(
            "Cross-media semantic search over text, images and audio. Reads are open unless the "
            "server runs with `CROSSFIND_OPEN_READS=false`; writes need `X-API-Key`."
        ),
        lifespan=lifespan,
    )
    app.state.services = services
    app.state.templates = Jinja2Templates(directory=HERE / "templates")
    app.state.templates.env.globals["settings"] = settings
    install_error_handlers(app)
    app.include_router(api.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.add_middleware(BodyLimit, max_bytes=int(settings.max_upload_mb * 1_000_000 * _BODY_FACTOR))
    app.add_middleware(PageHeaders)
    names = allowed_hosts(settings)
    if names is not None:
        app.add_middleware(HostCheck, names=names)  # outermost: refused before anything runs
    return app
