"""Dependencies (``Depends`` + ``Annotated`` aliases): the app's services and access checks.

Writes need ``CROSSFIND_API_KEY`` in the ``X-API-Key`` header, which another site's form or
script cannot send (no CSRF). Reads are open unless ``open_reads`` is off; then they need the
key too, as the header or as the password of HTTP Basic auth, so a browser can log in to the
page.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from search.engine import Engine
from search.errors import Forbidden
from search.settings import Settings
from web.errors import Unauthorized
from web.services import Services

api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="the server's CROSSFIND_API_KEY"
)


# The dependencies that only read attributes are ``async def``: FastAPI runs a plain ``def``
# dependency in the thread pool, a thread hop per dependency per request for no blocking work.
async def get_services(request: Request) -> Services:
    return request.app.state.services


async def get_settings(services: Annotated[Services, Depends(get_services)]) -> Settings:
    return services.settings


def get_engine(services: Annotated[Services, Depends(get_services)]) -> Engine:
    # a plain def: the first call may open the index and load its encoder (blocking)
    return services.require_engine()


def _given_key(request: Request, header: str | None) -> str | None:
    if header:
        return header
    auth = request.headers.get("authorization", "")
    if auth[:6].lower() == "basic ":
        try:
            return base64.b64decode(auth[6:], validate=True).decode().partition(":")[2] or None
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
    return None


def _check_key(settings: Settings, given: str | None, what: str) -> None:
    if not settings.api_key:
        raise Forbidden(f"{what} are disabled: start the server with CROSSFIND_API_KEY set")
    if given is None:
        raise Unauthorized(f"{what} need the API key: send it in the X-API-Key header")
    if not hmac.compare_digest(given.encode(), settings.api_key.encode()):
        raise Forbidden("wrong API key")


async def require_write_key(
    settings: Annotated[Settings, Depends(get_settings)],
    key: Annotated[str | None, Security(api_key_header)],
) -> None:
    # the header only: a browser replays Basic credentials on cross-site form posts
    _check_key(settings, key or None, "writes")


async def require_read_access(
    request: Request, settings: Annotated[Settings, Depends(get_settings)]
) -> None:
    # not a declared security scheme: reads are open by default, and the schema says so
    if not settings.open_reads:
        _check_key(settings, _given_key(request, request.headers.get("x-api-key")), "reads")


ServicesDep = Annotated[Services, Depends(get_services)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
EngineDep = Annotated[Engine, Depends(get_engine)]
ReadAccess = Depends(require_read_access)
WriteAccess = Depends(require_write_key)
