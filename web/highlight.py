"""Text snippets for the page: a window around the first matching word, matches in <mark>."""

from __future__ import annotations

import re

from markupsafe import Markup, escape

_WORD = re.compile(r"\w+", re.UNICODE)
# words too common to be worth marking
_STOP = frozenset(
    [
        "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "has", "in", "is", "it",
        "its", "of", "on", "or", "that", "the", "to", "was", "were", "with",
    ]
)


def query_terms(texts: list[str]) -> list[str]:
    """Distinct lower-case words of the query texts worth highlighting, longest first."""
    words = {w.lower() for t in texts for w in _WORD.findall(t)}
    return sorted((w for w in words if len(w) > 1 and w not in _STOP), key=len, reverse=True)


def highlight(text: str | None, terms: list[str], width: int = 260) -> Markup:
    """``text`` cut to about ``width`` characters around the first match, HTML-escaped, with
    words that start with a query term wrapped in ``<mark>`` (so "dog" marks "dogs")."""
    if not text:
        return Markup("")
    pattern = (
        re.compile(r"\b(" + "|".join(re.escape(t) for t in terms) + r")\w*", re.IGNORECASE)
        if terms
        else None
    )
    start = 0
    first = pattern.search(text) if pattern else None
    if first and first.start() > width // 3:
        start = text.rfind(" ", 0, first.start() - width // 3) + 1
    end = min(len(text), start + width)
    if end < len(text):
        cut = text.rfind(" ", start, end)
        end = cut if cut > start else end
    window = text[start:end]
    if pattern is None:
        body = escape(window)
    else:
        pieces, last = [], 0
        for m in pattern.finditer(window):
            pieces.append(escape(window[last : m.start()]))
            pieces.append(Markup("<mark>") + escape(m.group(0)) + Markup("</mark>"))
            last = m.end()
        pieces.append(escape(window[last:]))
        body = Markup("").join(pieces)
    lead = Markup("… ") if start > 0 else Markup("")
    tail = Markup(" …") if end < len(text) else Markup("")
    return lead + body + tail
