"""The vector stores against numpy brute force on synthetic normalised vectors: the interface
tests run on FAISS and on Milvus Lite (one embedded server per module, a collection per test)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import faiss
import numpy as np
import pytest

from search.encoders.base import l2_normalize
from search.store import VectorStore, create_store, load_store
from search.store.faiss_store import FaissStore

DIM = 32
BACKENDS = ["faiss", "milvus"]


def clustered(n: int, dim: int = DIM, clusters: int = 20, seed: int = 0) -> np.ndarray:
    """Normalised Gaussian clusters: nearer to real embeddings than uniform noise."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim))
    return l2_normalize(centres[rng.integers(0, clusters, n)] + 0.4 * rng.standard_normal((n, dim)))


def brute_force(queries: np.ndarray, ids: np.ndarray, vectors: np.ndarray, k: int):
    scores = queries @ vectors.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), ids[order]


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    vectors = clustered(3000)
    ids = np.random.default_rng(1).permutation(100_000)[:3000].astype(np.int64) + 7
    queries = clustered(25, seed=2)
    return ids, vectors, queries


@pytest.fixture(scope="module")
def lite_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("milvus") / "vectors.db"


_names = itertools.count()


@pytest.fixture(params=BACKENDS)
def new_store(request, lite_file) -> Iterator[Callable[[], VectorStore]]:
    """``new_store()``: an empty store of the backend under test."""
    made: list[VectorStore] = []

    def make() -> VectorStore:
        if request.param == "faiss":
            return create_store(DIM)
        s = create_store(DIM, "milvus", f"{lite_file}#t{next(_names)}")
        made.append(s)
        return s

    yield make
    for s in made:
        s.drop()  # type: ignore[attr-defined]
        s.close()  # type: ignore[attr-defined]


@pytest.fixture
def store(data, new_store) -> VectorStore:
    ids, vectors, _ = data
    s = new_store()
    s.add(ids, vectors)
    return s


def test_flat_search_equals_brute_force(store, data):
    ids, vectors, queries = data
    scores, found = store.search(queries, 10)
    want_scores, want_ids = brute_force(queries, ids, vectors, 10)
    np.testing.assert_array_equal(found, want_ids)
    np.testing.assert_allclose(scores, want_scores, atol=1e-5)
    assert scores.dtype == np.float32 and found.dtype == np.int64
    one_scores, one_ids = store.search(queries[0], 3)  # a single 1-d query
    np.testing.assert_array_equal(one_ids[0], want_ids[0, :3])


def test_k_beyond_the_count_pads_with_minus_one(new_store):
    s = new_store()
    s.add(np.array([5, 9]), clustered(2))
    scores, found = s.search(clustered(1, seed=3), 5)
    assert sorted(found[0, :2].tolist()) == [5, 9] and found[0, 2:].tolist() == [-1, -1, -1]


def test_empty_store_returns_no_ids(new_store):
    s = new_store()
    scores, found = s.search(clustered(3), 4)
    assert found.shape == (3, 4) and (found == -1).all() and np.isneginf(scores).all()
    assert s.count() == 0 and len(s.ids()) == 0
    scores, found = s.search(clustered(1), 4, allowed=np.array([1, 2]))
    assert (found == -1).all()


def test_add_rejects_repeated_ids_and_bad_shapes(store, data):
    ids, vectors, _ = data
    with pytest.raises(ValueError, match="new and distinct"):
        store.add(ids[:2], vectors[:2])
    with pytest.raises(ValueError, match="new and distinct"):
        store.add(np.array([1, 1]), vectors[:2])
    with pytest.raises(ValueError, match=r"\[n, 32\]"):
        store.add(np.array([1]), np.zeros((1, 8), np.float32))
    with pytest.raises(ValueError, match="ids for"):
        store.add(np.array([1, 2]), vectors[:1])
    assert store.count() == len(ids)


def test_remove_then_search_matches_brute_force_over_the_rest(store, data):
    ids, vectors, queries = data
    gone = ids[::3]
    assert store.remove(np.append(gone, [-5, 10**9])) == len(gone)  # unknown ids are ignored
    assert store.count() == len(ids) - len(gone)
    keep = ~np.isin(ids, gone)
    _, found = store.search(queries, 10)
    np.testing.assert_array_equal(found, brute_force(queries, ids[keep], vectors[keep], 10)[1])
    assert set(store.ids().tolist()) == set(ids[keep].tolist())
    np.testing.assert_allclose(store.reconstruct(ids[keep][:4]), vectors[keep][:4], atol=1e-6)
    with pytest.raises(KeyError):
        store.reconstruct(gone[:1])


def test_save_load_round_trip(store, data, tmp_path):
    ids, vectors, queries = data
    if isinstance(store, FaissStore):
        path, backend = tmp_path / "vectors.faiss", "faiss"
    else:  # Milvus persists itself: save flushes, load opens the collection by its spec
        path, backend = Path(store.spec), "milvus"  # type: ignore[attr-defined]
    store.save(path)
    again = load_store(path, backend)
    assert again.count() == store.count() and again.dim == DIM
    np.testing.assert_array_equal(np.sort(again.ids()), np.sort(ids))
    for a, b in zip(again.search(queries, 10), store.search(queries, 10)):
        np.testing.assert_array_equal(a, b)
    again.add(np.array([1]), vectors[:1])  # a loaded store stays writable
    assert again.search(vectors[:1], 1)[1][0, 0] in (1, ids[0])
    if backend == "milvus":
        again.close()  # type: ignore[attr-defined]


