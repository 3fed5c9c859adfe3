"""What a file is: its content's magic bytes first, its extension second."""

from __future__ import annotations

import os
from dataclasses import dataclass

HEAD_BYTES = 64

TEXT_EXTS = frozenset({".txt", ".md"})
IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
AUDIO_EXTS = frozenset({".wav", ".flac", ".ogg", ".mp3"})
# documents are indexed as text (their passages); each format has its own reader
DOCUMENT_EXTS = frozenset({".pdf", ".html", ".htm", ".docx"})
VIDEO_EXTS = frozenset({".mp4", ".m4v", ".mkv", ".webm", ".mov", ".avi"})

# content kind -> modality
_MODALITY = {
    "JPEG": "image",
    "PNG": "image",
    "GIF": "image",
    "WebP": "image",
    "BMP": "image",
    "TIFF": "image",
    "WAV": "audio",
    "FLAC": "audio",
    "Ogg": "audio",
    "MP3": "audio",
    "text": "text",
    "PDF": "text",
    "MP4": "video",
    "Matroska": "video",
    "AVI": "video",
}
# containers whose streams or pages the video and document readers handle
_CONTAINERS = ("PDF", "MP4", "Matroska", "AVI")


def modality_of_extension(path: str) -> str | None:
    """The modality an extension names, or None when crossfind does not index that extension."""
    ext = os.path.splitext(path)[1].lower()
    if ext in TEXT_EXTS or ext in DOCUMENT_EXTS:
        return "text"
    if ext in VIDEO_EXTS:
        return "video"
    if ext in IMAGE_EXTS:
        return "image"
    if ext in AUDIO_EXTS:
        return "audio"
    return None


def sniff(head: bytes) -> str:
    """The kind of content that starts with ``head``: a format name (JPEG, PNG, ... MP3),
    ``text``, ``empty`` or ``binary`` (unknown)."""
    if not head:
        return "empty"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a") and not _looks_like_text(head):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "WAV"
    if head[:2] == b"BM" and head[6:10] == b"\0\0\0\0":  # reserved fields are zero
        return "BMP"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if head[:4] == b"fLaC":
        return "FLAC"
    if head[:5] == b"OggS\x00":
        return "Ogg"
    if head[:3] == b"ID3" and len(head) >= 10 and head[3] in (2, 3, 4) and head[4] == 0:
        return "MP3"
    if head.startswith(b"%PDF-"):
        return "PDF"
    if head.startswith(b"PK\x03\x04"):
        return "ZIP"
    if head.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        return "OLE"  # legacy Office, or an encrypted Office document
    if head[:1] == b"\0" and head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free"):
        return "MP4"  # ISO base media (mp4, m4v, mov): a box size (big-endian), then its type
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "Matroska"  # mkv, webm
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "AVI"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "text"  # a UTF-16 byte-order mark (FF FE would also pass for an MPEG sync)
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] & 0x06:
        return "MP3"  # an MPEG audio frame sync with a valid layer
    if _looks_like_text(head):
        return "text"
    return "binary"


def _looks_like_text(head: bytes) -> bool:
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return True  # UTF-16 with BOM
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # a multi-byte character cut by the end of the head is still text
        return exc.start >= len(head) - 3 and exc.reason == "unexpected end of data"
    return True


@dataclass(frozen=True)
class Verdict:
    """``modality`` to index the file as, or ``reason`` to skip it."""

    modality: str | None
    kind: str
    reason: str | None = None


def classify(path: str, head: bytes) -> Verdict:
    """Decide how to index a file with a known extension from its first bytes.

    Content wins where it is a known media format (a PNG named ``.txt`` is indexed as an
    image); a text extension with text content is text; anything else is skipped with a reason.
    """
    kind = sniff(head)
    by_ext = modality_of_extension(path)
    ext = os.path.splitext(path)[1].lower()
    if kind == "empty":
        return Verdict(None, kind, "empty file")
    if kind == "ZIP" and ext == ".docx":
        return Verdict("text", "DOCX")
    if kind == "OLE" and ext == ".docx":
        return Verdict(None, kind, "encrypted or legacy Word document (not a DOCX package)")
    if ext in (".pdf", ".docx") and kind not in _CONTAINERS:
        what = {"text": "text", "ZIP": "a ZIP archive"}.get(kind, "data of no known format")
        return Verdict(None, kind, f"wrong extension: content is {what}, not a {ext} document")
    if by_ext == "text" and kind == "text":
        return Verdict("text", kind)
    by_content = _MODALITY.get(kind)
    if by_content in ("image", "audio") or kind in _CONTAINERS:
        return Verdict(by_content, kind)
    if by_ext == "text":
        return Verdict(None, kind, "not UTF-8 text")
    what = {"text": "text", "ZIP": "a ZIP archive"}.get(kind, "data of no known format")
    return Verdict(None, kind, f"wrong extension: content is {what}, not {by_ext}")
