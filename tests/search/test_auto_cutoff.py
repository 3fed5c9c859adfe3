"""``min_score="auto"`` (each list cut where the evidence ends) and ``sort`` over real small
indexes (SQLite + FAISS) of hand-made vectors."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from search.calibration import auto_keep
from search.query import Query, QueryPart
from tests.search.synthetic import add_item, basis, engine_over

DIM = 32


@pytest.fixture()
def clusters(tmp_path):
    """3 photos near e0, 30 near e1, 200 unrelated; file times shuffled."""
    engine, index, _ = engine_over(tmp_path, DIM)
    rng = np.random.default_rng(5)
    times = rng.permutation(233) * 1_000_000_000 + 1
    n = 0
    for axis, count in ((0, 3), (1, 30)):
        for i in range(count):
            v = basis(DIM, axis) + rng.standard_normal(DIM) * 0.08
            add_item(index, v, f"/p/{axis}-{i:02d}.jpg", "image", mtime_ns=int(times[n]))
            n += 1
    for i in range(200):
        v = rng.standard_normal(DIM)
        v[:2] = 0.0  # nothing else leans to either query
        add_item(index, v, f"/p/noise-{i:03d}.jpg", "image", mtime_ns=int(times[n]))
        n += 1
    index.checkpoint()
    yield engine
    index.close()


def _query(**kwargs) -> Query:
    return Query(parts=[QueryPart(text="x")], hybrid=False, **kwargs)


def test_auto_cutoff_is_short_when_few_items_match(clusters):
    few = clusters.search_embedded(_query(k=100, min_score="auto"), basis(DIM, 0)[None, :])
    many = clusters.search_embedded(_query(k=100, min_score="auto"), basis(DIM, 1)[None, :])
    assert {h.path[:5] for h in few} == {"/p/0-"} and len(few) == 3
    assert {h.path[:5] for h in many} == {"/p/1-"} and len(many) == 30
    # without a cutoff both lists run to k
    assert len(clusters.search_embedded(_query(k=100), basis(DIM, 0)[None, :])) == 100


def test_auto_cutoff_pages_and_caps_at_k(clusters):
    first = clusters.search_embedded(_query(k=10, min_score="auto"), basis(DIM, 1)[None, :])
    rest = clusters.search_embedded(_query(k=100, offset=10, min_score="auto"), basis(DIM, 1)[None, :])
    assert len(first) == 10 and len(rest) == 20
    assert not {h.id for h in first} & {h.id for h in rest}


def test_sort_by_date_orders_the_kept_hits(clusters):
    by_rel = clusters.search_embedded(_query(k=100, min_score="auto"), basis(DIM, 1)[None, :])
    by_date = clusters.search_embedded(_query(k=100, min_score="auto", sort="date"), basis(DIM, 1)[None, :])
    assert {h.id for h in by_date} == {h.id for h in by_rel}  # the same hits kept
    times = [h.mtime_ns for h in by_date]
    assert times == sorted(times, reverse=True) and times != [h.mtime_ns for h in by_rel]
    # with a threshold, k takes the newest of every kept hit, not the newest of the first k
    newest = clusters.search_embedded(_query(k=5, min_score="auto", sort="date"), basis(DIM, 1)[None, :])
    assert [h.id for h in newest] == [h.id for h in by_date[:5]]
    by_name = clusters.search_embedded(_query(k=100, min_score="auto", sort="name"), basis(DIM, 1)[None, :])
    assert [h.path for h in by_name] == sorted(h.path for h in by_rel)


def test_sort_without_threshold_orders_the_first_k(clusters):
    top = clusters.search_embedded(_query(k=8), basis(DIM, 1)[None, :])
    dated = clusters.search_embedded(_query(k=8, sort="date"), basis(DIM, 1)[None, :])
    assert sorted(h.id for h in dated) == sorted(h.id for h in top)
    assert [h.mtime_ns for h in dated] == sorted((h.mtime_ns for h in top), reverse=True)


def test_numeric_min_score_still_thresholds(clusters):
    hits = clusters.search_embedded(_query(k=100, min_score=0.5), basis(DIM, 1)[None, :])
    assert hits and all(h.extra["relevance"] >= 0.5 for h in hits)


def test_bad_min_score_and_sort_are_refused():
    with pytest.raises(ValidationError):
        _query(min_score="most")
    with pytest.raises(ValidationError):
        _query(sort="size")


def test_auto_keep_maximises_expected_f1():
    # two likely hits and a long tail of unlikely ones: keep the two
    p = np.array([0.05, 0.9, 0.1, 0.8] + [0.02] * 50)
    assert np.flatnonzero(auto_keep(p, 0.0)).tolist() == [1, 3]
    # many likely hits: keep them all; the floor still drops the rest
    p = np.array([0.7] * 20 + [0.2] * 5)
    assert auto_keep(p, 0.0).sum() == 20 and auto_keep(p, 0.75).sum() == 0
    assert auto_keep(np.zeros(0), 0.0).shape == (0,)
