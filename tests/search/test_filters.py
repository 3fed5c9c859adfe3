"""Filters: k results under very selective filters, each filter kind, brute-force order."""

from __future__ import annotations

from datetime import datetime, timezone
from fnmatch import fnmatchcase

import numpy as np
import pytest

from search.encoders.base import l2_normalize
from search.filters import allowed_segment_ids
from search.query import Filters, Query, QueryPart
from tests.search.synthetic import add_item, engine_over

DIM = 16
DAY_NS = 86_400 * 10**9
N = 2000


@pytest.fixture(scope="module", params=["faiss", "milvus"])
def corpus(tmp_path_factory, request, module_catalog_url):
    """2,000 items; every 400th is audio under /rare/, with sizes, dates and durations set,
    over each catalog engine and each store. On FAISS filters go as id lists, on Milvus Lite as
    expressions pushed down."""
    url = module_catalog_url
    if url is not None and request.param == "milvus":  # one PostgreSQL database per corpus
        url = request.getfixturevalue("postgres_server").create_database()
    engine, index, _ = engine_over(tmp_path_factory.mktemp("filters"), DIM, url, store=request.param)
    rng = np.random.default_rng(7)
    vectors = l2_normalize(rng.standard_normal((N, DIM)))
    meta = {}
    for i in range(N):
        rare = i % 400 == 0
        path = f"/rare/clip{i}.wav" if rare else f"/photos/{i // 100}/img{i}.JPG"
        seg = add_item(
            index, vectors[i], path, "audio" if rare else "image",
            size=i, mtime_ns=i * DAY_NS, duration_s=float(i % 7) if rare else None,
        )
        meta[seg] = (i, path)
    index.checkpoint()
    yield engine, vectors, meta
    index.close()


def _brute(vectors: np.ndarray, meta: dict, q: np.ndarray, keep, k: int) -> list[int]:
    segs = [s for s, (i, p) in meta.items() if keep(i, p)]
    return sorted(segs, key=lambda s: -float(vectors[meta[s][0]] @ q))[:k]


@pytest.mark.parametrize(
    ("filters", "keep"),
    [
        (Filters(modality=["audio"]), lambda i, p: i % 400 == 0),
        (Filters(path_prefix="/rare/"), lambda i, p: p.startswith("/rare/")),
        (Filters(path_glob="/photos/1?/img1?03.JPG"), lambda i, p: fnmatchcase(p, "/photos/1?/img1?03.JPG")),
        (Filters(ext=[".wav"]), lambda i, p: p.endswith(".wav")),
        (Filters(ext=["jpg"], min_size=1500, max_size=1504), lambda i, p: 1500 <= i <= 1504 and i % 400),
        (Filters(modified_after=datetime.fromtimestamp(1990 * 86400, timezone.utc)), lambda i, p: i >= 1990),
        (Filters(modified_before=datetime.fromtimestamp(3 * 86400, timezone.utc)), lambda i, p: i < 3),
        (Filters(min_duration_s=3.0), lambda i, p: i % 400 == 0 and i % 7 >= 3),
    ],
)
def test_selective_filters_return_k_results_in_exact_order(corpus, filters, keep):
    engine, vectors, meta = corpus
    q = l2_normalize(np.random.default_rng(3).standard_normal(DIM))[0]
    expected_all = _brute(vectors, meta, q, keep, N)
    assert 0 < len(expected_all) <= 110
    k = min(10, len(expected_all))
    query = Query(parts=[QueryPart(text="x")], k=k, filters=filters, hybrid=False)
    hits = engine.search_embedded(query, q[None, :])
    assert [h.id for h in hits] == expected_all[:k]
    # asking for more than exist returns exactly those that exist
    query = Query(parts=[QueryPart(text="x")], k=200, filters=filters, hybrid=False)
    assert sorted(h.id for h in engine.search_embedded(query, q[None, :])) == sorted(expected_all)


def test_no_match_and_no_filter(corpus):
    engine, _, _ = corpus
    assert allowed_segment_ids(engine.index.catalog, Filters()) is None
    assert len(allowed_segment_ids(engine.index.catalog, Filters(path_prefix="/nowhere/"))) == 0
    query = Query(parts=[QueryPart(text="x")], filters=Filters(ext=["flac"]), hybrid=False)
    assert engine.search_embedded(query, np.ones((1, DIM), np.float32) / 4) == []


def test_paging_with_offset_is_consistent(corpus):
    engine, _, _ = corpus
    q = np.ones((1, DIM), np.float32) / 4
    first = engine.search_embedded(Query(parts=[QueryPart(text="x")], k=20, hybrid=False), q)
    page2 = engine.search_embedded(Query(parts=[QueryPart(text="x")], k=10, offset=10, hybrid=False), q)
    assert [h.id for h in page2] == [h.id for h in first[10:20]]


