"""``create_app``: the FastAPI application, its lifespan (models load once) and its limits."""

from __future__ import annotations

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
    return app
