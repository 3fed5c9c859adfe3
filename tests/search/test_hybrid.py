"""Hybrid search: keyword hits (FTS5, PostgreSQL full-text) find what the embedding misses;
query syntax in user text is escaped."""

from __future__ import annotations

import numpy as np
import pytest

from search.catalog import SegmentIn
from search.hybrid import LEXICAL_WEIGHT, blend_lexical, fts_tokens, keyword_ids, merge_evidence
from search.query import Query
from tests.search.synthetic import engine_over

WORDS = ("red", "blue", "green", "cat", "dog", "house", "tree", "river", "car", "bird", "sun", "moon")


def _add_text(index, enc, path: str, text: str) -> int:
    _, ids = index.catalog.add_content(
        f"sha-{path}", "text", len(text), [SegmentIn(text=text, char_start=0, char_end=len(text))],
        [(path, len(text), 1)],
    )
    index.add_vectors(ids, enc.encode_text([text]))
    return ids[0]


@pytest.fixture(scope="module")
def text_index(tmp_path_factory, module_catalog_url):
    """The same corpus over each catalog engine (FTS5 on SQLite, tsvector + GIN on PostgreSQL)."""
    engine, index, enc = engine_over(tmp_path_factory.mktemp("hybrid"), 32, module_catalog_url)
    rng = np.random.default_rng(5)
    ids = {}
    for i in range(200):
        _add_text(index, enc, f"/t/short{i:03d}.txt", " ".join(rng.choice(WORDS, 3)))
    # the needle: a rare word drowned in 150 common ones, so its vector barely points at it
    filler = " ".join(rng.choice(WORDS, 150))
    ids["needle"] = _add_text(index, enc, "/t/needle.txt", f"{filler} zanzibarite {filler}")
    ids["phrase"] = _add_text(index, enc, "/t/phrase.txt", f"{filler} moon river cat {filler}")
    ids["named"] = _add_text(index, enc, "/t/quarterly_budget_2024.txt", filler)
    index.checkpoint()
    yield engine, index, ids
    index.close()


def test_rare_word_found_by_keyword_where_the_embedding_misses(text_index):
    engine, _, ids = text_index
    plain = engine.search(Query.text("zanzibarite", k=10, hybrid=False))
    assert ids["needle"] not in [h.id for h in plain.hits]
    hybrid = engine.search(Query.text("zanzibarite", k=10))
    assert hybrid.hits[0].id == ids["needle"]
    assert hybrid.hits[0].to_json()["keyword"] is True
    # a rare word next to common ones still finds it (rare-word tier)
    hits = engine.search(Query.text("the zanzibarite cat", k=10)).hits
    assert ids["needle"] in [h.id for h in hits[:3]]


def test_exact_phrase_and_file_name(text_index):
    engine, index, ids = text_index
    assert keyword_ids(index.catalog, "moon river cat")[0] == ids["phrase"]
    hits = engine.search(Query.text("quarterly budget", k=5)).hits
    assert hits[0].id == ids["named"] and hits[0].path.endswith("quarterly_budget_2024.txt")


@pytest.mark.parametrize(
    "text",
    ['foo" OR', '"', "NEAR(a b", "a* -b ^c", "AND OR NOT", "col:val", "(((", "'; DROP TABLE x; --", "ünïcödé straße"],
)
def test_fts_syntax_in_user_text_never_raises(text_index, text):
    engine, index, _ = text_index
    found = keyword_ids(index.catalog, text)
    if not fts_tokens(text):
        assert found == []
        return
    res = engine.search(Query.text(text, k=3))
    assert len(res.hits) == 3
    assert all(t.startswith('"') and t.endswith('"') and t.count('"') == 2 for t in fts_tokens(text))


def test_merge_evidence_keeps_vector_order_without_keywords():
    ids, matched = merge_evidence(np.array([5, 3, 9]), np.array([0.9, 0.6, 0.3]), {})
    assert ids.tolist() == [5, 3, 9] and matched == set()


def test_merge_evidence_adds_lexical_to_meaning_evidence():
    vec, rel = np.array([5, 3, 9]), np.array([0.9, 0.6, 0.3])
    # 9 (relevance 0.3) with lexical 0.5 -> 1 - 0.7 * 0.5 = 0.65: above 3 (0.6), below 5 (0.9)
    ids, matched = merge_evidence(vec, rel, {9: (0.5, 0.3), 42: (0.05, 0.0)})
    assert ids.tolist() == [5, 9, 3, 42] and matched == {9, 42}
    # a keyword-only hit of strong lexical evidence and no meaning enters above weaker hits
    ids, _ = merge_evidence(vec, rel, {42: (0.85, 0.0)})
    assert ids.tolist() == [5, 42, 3, 9]
    # equal evidence: the vector hit stays first
    ids, _ = merge_evidence(vec, rel, {42: (0.9, 0.0)})
    assert ids.tolist() == [5, 42, 3, 9]


def test_blend_lexical_orders_by_cosine_plus_the_weighted_match():
    cosine = {5: 0.60, 3: 0.50, 9: 0.45, 42: 0.10}
    # 9: 0.45 + 0.2 x 0.5 = 0.55 passes 3 (0.50), not 5 (0.60); 42 (keyword only): 0.30
    assert LEXICAL_WEIGHT == 0.2
    assert blend_lexical(np.array([5, 3, 9]), cosine, {9: 0.5, 42: 1.0}).tolist() == [5, 9, 3, 42]
    assert blend_lexical(np.array([5, 3, 9]), cosine, {}).tolist() == [5, 3, 9]
