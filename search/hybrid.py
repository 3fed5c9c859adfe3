"""Hybrid text search: keyword hits (SQLite FTS5, or PostgreSQL full-text search) added as
evidence to the vector ranking.

Keyword hits come in three tiers, each ordered by BM25: the exact phrase, then all the content
words (AND), then any word that is rare both in the index (one in at most ~1% of the passages)
and in English (``search.lexicon``), so a rare name or an exact phrase finds its document even
where the embedding misses it. Each hit carries *lexical evidence* (0..``MAX_EVIDENCE``): its
tier, how specific the matched words are in English (not in the index: in a 150-passage index
every word is "rare"), the share of the query's words it matched and its BM25 strength.
With meaning support (its own vector is a fair match), a hit's words count however everyday
they are (``KeywordHit.supported``).

The fusion adds evidence instead of votes, in two steps. First (``blend_lexical``, early
fusion) every keyword hit's place is its cosine plus ``LEXICAL_WEIGHT`` x its match (coverage
of the query's words x BM25 strength, 0..1): the words a passage shares with the query lift it
a little, so of two passages about as close in meaning the one that says what was typed comes
first, and one far in meaning stays far. Then (``merge_evidence``) a hit of strong lexical
evidence (``STRONG_EVIDENCE``: an exact phrase, all the words, a rare name) combines it with
its meaning (its calibrated relevance) as independent evidence,
``p = 1 - (1 - relevance) * (1 - lexical)``, and moves up above the hits whose relevance is
below ``p``: a rare name or an exact phrase enters high even where the embedding misses it,
but not above a meaning hit stronger than its evidence. (Placing every keyword hit by evidence
put passages sharing one everyday word above the photos and clips a query meant; the weight
and the threshold were chosen on the training-side corpus of ``crossfind eval-mixed --side
dev``, dev queries.) User text never reaches FTS5 as syntax: it is split into word
tokens and every token is quoted.

On PostgreSQL the same tiers run over the catalog's ``tsvector`` column (GIN index): the
phrase as ``w1 <-> w2``, all words as ``w1 & w2``, one word alone, ranked by ``ts_rank_cd``
(its strength in place of BM25's). Words are tokenised in Python on both sides
(``search.dialect.fts_words``), so no user text reaches ``to_tsquery`` as syntax.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from search.catalog import Catalog
from search.dialect import fts_words
from search.lexicon import rarity

_TOKEN = re.compile(r"\w+", re.UNICODE)
# more words than this make the AND tier pointless; longer queries are cut
MAX_TOKENS = 32
# a word in at most this share of passages (and at least RARE_MIN of them) counts as rare
RARE_SHARE = 0.01
RARE_MIN = 1
# never content words, however rare: function words and very short tokens
_STOPWORDS = frozenset(
    [
        "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "from", "has", "have", "in",
        "is", "it", "its", "of", "on", "or", "that", "the", "this", "to", "was", "were", "will",
        "with", "my", "our", "your", "their", "his", "her", "some", "into", "onto",
    ]
)
# the rare-word tier runs only when the phrase and AND tiers found fewer hits than this
RARE_FALLBACK = 10
# lexical evidence: the cap (no keyword match alone is certain), the tiers' weights, and how
# much each further word of a phrase (or of an all-words match) makes the match more specific
MAX_EVIDENCE = 0.97
TIER_WEIGHT = {"phrase": 1.0, "all": 1.0, "any": 0.6}
EXTRA_WORD_COMMONNESS = {"phrase": 0.5, "all": 0.75, "any": 1.0}
# a word's weight in the query's coverage: its rarity plus this (everyday words count a little)
COVERAGE_FLOOR = 0.2
# meaning support: none at this calibrated relevance of the hit's own vector, full from
# SUPPORT_FULL on (a generic query's best match calibrates to ~0.73, an average pair to ~0)
SUPPORT_FROM = 0.3
SUPPORT_FULL = 0.7
# the weight of a keyword hit's match (coverage x BM25 strength, 0..1) added to its cosine
LEXICAL_WEIGHT = 0.2
# lexical evidence from which a keyword hit is also placed by its evidence (``merge_evidence``)
STRONG_EVIDENCE = 0.5


def fts_tokens(text: str) -> list[str]:
    """The words of ``text`` as FTS5 string literals (quoted; quotes cannot occur in \\w+)."""
    return [f'"{t}"' for t in _TOKEN.findall(text.lower())[:MAX_TOKENS]]


def content_words(tokens: list[str]) -> list[str]:
    """The distinct words of quoted ``tokens`` that carry meaning (no function words)."""
    words = [t.strip('"') for t in dict.fromkeys(tokens)]
    content = [w for w in words if len(w) >= 2 and w not in _STOPWORDS]
    return content or words


_MATCH_SQL = (
    "SELECT rowid, bm25(passages_fts) FROM passages_fts WHERE passages_fts MATCH ? "
    "ORDER BY bm25(passages_fts) LIMIT ?"
)
_COUNT_SQL = "SELECT count(*) FROM (SELECT 1 FROM passages_fts WHERE passages_fts MATCH ? LIMIT ?)"


# PostgreSQL: the same statements over the tsvector column ('simple': the words as stored);
# ts_rank_cd is the strength (positive, higher is better)
_PG_MATCH_SQL = (
    "SELECT rowid, -ts_rank_cd(tsv, q) FROM passages_fts, to_tsquery('simple', ?) AS q"
    " WHERE tsv @@ q ORDER BY ts_rank_cd(tsv, q) DESC, rowid LIMIT ?"
)
_PG_COUNT_SQL = (
    "SELECT count(*) FROM (SELECT 1 FROM passages_fts WHERE tsv @@ to_tsquery('simple', ?) LIMIT ?) AS m"
)


class _Syntax:
    """How one engine's reader writes the tiers' match expressions."""

    def __init__(self, conn: Any, postgres: bool) -> None:
        self.conn = conn
        self.postgres = postgres
        self.match_sql = _PG_MATCH_SQL if postgres else _MATCH_SQL
        self.count_sql = _PG_COUNT_SQL if postgres else _COUNT_SQL
        self.match_in = "tsv @@ to_tsquery('simple', ?)" if postgres else "passages_fts MATCH ?"

    def tokens(self, text: str) -> list[str]:
        """Quoted word tokens (PostgreSQL: the words as its tsvectors hold them)."""
        if self.postgres:
            return [f'"{w}"' for w in fts_words(text)[:MAX_TOKENS]]
        return fts_tokens(text)

    def word(self, word: str) -> str:
        return word if self.postgres else f'"{word}"'

    def phrase(self, tokens: list[str]) -> str:
        bare = [t.strip('"') for t in tokens]
        return " <-> ".join(bare) if self.postgres else '"' + " ".join(bare) + '"'

    def all_of(self, words: list[str]) -> str:
        return (" & " if self.postgres else " AND ").join(self.word(w) for w in words)


def _match(syntax: _Syntax, expr: str, limit: int) -> list[tuple[int, float]]:
    """(rowid, BM25 strength > 0) best first (FTS5's bm25 is negative, lower is better)."""
    rows = syntax.conn.execute(syntax.match_sql, (expr, limit)).fetchall()
    return [(int(r[0]), -float(r[1])) for r in rows]


def _rare_words(syntax: _Syntax, words: list[str], total: int) -> list[str]:
    """The words found in few passages; counting stops at the cap, so a common word costs no
    more than a rare one. (Few passages in a small index is no proof of a rare word: the
    evidence such a match carries is weighed by ``rarity``.)"""
    cap = max(RARE_MIN, int(total * RARE_SHARE))
    rare = []
    for word in words:
        if len(word) < 3 or word in _STOPWORDS:
            continue
        n = syntax.conn.execute(syntax.count_sql, (syntax.word(word), cap + 1)).fetchone()[0]
        if n and n <= cap:
            rare.append(word)
    return rare


def _specificity(words: list[str], tier: str) -> float:
    """How unlikely a chance match on all of ``words`` is: 1 - the product of their
    commonness (1 - rarity), each further word of a phrase making it rarer still."""
    common = math.prod(1.0 - rarity(w) for w in words)
    return 1.0 - common * EXTRA_WORD_COMMONNESS[tier] ** max(0, len(words) - 1)


@dataclass(frozen=True)
class KeywordHit:
    id: int
    evidence: float  # lexical evidence alone, 0..MAX_EVIDENCE
    match: float  # how fully it matched the query's words (coverage x BM25), 0..1
    tier: str  # phrase | all | any

    def supported(self, meaning: float) -> float:
        """The lexical evidence given the relevance of the hit's own vector: with meaning
        support, matching the query's words counts however everyday they are."""
        support = min(1.0, max(0.0, (meaning - SUPPORT_FROM) / (SUPPORT_FULL - SUPPORT_FROM)))
        full = MAX_EVIDENCE * self.match
        return self.evidence + max(0.0, full - self.evidence) * support


def keyword_hits(
    catalog: Catalog, text: str, limit: int = 100, total: int | None = None
) -> list[KeywordHit]:
    """Passages matching ``text`` by keywords, best first, with their lexical evidence: the
    exact phrase, all the content words, and (when those find few) any rare word.
    ``total``: passages in the index (for "rare in the index")."""
    # the catalog's plain per-thread DB-API reader, as for the hit lookup: through
    # SQLAlchemy each of these small statements cost ~0.7 ms of Python, SQLite ~0.3 ms
    conn = catalog._reader()
    syntax = _Syntax(conn, catalog.postgres)
    tokens = syntax.tokens(text)
    if not tokens:
        return []
    words = content_words(tokens)
    found: dict[int, tuple[str, float, list[str]]] = {}

    def add(tier: str, rows: list[tuple[int, float]], matched: list[str] | None) -> None:
        for rowid, strength in rows:
            if rowid not in found:
                found[rowid] = (tier, strength, matched if matched is not None else words)

    add("phrase", _match(syntax, syntax.phrase(tokens), limit), None)
    if len(tokens) > 1:
        add("all", _match(syntax, syntax.all_of(words), limit), None)
        if len(found) < RARE_FALLBACK:
            if total is None:
                total = int(conn.execute("SELECT count(*) FROM segments").fetchone()[0] or 0)
            for word in _rare_words(syntax, words, total):
                add("any", _match(syntax, syntax.word(word), limit), [word])
            _merge_any(syntax, found, words)
    best = max((s for _, s, _ in found.values()), default=0.0)
    weights = {w: COVERAGE_FLOOR + rarity(w) for w in words}
    hits = []
    for rowid, (tier, strength, matched) in found.items():
        coverage = sum(weights[w] for w in matched) / sum(weights.values())
        bm25 = math.sqrt(strength / best) if best > 0 else 1.0
        evidence = MAX_EVIDENCE * TIER_WEIGHT[tier] * _specificity(matched, tier) * coverage * bm25
        hits.append(KeywordHit(rowid, evidence, coverage * bm25, tier))
    order = {"phrase": 0, "all": 1, "any": 2}
    hits.sort(key=lambda h: (order[h.tier], -h.evidence))
    return hits[:limit]


def _merge_any(syntax: _Syntax, found: dict[int, tuple[str, float, list[str]]],
               words: list[str]) -> None:
    """An any-word hit that matched several of the rare words: record them all (one lookup
    per word among those hits)."""
    any_ids = [i for i, (tier, _, _) in found.items() if tier == "any"]
    if not any_ids:
        return
    placeholders = ",".join("?" * len(any_ids))
    have: dict[int, list[str]] = {i: [] for i in any_ids}
    for word in words:
        rows = syntax.conn.execute(
            f"SELECT rowid FROM passages_fts WHERE {syntax.match_in} AND rowid IN ({placeholders})",
            (syntax.word(word), *any_ids),
        ).fetchall()
        for (rowid,) in rows:
            have[int(rowid)].append(word)
    for rowid in any_ids:
        tier, strength, _ = found[rowid]
        found[rowid] = (tier, strength, have[rowid] or found[rowid][2])


def keyword_ids(catalog: Catalog, text: str, limit: int = 100, total: int | None = None) -> list[int]:
    """Segment ids matching ``text`` by keywords, best first (see ``keyword_hits``)."""
    return [h.id for h in keyword_hits(catalog, text, limit, total)]


def blend_lexical(ids: np.ndarray, cosine: dict[int, float], match: dict[int, float]) -> np.ndarray:
    """Candidates ordered by their cosine plus ``LEXICAL_WEIGHT`` x their keyword match (0 for
    a candidate the keywords did not find): ``ids`` (the vector ranking) and the keyword hits
    in ``match``, each with its cosine in ``cosine``. Ties keep the vector order first."""
    pool = list(dict.fromkeys([*ids.tolist(), *match]))
    value = {i: cosine[i] + LEXICAL_WEIGHT * match.get(i, 0.0) for i in pool}
    return np.asarray(sorted(pool, key=lambda i: -value[i]), dtype=np.int64)


def merge_evidence(
    vector_ids: np.ndarray, vector_relevance: np.ndarray, keyword: dict[int, tuple[float, float]]
) -> tuple[np.ndarray, set[int]]:
    """Place keyword hits in the vector ranking by their combined evidence.

    Args:
        vector_ids: the vector ranking, best first; ``vector_relevance`` their relevance.
        keyword: id -> (lexical evidence, relevance of its own vector) for each keyword hit.

    Returns (ids best first, ids that matched by keyword). A keyword hit whose combined
    evidence ``1 - (1 - relevance) * (1 - lexical)`` exceeds the relevance of vector hits
    above it moves up just above the first of them it beats; a vector hit of equal evidence
    stays first. Without keyword hits the vector ranking comes back unchanged.
    """
    ids = vector_ids.tolist()
    if not keyword:
        return np.asarray(ids, dtype=np.int64), set()
    rel = np.asarray(vector_relevance, dtype=np.float64)
    position = {seg: pos for pos, seg in enumerate(ids)}
    keys: dict[int, tuple[float, float]] = {}
    for seg, (lexical, meaning) in keyword.items():
        combined = 1.0 - (1.0 - meaning) * (1.0 - lexical)
        beaten = np.nonzero(rel < combined)[0]
        place = float(beaten[0]) - 0.5 if len(beaten) else float(len(ids))
        own = position.get(seg)
        keys[seg] = (min(place, own) if own is not None else place, -combined)
    for pos, seg in enumerate(ids):
        keys.setdefault(seg, (float(pos), 0.0))
    order = sorted(keys, key=lambda s: keys[s])
    return np.asarray(order, dtype=np.int64), set(keyword)
