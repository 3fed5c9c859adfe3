"""Keyword fusion adds evidence, not votes: an everyday word shared with an unrelated passage
does not outrank what the query means; a rare name or an exact phrase still enters high."""

from __future__ import annotations

import itertools

import pytest

from search.catalog import SegmentIn
from search.hybrid import keyword_hits, keyword_ids
from search.lexicon import rarity
from search.query import Query

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
