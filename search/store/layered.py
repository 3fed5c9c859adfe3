"""The vector store an index serves from: a sealed ANN base, an exact tail, and masks.

* base: an ``AnnBase`` (Flat, IVF, HNSW, ... over positions) loaded from its file, holding the
  vectors up to the id it was built at;
* tail: the vectors added since, searched exactly (a growing float32 matrix; appends are
  amortised O(batch));
* masked: deleted ids still inside the base or tail. Deletes only mark; the index folds the
  tail in and drops masked ids when it compacts (``search.index``).

The durable copy of every vector is in the catalog (``source``): lossy codes are re-ranked
from it, and ``reconstruct`` falls back to it for ids newer than this snapshot, so a row a
reader can see always has its vector.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from search.errors import NotFound
from search.store.ann import RERANK_FACTOR, RERANK_MIN, AnnBase, prepare_queries
from search.store.base import VectorStore

# below this many allowed ids a filtered query is answered exactly from the stored vectors,
# which is both faster than a selector scan and exact for approximate indexes (HNSW, IVF)
EXACT_FILTER_MAX = 2048
# an ANN filter that runs dry falls back to exact search over at most this many allowed ids
EXACT_FALLBACK_MAX = 65536

Source = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # ids -> (ids found, vectors)


def _no_source(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)


class LayeredStore(VectorStore):
    def __init__(self, dim: int, base: AnnBase | None = None, source: Source | None = None,
                 rerank: bool = True) -> None:
        self.dim = dim
        self.base = base
        self.source: Source = source or _no_source
        self.rerank = rerank
        self._tail = np.zeros((0, dim), dtype=np.float32)
        self._tail_ids = np.zeros(0, dtype=np.int64)
        self._n_tail = 0
        self.masked: set[int] = set()
        self._masked_arr: np.ndarray | None = None
        self._live_bitmap: np.ndarray | None = None
        self._ids: np.ndarray | None = None

    def clone(self) -> LayeredStore:
        """A copy to apply a reader's catch-up to while searches go on over this one: the base
        is shared (immutable), the tail arrays too (appends write past this store's end, which
        it never reads), the masks are copied."""
        twin = LayeredStore(self.dim, self.base, self.source, self.rerank)
        twin._tail, twin._tail_ids, twin._n_tail = self._tail, self._tail_ids, self._n_tail
        twin.masked = set(self.masked)
        return twin

    # -- layout -------------------------------------------------------------------------------
    @property
    def tail_ids(self) -> np.ndarray:
        return self._tail_ids[: self._n_tail]

    @property
    def tail_vectors(self) -> np.ndarray:
        return self._tail[: self._n_tail]

    @property
    def max_id(self) -> int:
        top = [int(a[-1]) for a in (self.base.ids if self.base else np.zeros(0), self.tail_ids) if len(a)]
        return max(top, default=0)

    def masked_array(self) -> np.ndarray:
        if self._masked_arr is None:
            self._masked_arr = np.array(sorted(self.masked), dtype=np.int64)
        return self._masked_arr

    def _changed(self) -> None:
        self._ids = None
        self._masked_arr = None
        self._live_bitmap = None

    def replace_base(self, base: AnnBase | None, keep_tail_after: int) -> None:
        """Swap in a newly built base; tail vectors with id > ``keep_tail_after`` stay."""
        self.base = base
        keep = self.tail_ids > keep_tail_after
        ids, vecs = self.tail_ids[keep].copy(), self.tail_vectors[keep].copy()
        self._tail, self._tail_ids, self._n_tail = vecs, ids, len(ids)
        held = set(self.masked)
        self.masked = {i for i in held if self._holds(i)}
        self._changed()

    # -- VectorStore --------------------------------------------------------------------------
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids, vectors = self._batch(ids, vectors)
        if len(ids) == 0:
            return
        order = np.argsort(ids, kind="stable")
        ids, vectors = ids[order], vectors[order]
        # segment ids only grow, so "new" is one comparison, not a scan of every id held
        if (np.diff(ids) == 0).any() or ids[0] <= self.max_id:
            raise ValueError("vector ids must be new and distinct")
        need = self._n_tail + len(ids)
        if need > len(self._tail):
            cap = max(need, 2 * len(self._tail), 1024)
            grown = np.empty((cap, self.dim), dtype=np.float32)
            grown[: self._n_tail] = self.tail_vectors
            grown_ids = np.empty(cap, dtype=np.int64)
            grown_ids[: self._n_tail] = self.tail_ids
            self._tail, self._tail_ids = grown, grown_ids
        self._tail[self._n_tail : need] = vectors
        self._tail_ids[self._n_tail : need] = ids
        self._n_tail = need
        self._ids = None

    def remove(self, ids: np.ndarray) -> int:
        removed = 0
        for i in np.asarray(ids, dtype=np.int64).reshape(-1).tolist():
            if i not in self.masked and self._holds(i):
                self.masked.add(i)
                removed += 1
        if removed:
            self._changed()
        return removed

    def _holds(self, i: int) -> bool:
        return _contains(self.tail_ids, i) or (self.base is not None and _contains(self.base.ids, i))

    def count(self) -> int:
        return (self.base.n if self.base else 0) + self._n_tail - len(self.masked)

    def ids(self) -> np.ndarray:
        """All live ids, ascending, read-only (cached until the next change)."""
        if self._ids is None:
            held = np.concatenate([self.base.ids if self.base else np.zeros(0, np.int64), self.tail_ids])
            if self.masked:
                held = held[~np.isin(held, self.masked_array())]
            held = held.copy()
            held.flags.writeable = False
            self._ids = held
        return self._ids

    def vectors(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ids that have a vector, their vectors) in the order asked; never raises for
        missing ids (deleted, or newer than the catalog a reader saw)."""
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        have = np.zeros(len(ids), dtype=bool)
        dead = np.isin(ids, self.masked_array()) if self.masked else np.zeros(len(ids), dtype=bool)
        for held, matrix in ((self.tail_ids, self.tail_vectors),
                             (self.base.ids, self.base.flat_vectors()) if self.base else (None, None)):
            if held is None or matrix is None or not len(held):
                continue
            pos = np.clip(np.searchsorted(held, ids), 0, len(held) - 1)
            hit = (held[pos] == ids) & ~have & ~dead
            out[hit] = matrix[pos[hit]]
            have |= hit
        rest = ~have & ~dead
        if rest.any():
            got_ids, got = self.source(ids[rest])
            if len(got_ids):
                lookup = dict(zip(got_ids.tolist(), range(len(got_ids))))
                idx = np.nonzero(rest)[0]
                for j, i in zip(idx.tolist(), ids[rest].tolist()):
                    row = lookup.get(i)
                    if row is not None:
                        out[j] = got[row]
                        have[j] = True
        return ids[have], out[have]

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        found, vecs = self.vectors(ids)
        if len(found) != len(ids):
            missing = np.setdiff1d(ids, found)
            raise NotFound(f"no indexed item with id {missing[:10].tolist()}")
        return vecs

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None, *, rerank: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        queries, k = prepare_queries(queries, k)
        if self.count() <= 0:
            return _empty(len(queries), k)
        if allowed is not None:
            allowed = np.unique(np.asarray(allowed, dtype=np.int64))
            if self.masked:
                allowed = allowed[~np.isin(allowed, self.masked_array())]
            if len(allowed) == 0:
                return _empty(len(queries), k)
        parts = []
        if self.base is not None and self.base.n:
            parts.append(self._search_base(queries, k, allowed, rerank))
        if self._n_tail:
            parts.append(self._search_tail(queries, k, allowed))
        if len(parts) == 1:
            return parts[0]
        return _merge(parts, k)

    def _search_base(self, queries: np.ndarray, k: int, allowed: np.ndarray | None,
                     rerank: bool = True) -> tuple[np.ndarray, np.ndarray]:
        base = self.base
        assert base is not None
        bitmap, fraction, positions = None, 1.0, None
        if allowed is not None:
            pos = np.clip(np.searchsorted(base.ids, allowed), 0, base.n - 1)
            positions = pos[base.ids[pos] == allowed]
            if len(positions) == 0:
                return _empty(len(queries), k)
            if len(positions) <= EXACT_FILTER_MAX:
                return self._exact(queries, k, base.ids[positions])
            bitmap, fraction = _bitmap(positions, base.n), len(positions) / base.n
        elif self.masked:
            if self._live_bitmap is None:
                live = np.nonzero(~np.isin(base.ids, self.masked_array()))[0]
                self._live_bitmap = _bitmap(live, base.n)
            bitmap = self._live_bitmap
        lossy = base.lossy and self.rerank and rerank
        fetch = max(k * RERANK_FACTOR, k + RERANK_MIN) if lossy else k
        scores, pos = base.search(queries, fetch, bitmap, fraction)
        found = base.ids.take(pos, mode="clip")
        found[pos < 0] = -1
        if lossy:
            scores, found = self._rerank(queries, found, k)
        if found.shape[1] != k or (found < 0).any():
            scores, found = _pad(scores, found, k)
        short = (found < 0).any(axis=1)
        if positions is not None and short.any() and not base.exact and len(positions) <= EXACT_FALLBACK_MAX:
            # graph/cluster search can run dry under a tight filter; the exact path cannot
            scores[short], found[short] = self._exact(queries[short], k, base.ids[positions])
        return scores, found

    def _rerank(self, queries: np.ndarray, found: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        cand = np.unique(found[found >= 0])
        have, vecs = self.vectors(cand)
        exact = queries @ vecs.T  # [nq, len(have)]
        col = {int(i): j for j, i in enumerate(have.tolist())}
        out_s, out_i = _empty(len(queries), k)
        for qi, row in enumerate(found):
            cols = [col[i] for i in row.tolist() if i >= 0 and i in col]
            if not cols:
                continue
            s = exact[qi, cols]
            order = np.argsort(-s, kind="stable")[:k]
            out_s[qi, : len(order)] = s[order]
            out_i[qi, : len(order)] = have[np.asarray(cols)[order]]
        return out_s, out_i

    def _search_tail(self, queries: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        ids, matrix = self.tail_ids, self.tail_vectors
        keep: np.ndarray | None = None
        if allowed is not None:
            keep = np.isin(ids, allowed, assume_unique=True)
        elif self.masked:
            keep = ~np.isin(ids, self.masked_array())
        if keep is not None:
            ids, matrix = ids[keep], matrix[keep]
        return _top(queries @ matrix.T, ids, k)

    def _exact(self, queries: np.ndarray, k: int, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        have, vecs = self.vectors(ids)
        return _top(queries @ vecs.T, have, k)

    # -- files: the index directory owns naming; these write/read one base ---------------------
    def save(self, path: object) -> None:
        """Fold the tail into the base and write it (see ``AnnBase.save``)."""
        from pathlib import Path

        if self.base is None:
            raise ValueError("a layered store without a base has nothing to save; compact it first")
        self.base.add(self.tail_ids, self.tail_vectors)
        self.replace_base(self.base, keep_tail_after=self.base.ids[-1] if self.base.n else 0)
        self.base.save(Path(str(path)))

    @classmethod
    def load(cls, path: object) -> LayeredStore:
        from pathlib import Path

        base = AnnBase.load(Path(str(path)), "loaded", {})
        return cls(base.index.d, base)


def _contains(sorted_ids: np.ndarray, i: int) -> bool:
    if not len(sorted_ids):
        return False
    pos = int(np.searchsorted(sorted_ids, i))
    return pos < len(sorted_ids) and int(sorted_ids[pos]) == i


def _bitmap(positions: np.ndarray, n: int) -> np.ndarray:
    bits = np.zeros(n, dtype=bool)
    bits[positions] = True
    return np.packbits(bits, bitorder="little")


def _empty(nq: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full((nq, k), -np.inf, dtype=np.float32), np.full((nq, k), -1, dtype=np.int64)


def _pad(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    out_s, out_i = _empty(len(ids), k)
    n = min(k, ids.shape[1])
    out_s[:, :n], out_i[:, :n] = scores[:, :n], ids[:, :n]
    out_s[out_i < 0] = -np.inf
    return out_s, out_i


def _top(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    out_s, out_i = _empty(len(scores), k)
    if len(ids) == 0:
        return out_s, out_i
    n = min(k, len(ids))
    if n < len(ids):
        top = np.argpartition(-scores, n - 1, axis=1)[:, :n]
    else:
        top = np.broadcast_to(np.arange(len(ids)), (len(scores), len(ids)))
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
    top = np.take_along_axis(top, order, axis=1)
    out_s[:, :n] = np.take_along_axis(scores, top, axis=1)
    out_i[:, :n] = ids[top]
    return out_s, out_i


def _merge(parts: list[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    scores = np.concatenate([p[0] for p in parts], axis=1)
    ids = np.concatenate([p[1] for p in parts], axis=1)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)
