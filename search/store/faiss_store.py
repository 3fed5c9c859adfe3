"""FAISS backend: an ``IndexIDMap2`` around an inner-product index (exact ``IndexFlatIP`` default)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faiss
import numpy as np

from search.atomic import write_atomically
from search.store.ann import prepare_queries
from search.store.base import VectorStore

# below this many allowed ids a filtered query is answered exactly from the stored vectors,
# which is both faster than a selector scan and exact for approximate indexes (HNSW, IVF)
_EXACT_FILTER_MAX = 2048
_HNSW_EF_SEARCH = 128


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
        self._max_id: int | None = None  # ids above it are new without looking at the rest

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids, vectors = self._batch(ids, vectors)
        if len(ids) == 0:
            return
        # a repeated id would leave two vectors under one id; ids only grow in practice, so
        # one comparison with the highest id held replaces a scan of all of them
        if len(np.unique(ids)) != len(ids) or (
            self.index.ntotal and int(ids.min()) <= self._highest()
            and np.isin(ids, self.ids(), assume_unique=True).any()
        ):
            raise ValueError("vector ids must be new and distinct")
        if not self.index.is_trained:
            from search.store.spec import min_train

            raise ValueError(
                f"the {self.factory} index must be trained before vectors are added: call "
                f"train() with a sample of at least {max(1, min_train(self.factory))} vectors"
            )
        self._ids = None
        self.index.add_with_ids(vectors, ids)
        self._max_id = max(self._highest(), int(ids.max()))

    def train(self, vectors: np.ndarray) -> None:
        """Train the index (IVF lists, PQ/SQ code books) on a representative sample."""
        self.index.train(np.ascontiguousarray(vectors, dtype=np.float32))

    def _highest(self) -> int:
        if self._max_id is None:
            ids = self.ids()
            self._max_id = int(ids.max()) if len(ids) else -1
        return self._max_id

    def remove(self, ids: np.ndarray) -> int:
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        if len(ids) == 0 or self.index.ntotal == 0:
            return 0
        self._ids = None
        self._max_id = None
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
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None, *, rerank: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        queries, k = prepare_queries(queries, k)
        if self.index.ntotal == 0:
            return _empty(len(queries), k)
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
