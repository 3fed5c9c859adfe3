"""The exception hierarchy of crossfind.

Every error carries the HTTP status the web layer answers with, so one handler can turn any of
them into JSON (datasette's ``Base400`` style). Messages name the fix where there is one.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator


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


class DamagedStore(Conflict):
    """The derived vector index (a FAISS base file, a Milvus Lite file) cannot be read. The
    catalog holds every vector, so a writer's open (``crossfind index``) sets it aside and
    builds it again; nothing is embedded again."""

    def __init__(self, path: object, why: str) -> None:
        self.path = path
        self.why = why
        super().__init__(
            f"{why}; run `crossfind index` on the indexed folders with the same --db to rebuild it "
            "from the stored vectors (nothing is embedded again), or rebuild the index with --reindex"
        )


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


class DiskFull(CrossfindError):
    """A write ran out of space (ENOSPC, EDQUOT, SQLite's "database or disk is full")."""

    status = 507  # Insufficient Storage

    @classmethod
    def writing(cls, root: object) -> DiskFull:
        return cls(
            f"no space left on device writing {root}; free space and re-run: nothing indexed "
            "so far is lost"
        )

    @classmethod
    def reading(cls, root: object) -> DiskFull:
        return cls(
            f"no space left on device to open the index at {root} (SQLite needs room for its "
            "shared-memory file); free space and search again: the index is intact"
        )

    @classmethod
    def of(cls, exc: BaseException, root: object) -> DiskFull:
        """The message for full-disk ``exc``: a reader that could not open, or a write."""
        return cls.reading(root) if _sqlite_code(exc) == _SQLITE_IOERR_SHMSIZE else cls.writing(root)


_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_SQLITE_FULL = 13
_PG_DISK_FULL = "53100"  # PostgreSQL SQLSTATE disk_full
# opening a WAL database (readers too) maps its -shm file: on a full disk that fails so
_SQLITE_IOERR_SHMSIZE = 4874


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    """``exc`` and what it was raised from or wraps (SQLAlchemy's ``.orig``), each once."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = getattr(exc, "orig", None) or exc.__cause__ or exc.__context__


def is_disk_full(exc: BaseException | None) -> bool:
    """Whether ``exc``, or an exception it was raised from, is a full disk: an OSError with
    ENOSPC/EDQUOT/EFBIG, FAISS's RuntimeError naming "No space left on device", or SQLite's
    SQLITE_FULL or SQLITE_IOERR_SHMSIZE (also wrapped in SQLAlchemy's OperationalError as
    ``.orig``)."""
    for e in _chain(exc):
        if isinstance(e, DiskFull):
            return True
        if isinstance(e, OSError) and e.errno in _FULL_ERRNOS:
            return True
        if getattr(e, "sqlite_errorcode", None) in (_SQLITE_FULL, _SQLITE_IOERR_SHMSIZE):
            return True
        if getattr(e, "sqlstate", None) == _PG_DISK_FULL:  # psycopg: the server's disk is full
            return True
        text = str(e)
        if "No space left on device" in text or "database or disk is full" in text:
            return True
    return False


def is_catalog_unreachable(exc: BaseException | None) -> bool:
    """Whether ``exc``, or what it wraps, is a PostgreSQL catalog that cannot be reached (the
    server down or restarting: psycopg's OperationalError), not a bug."""
    for e in _chain(exc):
        if type(e).__module__.startswith("psycopg") and any(
            c.__name__ == "OperationalError" for c in type(e).__mro__
        ):
            return True
    return False


def _sqlite_code(exc: BaseException) -> int | None:
    """The SQLite error code of ``exc`` or what it wraps, if any."""
    for e in _chain(exc):
        code = getattr(e, "sqlite_errorcode", None)
        if code is not None:
            return int(code)
    return None
