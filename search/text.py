"""Text normalisation and overlapping passages with character offsets into the original."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

_WORD = re.compile(r"\S+")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Passage:
    text: str  # normalised passage text (what is embedded and shown)
    char_start: int  # offsets into the decoded original text
    char_end: int


def normalize(text: str) -> str:
    """NFKC, control characters dropped, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text)
    text = "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch)[0] != "C")
    return _SPACE.sub(" ", text).strip()


def split_passages(text: str, words: int = 120, overlap: int = 30) -> list[Passage]:
    """Windows of ``words`` words, each overlapping the previous by ``overlap`` words.

    Short texts give one passage; an empty text gives none.
    """
    if words <= 0 or not 0 <= overlap < words:
        raise ValueError("need words > 0 and 0 <= overlap < words")
    spans = [m.span() for m in _WORD.finditer(text)]
    if not spans:
        return []
    step = words - overlap
    out = []
    start = 0
    while True:
        window = spans[start : start + words]
        a, b = window[0][0], window[-1][1]
        out.append(Passage(normalize(text[a:b]), a, b))
        if start + words >= len(spans):
            break
        start += step
    return out


def decode_text(data: bytes) -> str:
    """UTF-8 (with or without BOM) or UTF-16 with BOM; anything else raises UnicodeDecodeError."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    text = data.decode("utf-8-sig")
    if "\x00" in text:
        raise UnicodeDecodeError("utf-8", data, 0, 1, "NUL bytes: binary, not text")
    return text
