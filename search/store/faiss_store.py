"""FAISS backend: an ``IndexIDMap2`` around an inner-product index (exact ``IndexFlatIP`` default)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faiss
import numpy as np

from search.atomic import write_atomically
from search.store.base import VectorStore

# below this many allowed ids a filtered query is answered exactly from the stored vectors,
# which is both faster than a selector scan and exact for approximate indexes (HNSW, IVF)
_EXACT_FILTER_MAX = 2048
_HNSW_EF_SEARCH = 128
_PARALLEL_MIN_QUERIES = 16
_THREADS = faiss.omp_get_max_threads()


class FaissStore(VectorStore):
    """Vectors in FAISS; ``factory`` is any inner-product FAISS factory string ("Flat", "HNSW32")."""

    def __init__(self, dim: int, factory: str = "Flat", index: faiss.Index | None = None) -> None:
        self.dim = dim
        self.factory = factory
        if index is None:
            try:
                inner = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
            except RuntimeError as exc:
                raise ValueError(f"bad FAISS factory string {factory!r}: {exc}") from None
            if hasattr(inner, "hnsw"):
                # FAISS's default efSearch 16 gave recall@10 ~0.6 on clustered inner-product
                # data; 128 gave ~0.99 (tests/search/test_store.py). It is saved with the index.
                inner.hnsw.efSearch = _HNSW_EF_SEARCH
            index = faiss.IndexIDMap2(inner)
        self.index: Any = index  # faiss's type hints lack most attributes
        self._ids: np.ndarray | None = None  # ids() cached until the next add/remove

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ValueError(f"vectors must be [n, {self.dim}], got {vectors.shape}")
        if len(ids) == 0:
            return
        # a repeated id would leave two vectors under one id and break reconcile's accounting
        if len(np.unique(ids)) != len(ids) or (
            self.index.ntotal and np.isin(ids, self.ids(), assume_unique=True).any()
        ):
            raise ValueError("vector ids must be new and distinct")
        if not self.index.is_trained:
            self.index.train(vectors)
        self._ids = None
        self.index.add_with_ids(vectors, ids)

    def remove(self, ids: np.ndarray) -> int:
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        if len(ids) == 0 or self.index.ntotal == 0:
            return 0
        self._ids = None
        try:
            return int(self.index.remove_ids(faiss.IDSelectorBatch(ids)))
        except RuntimeError:  # e.g. HNSW cannot delete: rebuild it from the vectors kept
            return self._rebuild_without(ids)

    def _rebuild_without(self, ids: np.ndarray) -> int:
        held = self.ids()
        keep = held[~np.isin(held, ids)]
        vectors = self.reconstruct(keep)
        inner = faiss.clone_index(faiss.downcast_index(self.index.index))
        inner.reset()
        index = faiss.IndexIDMap2(inner)
        if len(keep):
            index.add_with_ids(vectors, keep)
        self.index = index
        self._ids = None
        return int(len(held) - len(keep))

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim == 1:
            queries = queries[None, :]
        k = max(1, int(k))
        if self.index.ntotal == 0:
            return _empty(len(queries), k)
        # OpenMP threads are per calling thread: one thread for a handful of queries, where
        # FAISS's workers only add contention (127 ms vs 14 ms at 100k on 2 busy cores)
        faiss.omp_set_num_threads(1 if len(queries) < _PARALLEL_MIN_QUERIES else _THREADS)
        if allowed is None:
            return self.index.search(queries, k)
        allowed = np.ascontiguousarray(allowed, dtype=np.int64).reshape(-1)
        if len(allowed) <= _EXACT_FILTER_MAX:
            return self._search_exact(queries, k, allowed)
        params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(allowed))  # type: ignore[call-arg]
        scores, found = self.index.search(queries, k, params=params)
        if (found < 0).any() and self._is_approximate():
            # graph/cluster search can run dry under a tight filter; the exact path cannot
            short = (found < 0).any(axis=1)
            scores[short], found[short] = self._search_exact(queries[short], k, allowed)
        return scores, found

    def _search_exact(
        self, queries: np.ndarray, k: int, allowed: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        present = np.unique(allowed)
        try:
            vectors = self.reconstruct(present)
        except KeyError:  # allowed ids the store does not hold (e.g. a reader's older snapshot)
            present = np.intersect1d(present, self.ids(), assume_unique=True)
            vectors = self.reconstruct(present)
        out_scores, out_ids = _empty(len(queries), k)
        if len(present) == 0:
            return out_scores, out_ids
        scores = queries @ vectors.T
        n = min(k, len(present))
        top = np.argpartition(-scores, n - 1, axis=1)[:, :n]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        out_scores[:, :n] = np.take_along_axis(scores, top, axis=1)
        out_ids[:, :n] = present[top]
        return out_scores, out_ids

    def _is_approximate(self) -> bool:
        return not isinstance(faiss.downcast_index(self.index.index), faiss.IndexFlat)

    def ids(self) -> np.ndarray:
        """All ids, read-only; cached, since every search's relevance calibration asks."""
        if self._ids is None:
            ids = faiss.vector_to_array(self.index.id_map).astype(np.int64, copy=False)
            ids.flags.writeable = False
            self._ids = ids
        return self._ids

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        if len(ids) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        try:
            return self.index.reconstruct_batch(ids)
        except RuntimeError:
            missing = np.setdiff1d(ids, self.ids())
            raise KeyError(f"no stored vector for ids {missing[:10].tolist()}") from None

    def count(self) -> int:
        return int(self.index.ntotal)

    def save(self, path: Path) -> None:
        # through Python's file: a full disk raises OSError there, where FAISS's own file
        # writer only prints its failed fclose and leaves a truncated file to rename
        writer = faiss.PyCallbackIOWriter  # type: ignore[attr-defined]  # absent from faiss's hints
        write_atomically(Path(path), lambda fh: faiss.write_index(self.index, writer(fh.write)))

    @classmethod
    def load(cls, path: Path) -> FaissStore:
        index = faiss.read_index(str(path))
        if not isinstance(index, faiss.IndexIDMap2):
            index = faiss.IndexIDMap2(index)
        return cls(dim=index.d, factory=_describe(index), index=index)


def _empty(nq: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full((nq, k), -np.inf, dtype=np.float32), np.full((nq, k), -1, dtype=np.int64)


def _describe(index: faiss.IndexIDMap2) -> str:
    """A loaded index's inner type, for ``info`` (the factory string itself is not stored)."""
    name = type(faiss.downcast_index(index.index)).__name__
    return {"IndexFlatIP": "Flat"}.get(name, name)