def test_save_is_atomic_and_ignores_leftover_temp_files(data, tmp_path):
    ids, vectors, queries = data
    store = create_store(DIM)
    store.add(ids, vectors)
    path = tmp_path / "vectors.faiss"
    store.save(path)
    before = path.read_bytes()
    # a crash mid-save leaves a half-written temp file: the real file must be untouched
    (tmp_path / "vectors.faiss.tmp").write_bytes(before[: len(before) // 3])
    assert load_store(path).count() == len(ids)
    store.remove(ids[:10])
    store.save(path)  # overwrites the stale temp file and renames it into place
    assert not (tmp_path / "vectors.faiss.tmp").exists()
    assert load_store(path).count() == len(ids) - 10


def test_allowed_filter_returns_k_best_allowed(store, data):
    ids, vectors, queries = data
    for allowed in (ids[::2], ids[:50], ids[:3]):  # selector path, exact path, fewer than k
        mask = np.isin(ids, allowed)
        scores, found = store.search(queries, 10, allowed=allowed)
        want_scores, want_ids = brute_force(queries, ids[mask], vectors[mask], 10)
        n = min(10, len(allowed))
        np.testing.assert_array_equal(found[:, :n], want_ids)
        np.testing.assert_allclose(scores[:, :n], want_scores, atol=1e-5)
        assert (found[:, n:] == -1).all()
    # ids the store does not hold (a reader's older snapshot) are simply not found
    _, found = store.search(queries[:1], 5, allowed=np.array([ids[0], 10**9]))
    assert found[0, 0] == ids[0] and (found[0, 1:] == -1).all()
    _, found = store.search(queries[:1], 5, allowed=np.array([], dtype=np.int64))
    assert (found == -1).all()


def test_hnsw_factory_has_good_recall_filters_and_removes(data, tmp_path):
    ids, vectors, queries = data
    s = create_store(DIM, factory="HNSW32")
    s.add(ids, vectors)
    _, found = s.search(queries, 10)
    _, truth = brute_force(queries, ids, vectors, 10)
    recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)])
    assert recall >= 0.9
    # a tight filter cannot starve the graph search: exactly the allowed best come back
    allowed = ids[:4000:700]
    _, found = s.search(queries, 10, allowed=allowed)
    mask = np.isin(ids, allowed)
    np.testing.assert_array_equal(found[:, : mask.sum()], brute_force(queries, ids[mask], vectors[mask], 10)[1])
    # HNSW cannot delete in place; the store rebuilds without the removed ids
    assert s.remove(ids[:100]) == 100 and s.count() == len(ids) - 100
    assert not np.isin(s.search(queries, 10)[1], ids[:100]).any()
    s.save(tmp_path / "h.faiss")
    again = load_store(tmp_path / "h.faiss")
    assert again.count() == len(ids) - 100 and again.factory.startswith("IndexHNSW")
    assert faiss.downcast_index(again.index.index).hnsw.efSearch == 128  # survives rebuild + save


def test_unknown_factory_and_backend_are_value_errors():
    with pytest.raises(ValueError, match="factory"):
        create_store(DIM, factory="NoSuchIndex99")
    with pytest.raises(ValueError, match="backend"):
        create_store(DIM, backend="annoy")


def test_ids_follow_every_add_and_remove_and_are_read_only(new_store):
    s = new_store()
    assert s.ids().tolist() == []
    s.add(np.array([3, 1]), clustered(2))
    assert sorted(s.ids().tolist()) == [1, 3]
    with pytest.raises(ValueError):
        s.ids()[0] = 99  # the cached array cannot be changed under the store
    s.remove(np.array([3]))
    assert s.ids().tolist() == [1]


def test_hnsw_rebuild_keeps_ids():
    h = create_store(DIM, factory="HNSW32")
    h.add(np.array([5, 6, 7]), clustered(3))
    h.remove(np.array([6]))  # the rebuild path
    assert sorted(h.ids().tolist()) == [5, 7]


def test_an_untrained_index_refuses_a_first_batch_with_the_fix(data):
    """IVF/PQ trained on the first 32-vector batch raised FAISS's "nx >= k" after the rows
    committed; now adding before training names train(), and training on a sample works."""
    _, vectors, _ = data
    s = create_store(DIM, factory="IVF16,PQ4")
    batch = np.ascontiguousarray(vectors[:32], dtype=np.float32)
    with pytest.raises(ValueError, match=r"train\(\)"):
        s.add(np.arange(32), batch)
    s.train(np.ascontiguousarray(vectors[:1000], dtype=np.float32))
    s.add(np.arange(32), batch)
    assert s.count() == 32


@pytest.mark.parametrize(("memory_mb", "kind"), [(1024.0, "HNSW"), (0.1, "IVF_SQ8")])
def test_milvus_index_type_follows_the_size_as_faiss_auto_does(data, lite_file, memory_mb, kind):
    from search.store.milvus_store import MilvusStore
    from search.store.spec import StoreOptions

    ids, vectors, queries = data
    s = MilvusStore(str(lite_file), DIM, f"auto{next(_names)}",
                    options=StoreOptions(exact_max=1000, memory_mb=memory_mb))
    try:
        s.add(ids[:800], vectors[:800])
        assert not s.ensure_index() and s.index_type == "FLAT"  # exact while small
        s.add(ids[800:], vectors[800:])
        assert s.ensure_index() and s.index_type == kind
        s.flush()
        _, found = s.search(queries, 10)
        _, truth = brute_force(queries, ids, vectors, 10)
        assert np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)]) >= 0.9
        assert s.remove(ids[:5]) == 5 and not np.isin(s.search(queries, 10)[1], ids[:5]).any()
    finally:
        s.drop()
        s.close()
