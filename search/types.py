"""Typed records shared across crossfind."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from search.paths import shown


class Modality(str, Enum):
    TEXT = "text"
    IMAGE = "image"
    AUDIO = "audio"
    VIDEO = "video"

    def __str__(self) -> str:
        return self.value


@dataclass
class Hit:
    """One search result: a segment (whole image, text passage or audio window) of an item."""

    id: int
    path: str
    modality: str
    score: float
    content_id: int = 0
    paths: list[str] = field(default_factory=list)
    snippet: str | None = None
    char_start: int | None = None
    char_end: int | None = None
    start_s: float | None = None
    end_s: float | None = None
    page: int | None = None  # a document's 1-based page
    stream: str | None = None  # a video's "frame" or "sound"
    ocr: bool = False  # found through text read off the image (the snippet)
    mtime_ns: int = 0  # the file's modified time (the newest of its paths); not in the JSON
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The JSON contract: id, path, modality, score always; the rest when known."""
        out: dict[str, Any] = {
            "id": self.id,
            "path": shown(self.path),
            "modality": self.modality,
            "score": round(float(self.score), 6),
        }
        for key in ("snippet", "char_start", "char_end", "start_s", "end_s", "page", "stream"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.ocr:
            out["ocr"] = True
        if len(self.paths) > 1:
            out["paths"] = [shown(p) for p in self.paths]
        out.update(self.extra)
        return out
