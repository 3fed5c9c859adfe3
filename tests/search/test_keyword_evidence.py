"""Keyword fusion adds evidence, not votes: an everyday word shared with an unrelated passage
does not outrank what the query means; a rare name or an exact phrase still enters high."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from search.catalog import SegmentIn
from search.hybrid import keyword_hits, keyword_ids
from search.lexicon import rarity
from search.query import Query
from tests.search.synthetic import add_item, engine_over

SUBJECTS = ("The committee", "A farmer", "The orchestra", "Our neighbour", "The airline",
            "A student", "The bakery", "The museum")
ACTIONS = ("announced a new schedule for the winter", "repaired the old wooden fence",
           "played a concert of baroque music", "planted tomatoes and beans in spring",
           "reported higher fuel costs this quarter", "painted the kitchen a pale blue",
           "opened an exhibition of ancient coins")


def test_background_rarity_knows_everyday_words_from_names():
    assert rarity("the") == 0.0 and rarity("park") < 0.1 and rarity("food") < 0.3
    assert rarity("quarterly") > 0.7
    assert rarity("zanzibarite") == 1.0 and rarity("najaf") == 1.0  # not whole words in English


@pytest.fixture(scope="module")
def news_index(tmp_path_factory, bundled_encoder):
    from search.engine import Engine
    from search.index import Index

    enc = bundled_encoder
    index = Index.open_for_write(tmp_path_factory.mktemp("evidence"), enc.id, enc.dim)
    texts = {f"/t/filler{n:02d}.txt": f"{s} {a}."
             for n, (s, a) in enumerate(itertools.product(SUBJECTS, ACTIONS))}
    # neutral file names: a file's name is a keyword field too
    texts["/t/n1.txt"] = "A golden retriever puppy chases a ball across the grass."
    texts["/t/n2.txt"] = ("The insurer cut its profit forecast and will park the merger plans "
                          "until next year, its chief executive told analysts.")
    texts["/t/n3.txt"] = "Delegates urged the cleric to leave Najaf as talks stalled."
    ids = {}
    for path, text in texts.items():
        seg = SegmentIn(text=text, char_start=0, char_end=len(text))
        _, segs = index.catalog.add_content(f"sha-{path}", "text", len(text), [seg],
                                            [(path, len(text), 1)])
        index.add_vectors(segs, enc.encode_text([text]))
        ids[path] = segs[0]
    index.checkpoint()
    yield Engine(index, enc), index, ids
    index.close()


@pytest.mark.models
def test_a_keyword_hit_without_meaning_support_cannot_take_first_place(news_index):
    engine, index, ids = news_index
    query = "a dog playing in the park"
    # the passage shares only the everyday word "park" (one passage in 59: "rare" in this
    # index) and is found by keyword ...
    assert ids["/t/n2.txt"] in keyword_ids(index.catalog, query)
    hits = engine.search(Query.text(query, k=5)).hits
    order = [h.id for h in hits]
    # ... but the strong meaning hit stays first, and the keyword hit does not jump above it
    assert order[0] == ids["/t/n1.txt"]
    assert ids["/t/n2.txt"] not in order[:1]
    park = [h for h in hits if h.id == ids["/t/n2.txt"]]
    assert not park or park[0].extra["relevance"] < hits[0].extra["relevance"]


@pytest.mark.models
def test_a_rare_name_still_enters_first(news_index):
    engine, index, ids = news_index
    hits = engine.search(Query.text("najaf", k=5)).hits
    assert hits[0].id == ids["/t/n3.txt"] and hits[0].extra.get("keyword") is True
    (hit,) = [h for h in keyword_hits(index.catalog, "najaf")]
    assert hit.tier == "phrase" and hit.evidence > 0.9
    # an everyday word carries little evidence on its own
    (park,) = [h for h in keyword_hits(index.catalog, "park")]
    assert park.evidence < 0.1


def _at_cosine(q: np.ndarray, cos: float, seed: int) -> np.ndarray:
    """A unit vector at cosine ``cos`` to the unit vector ``q``."""
    u = np.random.default_rng(seed).normal(size=q.shape).astype(np.float32)
    u -= (u @ q) * q
    u /= np.linalg.norm(u)
    return cos * q + np.sqrt(1 - cos**2) * u


def test_the_query_words_lift_a_passage_by_their_match_and_no_further(tmp_path):
    """Within one list a keyword hit's place is its cosine plus LEXICAL_WEIGHT x its match:
    a passage holding the query's words passes a slightly closer one that lacks them, and a
    far one holding them does not pass a close photo."""
    engine, index, enc = engine_over(tmp_path, dim=64)
    query = "car park"  # everyday words: no strong lexical evidence of their own
    q = enc.encode_text([query])[0]
    ids = {
        "photo": add_item(index, _at_cosine(q, 0.50, 1), "/p/photo.png", "image"),
        "close": add_item(index, _at_cosine(q, 0.48, 2), "/t/close.txt", "text",
                          text="a quiet garden with seats under the trees"),
        "words": add_item(index, _at_cosine(q, 0.40, 3), "/t/words.txt", "text",
                          text="a car park behind the station"),
        "far": add_item(index, _at_cosine(q, 0.20, 4), "/t/far.txt", "text",
                        text="they park the car at noon"),
    }
    for n in range(30):  # the rest of the index, far from the query
        add_item(index, _at_cosine(q, -0.2, 10 + n), f"/t/other{n}.txt", "text", text=f"filler {n}")
    index.checkpoint()
    (words,) = [h for h in keyword_hits(index.catalog, query) if h.id == ids["words"]]
    assert words.tier == "phrase" and words.match > 0.75  # both words, a strong BM25
    order = [h.id for h in engine.search(Query.text(query, k=6)).hits]
    # 0.40 + 0.2 x match > 0.55 > 0.50 > 0.48; the far passage: at most 0.20 + 0.2 < 0.48
    assert order[:3] == [ids["words"], ids["photo"], ids["close"]]
    assert order.index(ids["far"]) > order.index(ids["close"])
    hits = engine.search(Query.text(query, k=6)).hits
    assert [h.extra.get("keyword", False) for h in hits[:3]] == [True, False, False]
