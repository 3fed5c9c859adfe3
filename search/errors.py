"""The exception hierarchy of crossfind.

Every error carries the HTTP status the web layer answers with, so one handler can turn any of
them into JSON (datasette's ``Base400`` style). Messages name the fix where there is one.
"""

from __future__ import annotations


class CrossfindError(Exception):
    """Base class; ``status`` is the HTTP status a web client should see."""

    status: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(CrossfindError):
    status = 400


class Unauthorized(CrossfindError):
    """No credentials where they are needed (e.g. a write without an API key)."""

    status = 401


class Forbidden(CrossfindError):
    status = 403


class NotFound(CrossfindError):
    status = 404


class Conflict(CrossfindError):
    status = 409


class PayloadTooLarge(CrossfindError):
    status = 413


class UnsupportedMedia(CrossfindError):
    """The input could not be decoded as the media it claims to be."""

    status = 415


class EncoderMismatch(Conflict):
    """An index was built with another encoder than the one asked for."""


class IndexLocked(Conflict):
    """Another process is writing to the index."""


class ModelUnavailable(CrossfindError):
    """Model weights are missing or cannot be fetched (offline)."""

    status = 503


class ModalityNotSupported(BadRequest):
    """The active encoder cannot embed this modality (e.g. audio without an audio encoder)."""


class Unprocessable(CrossfindError):
    """A well-formed request whose content does not validate."""

    status = 422


class ServiceUnavailable(CrossfindError):
    status = 503


class RequestTimeout(CrossfindError):
    """A search ran past the configured request timeout."""

    status = 504
