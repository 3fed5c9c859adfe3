"""Which file on disk an item may serve, and with what content type.

Only files the index holds are ever served: the path comes from the catalog (never from the
URL), and ``search.access`` decides whether it may still be read (inside the recorded roots,
the same file that was indexed).
"""

from __future__ import annotations

import mimetypes
from pathlib import Path

from search.access import Gate
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


def media_path(catalog: Catalog, info: SegmentInfo) -> Path:
    """The on-disk file to serve for ``info``: the real path of its first path that passes
    ``search.access`` (inside the recorded roots, the same size and time as indexed).

    Raises:
        NotFound: none of the item's paths is still the file that was indexed.
    """
    readable = Gate(catalog).readable(info, hash_small=True)
    if readable:
        return Path(readable[0][1])
    raise NotFound(
        f"the file of item {info.id} is gone or changed since it was indexed; "
        "re-run `crossfind index` on its folder"
    )


def media_type(path: Path, modality: str) -> str:
    """The Content-Type to serve: text items always as plain text (never HTML that would run)."""
    if modality == "text":
        return "text/plain; charset=utf-8"
    suffix = path.suffix.lower()
    guessed = _TYPES.get(suffix) or mimetypes.guess_type(path.name)[0]
    if guessed and guessed.split("/")[0] == modality:
        return guessed
    return _FALLBACK.get(modality, "application/octet-stream")
