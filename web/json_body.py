"""A cap on the number of values in a JSON request body, checked before it is parsed.

The body cap (``BodyLimit``) allows 30 MB, room for a base64 image. Spent on values instead,
30 MB is ten million of them: parsing builds ten million Python objects, and validation then
makes an error record for each one it refuses (README, "Query limits", has the cost). A query
needs a few hundred values at most (16 parts, a few filters, up to 256 extensions), so more
than ``MAX_JSON_VALUES`` are refused unread.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Coroutine
from typing import Any

import anyio.to_thread
from fastapi import Request, Response
from fastapi.routing import APIRoute

from search.errors import PayloadTooLarge

MAX_JSON_VALUES = 10_000
# a JSON string, escapes included (the unrolled loop: no backtracking per character)
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_FORMS = ("multipart/form-data", "application/x-www-form-urlencoded")


def json_values(body: bytes) -> int:
    """About how many values ``body`` holds (each but the first of an array or object follows
    a comma): its commas and opening brackets outside strings, counted until past the cap."""
    rough = _structural(body, 0, len(body))
    if rough <= MAX_JSON_VALUES:  # commas inside strings count too: an upper bound
        return rough
    encoding = json.detect_encoding(body)  # what json.loads will read it as
    if not encoding.startswith("utf-8"):
        # in UTF-16/32 a character's bytes may hold a quote (U+2200 is 00 22) that would hide
        # the commas after it from the byte scan below: count the UTF-8 of the same text
        try:
            body = body.decode(encoding).encode("utf-8", "surrogatepass")
        except UnicodeError:  # json.loads fails on it too, before any value is made
            return 0
    count, pos = 0, 0
    for string in _STRING.finditer(body):  # one at a time: memory stays flat
        count += _structural(body, pos, string.start())
        if count > MAX_JSON_VALUES:
            return count
        pos = string.end()
    return count + _structural(body, pos, len(body))


def _structural(body: bytes, start: int, end: int) -> int:
    return body.count(b",", start, end) + body.count(b"[", start, end) + body.count(b"{", start, end)


class JsonLimitRoute(APIRoute):
    """A route whose JSON body (FastAPI parses one also when no content type is sent) is
    refused with 413 when it holds more than ``MAX_JSON_VALUES`` values."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()
        if self.body_field is None:  # takes no body: nothing is read
            return handle

        async def guarded(request: Request) -> Response:
            kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if request.method in ("POST", "PUT", "PATCH") and kind not in _FORMS:
                body = await request.body()  # kept by the request: FastAPI reads it from there
                if len(body) > MAX_JSON_VALUES and (
                    await anyio.to_thread.run_sync(json_values, body) > MAX_JSON_VALUES
                ):
                    raise PayloadTooLarge(
                        f"the JSON body holds more than {MAX_JSON_VALUES:,} values; a query "
                        "has at most 16 parts and a few filters"
                    )
            return await handle(request)

        return guarded
