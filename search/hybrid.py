"""Hybrid text search: keyword hits (SQLite FTS5, or PostgreSQL full-text search) fused with
the vector ranking.

Keyword hits come in three tiers, each ordered by BM25: the exact phrase, then all the words
(AND), then any *rare* word (one in at most ~1% of the passages), so a rare name or an exact
phrase finds its document even where the embedding misses it. The vector list and the keyword
list are fused by reciprocal rank fusion. User text never reaches FTS5 as syntax: it is split
into word tokens and every token is quoted.

On PostgreSQL the same tiers run over the catalog's ``tsvector`` column (GIN index): the
phrase as ``w1 <-> w2``, all words as ``w1 & w2``, rare words as ``w1 | w2``, each ordered by
``ts_rank_cd``. Words are tokenised in Python on both sides (``search.dialect.fts_words``),
so no user text reaches ``to_tsquery`` as syntax.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from search.catalog import Catalog
from search.dialect import fts_words
from search.fusion import RRF_K

_TOKEN = re.compile(r"\w+", re.UNICODE)
# more words than this make the AND tier pointless; longer queries are cut
MAX_TOKENS = 32
# a word in at most this share of passages (and at least RARE_MIN of them) counts as rare
RARE_SHARE = 0.01
RARE_MIN = 1
# never "rare", however small the index: function words and very short tokens
_STOPWORDS = frozenset(
    [
        "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "from", "has", "have", "in",
        "is", "it", "its", "of", "on", "or", "that", "the", "this", "to", "was", "were", "will",
        "with",
    ]
)
# the rare-word tier runs only when the phrase and AND tiers found fewer hits than this
RARE_FALLBACK = 10
# how much a keyword list counts next to the vector list in RRF
KEYWORD_WEIGHT = 1.0


def fts_tokens(text: str) -> list[str]:
    """The words of ``text`` as FTS5 string literals (quoted; quotes cannot occur in \\w+)."""
    return [f'"{t}"' for t in _TOKEN.findall(text.lower())[:MAX_TOKENS]]


_MATCH_SQL = (
    "SELECT rowid FROM passages_fts WHERE passages_fts MATCH ? ORDER BY bm25(passages_fts) LIMIT ?"
)
_COUNT_SQL = "SELECT count(*) FROM (SELECT 1 FROM passages_fts WHERE passages_fts MATCH ? LIMIT ?)"
# PostgreSQL: the same statements over the tsvector column ('simple': the words as stored)
_PG_MATCH_SQL = (
    "SELECT rowid FROM passages_fts, to_tsquery('simple', ?) AS q WHERE tsv @@ q"
    " ORDER BY ts_rank_cd(tsv, q) DESC, rowid LIMIT ?"
)
_PG_COUNT_SQL = (
    "SELECT count(*) FROM (SELECT 1 FROM passages_fts WHERE tsv @@ to_tsquery('simple', ?) LIMIT ?) AS m"
)


class _Syntax:
    """How one engine writes the three tiers' match expressions over quoted word tokens."""

    def __init__(self, postgres: bool) -> None:
        self.postgres = postgres
        self.match_sql = _PG_MATCH_SQL if postgres else _MATCH_SQL
        self.count_sql = _PG_COUNT_SQL if postgres else _COUNT_SQL

    def tokens(self, text: str) -> list[str]:
        if self.postgres:
            return fts_words(text)[:MAX_TOKENS]
        return fts_tokens(text)

    def phrase(self, tokens: list[str]) -> str:
        if self.postgres:
            return " <-> ".join(tokens)
        return '"' + " ".join(t.strip('"') for t in tokens) + '"'

    def all_of(self, tokens: list[str]) -> str:
        return " & ".join(tokens) if self.postgres else " AND ".join(tokens)

    def any_of(self, tokens: list[str]) -> str:
        return " | ".join(tokens) if self.postgres else " OR ".join(tokens)


def _match(conn: Any, syntax: _Syntax, expr: str, limit: int) -> list[int]:
    return [int(r[0]) for r in conn.execute(syntax.match_sql, (expr, limit)).fetchall()]


def _rare_tokens(conn: Any, syntax: _Syntax, tokens: list[str], total: int) -> list[str]:
    """The tokens found in few passages; counting stops at the cap, so a common word costs
    no more than a rare one."""
    cap = max(RARE_MIN, int(total * RARE_SHARE))
    rare = []
    for token in dict.fromkeys(tokens):
        word = token.strip('"')
        if len(word) < 3 or word in _STOPWORDS:
            continue
        n = conn.execute(syntax.count_sql, (token, cap + 1)).fetchone()[0]
        if n and n <= cap:
            rare.append(token)
    return rare


def keyword_ids(catalog: Catalog, text: str, limit: int = 100, total: int | None = None) -> list[int]:
    """Segment ids matching ``text`` by keywords, best first: the exact phrase, all the words,
    and (when those find few) any rare word. ``total``: passages in the index (for "rare")."""
    syntax = _Syntax(catalog.postgres)
    tokens = syntax.tokens(text)
    if not tokens:
        return []
    out: dict[int, None] = {}
    # the catalog's plain per-thread DB-API reader, as for the hit lookup: through
    # SQLAlchemy each of these small statements cost ~0.7 ms of Python, SQLite ~0.3 ms
    conn = catalog._reader()
    out.update(dict.fromkeys(_match(conn, syntax, syntax.phrase(tokens), limit)))
    if len(tokens) > 1:
        out.update(dict.fromkeys(_match(conn, syntax, syntax.all_of(tokens), limit)))
        if len(out) < RARE_FALLBACK:
            if total is None:
                total = int(conn.execute("SELECT count(*) FROM segments").fetchone()[0] or 0)
            rare = _rare_tokens(conn, syntax, tokens, total)
            if rare:
                out.update(dict.fromkeys(_match(conn, syntax, syntax.any_of(rare), limit)))
    return list(out)[:limit]


def rrf_merge(
    vector_ids: np.ndarray, keyword_lists: list[tuple[list[int], float]]
) -> tuple[np.ndarray, np.ndarray, set[int]]:
    """Fuse the vector ranking with weighted keyword rankings by RRF.

    Returns (ids best first, fused scores, ids that matched by keyword). Without keyword hits
    the vector ranking comes back unchanged.
    """
    fused: dict[int, float] = {}
    for rank, seg in enumerate(vector_ids.tolist(), 1):
        fused[int(seg)] = 1.0 / (RRF_K + rank)
    matched: set[int] = set()
    for ids, weight in keyword_lists:
        for rank, seg in enumerate(ids, 1):
            fused[seg] = fused.get(seg, 0.0) + weight * KEYWORD_WEIGHT / (RRF_K + rank)
            matched.add(seg)
    # ties: a keyword match first (the best keyword hit shares the top with the best vector
    # hit), then the vector order (sorted is stable)
    order = sorted(fused, key=lambda i: (-fused[i], i not in matched))
    return (
        np.asarray(order, dtype=np.int64),
        np.asarray([fused[i] for i in order], dtype=np.float32),
        matched,
    )
