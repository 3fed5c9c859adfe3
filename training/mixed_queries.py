"""The query set of ``crossfind eval-mixed`` (``mixed_queries.jsonl`` next to this file) and
how each query judges the corpus.

One JSON object a line: ``id``, ``type`` (photo | sound | topic | mixed | absent_audio),
``query`` (the text typed) and ``judge``, the rule per modality: ``image`` a regex searched in
each of a photo's captions (relevant when any caption matches), ``audio`` a list of labels,
``text`` a regex searched in a text's title and body. A list of regexes instead of one means
all of them (in the same caption). A modality the judge does not name has
nothing relevant in it. Regexes are case-insensitive. ``absent_audio`` queries ask for sounds
whose class is not in the corpus; they are measured apart (``absent_audio`` in the report).

Every query belongs to one half, ``dev`` or ``test``, fixed by a hash of its id (``split``):
settings are chosen with the dev half on the training-side corpus (``eval-mixed --side dev``)
and reported with the test half on the test corpus, so no figure reported is one it was tuned on.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from search.errors import BadRequest
from training.mixed_corpus import CorpusItem

QUERIES = Path(__file__).with_name("mixed_queries.jsonl")
TYPES = ("photo", "sound", "topic", "mixed", "absent_audio")


@dataclass(frozen=True)
class MixedQuery:
    id: str
    type: str
    query: str
    image: tuple[re.Pattern[str], ...] = ()
    audio: frozenset[str] = field(default_factory=frozenset)
    text: tuple[re.Pattern[str], ...] = ()

    @property
    def split(self) -> str:
        """``dev`` or ``test``: the half of the query set this query belongs to (by its id)."""
        return "dev" if hashlib.sha256(self.id.encode()).digest()[0] % 2 == 0 else "test"

    def relevant(self, item: CorpusItem) -> bool:
        """Whether ``item`` answers this query by its rule for the item's modality."""
        if item.modality == "image":
            return bool(self.image) and any(_all(self.image, c) for c in item.text.splitlines())
        if item.modality == "audio":
            return item.label in self.audio
        if item.modality == "text":
            return bool(self.text) and _all(self.text, item.text)
        return False


def _all(patterns: tuple[re.Pattern[str], ...], text: str) -> bool:
    return all(p.search(text) for p in patterns)


def _compile(pattern: object, where: str) -> tuple[re.Pattern[str], ...]:
    if pattern is None:
        return ()
    try:
        if isinstance(pattern, list):
            return tuple(re.compile(str(p), re.IGNORECASE) for p in pattern)
        return (re.compile(str(pattern), re.IGNORECASE),)
    except re.error as exc:
        raise BadRequest(f"{where}: bad regex {pattern!r}: {exc}") from None


def read_queries(path: Path = QUERIES) -> list[MixedQuery]:
    """The queries of a JSONL file (format in the module docstring)."""
    out = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise BadRequest(f"cannot read the query file {path}: {exc.strerror}") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            row = json.loads(line)
            judge = row.get("judge", {})
            query = MixedQuery(
                id=str(row["id"]), type=str(row["type"]), query=str(row["query"]),
                image=_compile(judge.get("image"), where),
                audio=frozenset(judge.get("audio", ())),
                text=_compile(judge.get("text"), where),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BadRequest(f"{where}: not a query line ({exc!r})") from None
        if query.type not in TYPES:
            raise BadRequest(f"{where}: type {query.type!r} is not one of {', '.join(TYPES)}")
        out.append(query)
    return out