def test_cached_allowed_set_follows_catalog_changes(tmp_path):
    engine, index, _ = engine_over(tmp_path, DIM)
    add_item(index, np.ones(DIM), "/a/one.jpg")
    index.checkpoint()
    f = Filters(path_prefix="/b/")
    assert len(allowed_segment_ids(index.catalog, f)) == 0
    seg = add_item(index, np.ones(DIM), "/b/two.jpg")
    index.checkpoint()
    assert allowed_segment_ids(index.catalog, f).tolist() == [seg]
    index.catalog.remove_paths(["/b/two.jpg"])
    assert len(allowed_segment_ids(index.catalog, f)) == 0
    index.close()


def test_path_prefix_is_a_range_with_unicode_edges_and_the_cache_follows_the_version(tmp_path):
    from search.filters import _next_prefix

    assert _next_prefix("/a/") == "/a0" and _next_prefix("/\U0010ffff") == "0"
    assert _next_prefix("/x\ud7ff") == "/y"
    engine, index, _ = engine_over(tmp_path, DIM)
    vec = l2_normalize(np.ones((1, DIM)))[0]
    paths = ["/p/a.jpg", "/p/b/c.jpg", "/p0/d.jpg", "/p\u00e9/e.jpg", "/q/f.jpg"]
    ids = {p: add_item(index, vec, p, "image") for p in paths}
    prefix = Filters(path_prefix="/p/")
    assert allowed_segment_ids(index.catalog, prefix).tolist() == [ids["/p/a.jpg"], ids["/p/b/c.jpg"]]
    before = index.catalog.version()
    # a re-pointed path moves the version, so the cached allowed set is not reused
    index.catalog.link_file("/p/z.jpg", index.catalog.file("/q/f.jpg").content_id, 1, 1)
    assert index.catalog.version() > before
    assert ids["/q/f.jpg"] in allowed_segment_ids(index.catalog, prefix).tolist()
    index.catalog.remove_paths(["/p/a.jpg"])
    assert ids["/p/a.jpg"] not in allowed_segment_ids(index.catalog, prefix).tolist()


@pytest.mark.parametrize(
    ("filters", "keep"),
    [
        (Filters(ext=["jpg"]), lambda i, p: p.endswith(".JPG")),  # passes 99.75%
        (Filters(min_size=1000), lambda i, p: i >= 1000),  # passes 50%
        (Filters(max_size=1200, ext=["jpg"]), lambda i, p: i <= 1200 and p.endswith(".JPG")),
    ],
)
def test_broad_filters_checked_on_candidates_give_the_exact_order(corpus, filters, keep):
    import search.ranking as ranking

    engine, vectors, meta = corpus
    for seed in range(5):
        q = l2_normalize(np.random.default_rng(seed).standard_normal(DIM))[0]
        for k, offset in ((10, 0), (10, 30)):
            query = Query(parts=[QueryPart(text="x")], k=k, offset=offset, filters=filters, hybrid=False)
            listed = ranking.rank(engine.index, query, q[None, :], calibration=engine.calibration,
                                  sample=engine._sample, full_filter=True)
            hits = engine.search_embedded(query, q[None, :])
            expected = _brute(vectors, meta, q, keep, N)[offset : offset + k]
            assert [h.id for h in hits] == [h.id for h in listed] == expected
    taken: list[object] = []
    original = ranking._broad_filter

    def spy(*args: object) -> object:
        taken.append(original(*args))  # type: ignore[arg-type]
        return taken[-1]

    try:  # the candidates path is the one taken for these filters (a store-side filter instead)
        ranking._broad_filter = spy  # type: ignore[assignment]
        engine.search_embedded(Query(parts=[QueryPart(text="x")], k=10, filters=filters, hybrid=False), q[None, :])
    finally:
        ranking._broad_filter = original
    assert taken and (taken[0] is None) == engine.index.store.pushdown


def test_a_search_its_caller_gave_up_on_stops_at_the_next_round(tmp_path):
    """The web layer cancels a search past its timeout; ranking checks the deadline between
    rounds of candidates, so it stops after the round it was in instead of fetching rounds
    four times larger until the index is exhausted (here every hit is hidden, as when the
    top files were deleted, so only exhaustion would end it)."""
    from search.deadline import Deadline
    from search.errors import RequestTimeout

    engine, index, _ = engine_over(tmp_path, dim=DIM)
    rng = np.random.default_rng(0)
    for i in range(300):
        add_item(index, rng.normal(size=DIM).astype(np.float32), f"/p/{i:03d}.jpg")
    query = Query(parts=[QueryPart(text="x")], k=2, hybrid=False, group=False)
    q = np.ones((1, DIM), np.float32) / 4
    looked: list[int] = []

    def hide(info):
        looked.append(info.id)
        return []

    assert engine.search_embedded(query, q, shown=hide) == []
    assert len(looked) == 300  # left alone, the rounds grow until every item was looked at

    looked.clear()
    deadline = Deadline()

    def give_up(info):
        deadline.cancel()  # the request timed out while this round was checked
        return hide(info)

    with pytest.raises(RequestTimeout):
        engine.search_embedded(query, q, shown=give_up, deadline=deadline)
    assert len(looked) == 2  # the first round only: k candidates
