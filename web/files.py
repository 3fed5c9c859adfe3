"""Which file on disk an item may serve, and with what content type.

Only files the index holds are ever served: the path comes from the catalog (never from the
URL), and ``search.access`` decides whether it may still be read (inside the recorded roots,
the same file that was indexed).
"""

from __future__ import annotations

import mimetypes
import os
from pathlib import Path
from typing import Any, BinaryIO

from fastapi.responses import FileResponse
from starlette.types import Receive, Scope, Send

from search.access import Gate, reopen_path
from search.catalog import Catalog, SegmentInfo
from search.errors import NotFound

# types the stdlib table misses or gets wrong on some systems
_TYPES = {
    ".flac": "audio/flac",
    ".ogg": "audio/ogg",
    ".oga": "audio/ogg",
    ".opus": "audio/ogg",
    ".wav": "audio/wav",
    ".mp3": "audio/mpeg",
    ".m4a": "audio/mp4",
    ".aac": "audio/aac",
    ".webm": "audio/webm",
    ".webp": "image/webp",
    ".avif": "image/avif",
    ".heic": "image/heic",
}
_FALLBACK = {"image": "application/octet-stream", "audio": "application/octet-stream"}
_VIDEO_TYPES = {
    ".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime", ".webm": "video/webm",
    ".mkv": "video/x-matroska", ".avi": "video/x-msvideo",
}
# documents indexed as text served as themselves (HTML never: it would run)
_DOCUMENT_TYPES = {
    ".pdf": "application/pdf",
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
}


def open_media(catalog: Catalog, info: SegmentInfo) -> tuple[BinaryIO, Path]:
    """The file to serve for ``info``, opened: its first path that passes ``search.access``
    (inside the recorded roots, the same file as indexed), checked on the open descriptor, so
    a file or folder swapped for a link (or a FIFO) after the check is never what is read.
    Returns the open file and its real path. The caller closes it (``OpenFileResponse`` does).

    Raises:
        NotFound: none of the item's paths is still the file that was indexed.
    """
    opened = Gate(catalog).open(info)
    if opened is not None:
        return opened[0], Path(opened[1])
    raise NotFound(
        f"the file of item {info.id} is gone, changed or now outside the indexed folders since "
        "it was indexed; re-run `crossfind index` on its folder"
    )


class OpenFileResponse(FileResponse):
    """A ``FileResponse`` (ranges, HEAD, ETag) of a file already opened and checked: it is
    read through the descriptor (``/proc/self/fd/N``), never by name again, and closed once
    the response is sent or the client goes."""

    def __init__(self, fh: BinaryIO, path: Path, **kwargs: Any) -> None:
        super().__init__(reopen_path(fh, str(path)), stat_result=os.fstat(fh.fileno()), **kwargs)
        self._fh = fh

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._fh.close()


def media_type(path: Path, modality: str) -> str:
    """The Content-Type to serve: text items always as plain text (never HTML that would run)."""
    if modality == "text":  # a document as itself; HTML and the rest as text that cannot run
        return _DOCUMENT_TYPES.get(path.suffix.lower(), "text/plain; charset=utf-8")
    suffix = path.suffix.lower()
    if modality == "video":
        return _VIDEO_TYPES.get(suffix, "application/octet-stream")
    guessed = _TYPES.get(suffix) or mimetypes.guess_type(path.name)[0]
    if guessed and guessed.split("/")[0] == modality:
        return guessed
    return _FALLBACK.get(modality, "application/octet-stream")
