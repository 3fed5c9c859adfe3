"""Hybrid text search: SQLite FTS5 keyword hits fused with the vector ranking.

Keyword hits come in three tiers, each ordered by BM25: the exact phrase, then all the words
(AND), then any *rare* word (one in at most ~1% of the passages), so a rare name or an exact
phrase finds its document even where the embedding misses it. The vector list and the keyword
list are fused by reciprocal rank fusion. User text never reaches FTS5 as syntax: it is split
into word tokens and every token is quoted.
"""

from __future__ import annotations

import re

import numpy as np
from sqlalchemy import text as sql

from search.catalog import Catalog
from search.fusion import RRF_K

_TOKEN = re.compile(r"\w+", re.UNICODE)
# more words than this make the AND tier pointless; longer queries are cut
MAX_TOKENS = 32
# a word in at most this share of passages (and at least RARE_MIN of them) counts as rare
RARE_SHARE = 0.01
RARE_MIN = 5
# how much a keyword list counts next to the vector list in RRF
KEYWORD_WEIGHT = 1.0


def fts_tokens(text: str) -> list[str]:
    """The words of ``text`` as FTS5 string literals (quoted; quotes cannot occur in \\w+)."""
    return [f'"{t}"' for t in _TOKEN.findall(text.lower())[:MAX_TOKENS]]


def _match(catalog: Catalog, expr: str, limit: int) -> list[int]:
    with catalog.engine.connect() as conn:
        rows = conn.execute(
            sql("SELECT rowid FROM passages_fts WHERE passages_fts MATCH :q ORDER BY bm25(passages_fts) LIMIT :n"),
            {"q": expr, "n": limit},
        )
        return [int(r[0]) for r in rows]


def _rare_tokens(catalog: Catalog, tokens: list[str]) -> list[str]:
    """The tokens found in few passages (document frequency from an fts5vocab view)."""
    words = [t.strip('"') for t in tokens]
    with catalog.engine.connect() as conn:
        conn.execute(
            sql(
                "CREATE VIRTUAL TABLE IF NOT EXISTS temp.passages_vocab "
                "USING fts5vocab(main, passages_fts, row)"
            )
        )
        total = conn.execute(sql("SELECT count(*) FROM passages_fts")).scalar() or 0
        limit = max(RARE_MIN, int(total * RARE_SHARE))
        rare = []
        for word in dict.fromkeys(words):
            doc = conn.execute(sql("SELECT doc FROM temp.passages_vocab WHERE term = :t"), {"t": word}).scalar()
            if doc is not None and doc <= limit:
                rare.append(f'"{word}"')
        return rare


def keyword_ids(catalog: Catalog, text: str, limit: int = 100) -> list[int]:
    """Segment ids matching ``text`` by keywords, best first (phrase, all words, rare words)."""
    tokens = fts_tokens(text)
    if not tokens:
        return []
    out: dict[int, None] = {}
    tiers = [" ".join(t.strip('"') for t in tokens)]  # the phrase, as one quoted string
    tiers[0] = f'"{tiers[0]}"'
    if len(tokens) > 1:
        tiers.append(" AND ".join(tokens))
        rare = _rare_tokens(catalog, tokens)
        if rare:
            tiers.append(" OR ".join(rare))
    for expr in tiers:
        for rowid in _match(catalog, expr, limit):
            out.setdefault(rowid, None)
        if len(out) >= limit:
            break
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
