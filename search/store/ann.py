"""The sealed part of a layered store: one FAISS index over positions 0..n-1 plus their ids.

Built from the durable vectors (never from a first small batch): trained on a random sample of
all of them, then tuned — ``nprobe`` (IVF) or ``efSearch`` (HNSW) is the smallest reaching the
recall target on held-in queries against exact search — and saved with its parameters.
Positions instead of an ``IndexIDMap`` keep filter selectors cheap bitmaps over positions.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np

from search.atomic import write_atomically
from search.store.spec import StoreOptions, min_train

K_TUNE = 10
TUNE_QUERIES = 200
# candidates re-scored exactly per wanted hit when the codes are lossy
RERANK_FACTOR = 2
RERANK_MIN = 16
# FAISS's default efSearch 16 gave recall@10 ~0.6 on clustered inner-product data
HNSW_EF_DEFAULT = 128


@dataclass
class AnnBase:
    index: faiss.Index
    ids: np.ndarray  # int64, ascending; position i holds ids[i]
    factory: str
    params: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # the downcast proxy does not own the C++ object: keep the owning one alive
        self._owner = self.index
        self.index = faiss.downcast_index(self.index)
        self.exact = isinstance(self.index, faiss.IndexFlat)
        self.lossy = bool(re.search(r"PQ|SQ|LSH|RaBitQ", self.factory))
        self._ivf = _ivf_of(self.index)
        self._hnsw = getattr(self.index, "hnsw", None)
        if self._ivf is not None:
            self.params.setdefault("nprobe", min(self._ivf.nlist, 16))
            self._ivf.nprobe = self.params["nprobe"]
        if self._hnsw is not None:
            self.params.setdefault("efSearch", HNSW_EF_DEFAULT)
            self._hnsw.efSearch = self.params["efSearch"]

    @property
    def n(self) -> int:
        return len(self.ids)

    def flat_vectors(self) -> np.ndarray | None:
        """The stored float32 matrix of an exact (Flat) index, without a copy; else None."""
        if not self.exact or self.n == 0:
            return None
        xb = self.index.get_xb()  # type: ignore[attr-defined]  # an IndexFlat here
        return faiss.rev_swig_ptr(xb, self.n * self.index.d).reshape(self.n, -1)

    def search(
        self, queries: np.ndarray, k: int, bitmap: np.ndarray | None = None, fraction: float = 1.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores, positions) of the top k, restricted to set bits of ``bitmap`` (little-endian
        over positions) when given. ``fraction``: the share of positions allowed; IVF probes
        that many times more lists so a selective filter still fills k."""
        sel = faiss.IDSelectorBitmap(self.n, faiss.swig_ptr(bitmap)) if bitmap is not None else None
        params: faiss.SearchParameters | None
        if self._ivf is not None:
            nprobe = self.params["nprobe"]
            widened = min(self._ivf.nlist, math.ceil(nprobe / max(fraction, 1e-6)))
            params = faiss.SearchParametersIVF(nprobe=widened, sel=sel)  # type: ignore[call-arg]
        elif self._hnsw is not None:
            ef = max(self.params["efSearch"], k)
            ef = min(4096, int(ef / max(fraction, 0.05)))
            params = faiss.SearchParametersHNSW(efSearch=ef, sel=sel)  # type: ignore[attr-defined]
        else:
            params = faiss.SearchParameters(sel=sel) if sel is not None else None  # type: ignore[call-arg]
        scores, pos = self.index.search(queries, min(k, self.n), params=params)
        return scores, pos

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            self.index.add(np.ascontiguousarray(vectors, dtype=np.float32))
            self.ids = np.concatenate([self.ids, ids.astype(np.int64)])

    def save(self, path: Path) -> None:
        """``path`` (FAISS) and ``path.ids.npy``, each atomically (``search.atomic``): through
        Python's file, so a full disk raises instead of leaving a truncated file."""
        write_atomically(
            path, lambda fh: faiss.write_index(self.index, faiss.PyCallbackIOWriter(fh.write))  # type: ignore[attr-defined]
        )
        write_atomically(ids_file(path), lambda fh: np.save(fh, self.ids))

    @classmethod
    def load(cls, path: Path, factory: str, params: dict[str, int]) -> AnnBase:
        """Raises FileNotFoundError when either file is gone (a writer replaced this base since
        its name was read: the caller reads the name again), never FAISS's RuntimeError: the
        file is opened here and read through the open handle, which a delete cannot take."""
        with open(path, "rb") as fh:
            index = faiss.read_index(faiss.PyCallbackIOReader(fh.read))  # type: ignore[attr-defined]
        ids = np.load(ids_file(path))
        if index.ntotal != len(ids):
            raise ValueError(f"{path} holds {index.ntotal} vectors but {len(ids)} ids")
        return cls(index, ids, factory, dict(params))


_PARALLEL_MIN_QUERIES = 16
_THREADS = faiss.omp_get_max_threads()


def prepare_queries(queries: np.ndarray, k: int) -> tuple[np.ndarray, int]:
    """Queries as contiguous float32[nq, d] and k >= 1; sets this thread's FAISS threads.

    OpenMP threads are per calling thread: one thread for a handful of queries, where FAISS's
    workers only add contention (127 ms vs 14 ms at 100k on 2 busy cores)."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if queries.ndim == 1:
        queries = queries[None, :]
    faiss.omp_set_num_threads(1 if len(queries) < _PARALLEL_MIN_QUERIES else _THREADS)
    return queries, max(1, int(k))


def ids_file(path: Path) -> Path:
    return path.with_name(path.name + ".ids.npy")


def _ivf_of(index: faiss.Index) -> faiss.IndexIVF | None:
    try:
        return faiss.extract_index_ivf(index)
    except RuntimeError:
        return None


def build(
    factory: str, dim: int, ids: np.ndarray, vectors: np.ndarray, options: StoreOptions, seed: int = 0
) -> AnnBase:
    """A trained, filled and tuned index of ``factory`` over all ``vectors``."""
    rng = np.random.default_rng(seed)
    index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    n = len(ids)
    if not index.is_trained:
        if n < min_train(factory):
            raise ValueError(f"{factory} needs {min_train(factory)} vectors to train, not {n}")
        ivf = _ivf_of(index)
        want = max(50 * ivf.nlist if ivf is not None else 0, 20_000)
        sample = vectors[np.sort(rng.choice(n, min(n, want), replace=False))]
        index.train(np.ascontiguousarray(sample, dtype=np.float32))
    for start in range(0, n, 65536):
        index.add(np.ascontiguousarray(vectors[start : start + 65536], dtype=np.float32))
    base = AnnBase(index, ids.astype(np.int64), factory)
    tune(base, vectors, options, rng)
    return base


def tune(base: AnnBase, vectors: np.ndarray, options: StoreOptions, rng: np.random.Generator) -> None:
    """Choose the smallest nprobe / efSearch whose recall@10 (re-ranked where the codes are
    lossy) reaches ``options.recall`` on stored vectors used as queries, themselves left out."""
    knob = "nprobe" if base._ivf is not None else "efSearch" if base._hnsw is not None else None
    if knob is None or base.n <= K_TUNE + 1:
        return
    nq = min(TUNE_QUERIES, base.n)
    qpos = rng.choice(base.n, nq, replace=False)
    queries = np.array(vectors[qpos], dtype=np.float32)
    # half the queries are stored items (left out of their own answers), half lie between two
    # items: user queries rarely sit on an item, and those are the harder ones for ANN
    half = nq // 2
    other = np.asarray(vectors[rng.choice(base.n, half)], dtype=np.float32)
    queries[:half] += other
    queries[:half] /= np.linalg.norm(queries[:half], axis=1, keepdims=True) + 1e-12
    qpos[:half] = -1  # no query of this half is a stored item
    truth = _exact_top(queries, vectors, K_TUNE + 1)
    truth_sets = [set(row[row != q].tolist()[:K_TUNE]) for row, q in zip(truth, qpos)]
    if knob == "nprobe":
        nlist = base._ivf.nlist  # type: ignore[union-attr]
        values = sorted({min(nlist, 2**i) for i in range(int(math.log2(nlist)) + 1)})
    else:
        # never below 64: queries far from every item (most user queries) need more than the
        # stored-item sample shows (recall@10 0.85 at 16, 0.99 at 64 on the indexer tests)
        values = [64, 128, 256, 512, 1024]
    chosen = values[-1]
    for value in values:
        base.params[knob] = value
        found = search_positions(base, queries, K_TUNE + 1, lambda pos: vectors[pos], options.rerank)
        recall = np.mean(
            [len(t & set(row[row != q].tolist()[:K_TUNE])) / max(1, len(t))
             for row, q, t in zip(found, qpos, truth_sets)]
        )
        if recall >= options.recall:
            chosen = value
            break
    base.params[knob] = chosen
    if knob == "nprobe":
        base._ivf.nprobe = chosen  # type: ignore[union-attr]
    else:
        base._hnsw.efSearch = chosen  # type: ignore[union-attr]


def search_positions(
    base: AnnBase, queries: np.ndarray, k: int, exact_of: Callable[[np.ndarray], np.ndarray],
    rerank: bool,
) -> np.ndarray:
    """Positions of the top k (re-ranked with ``exact_of(positions)`` for lossy codes)."""
    fetch = max(k * RERANK_FACTOR, k + RERANK_MIN) if base.lossy and rerank else k
    _, pos = base.search(queries, fetch)
    if fetch == k:
        return pos
    out = np.full((len(queries), k), -1, dtype=np.int64)
    for i, row in enumerate(pos):
        row = row[row >= 0]
        scores = exact_of(row) @ queries[i]
        out[i, : min(k, len(row))] = row[np.argsort(-scores, kind="stable")[:k]]
    return out


def _exact_top(queries: np.ndarray, vectors: np.ndarray, k: int) -> np.ndarray:
    best_s = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_p = np.zeros((len(queries), 0), dtype=np.int64)
    for start in range(0, len(vectors), 131072):
        block = queries @ np.asarray(vectors[start : start + 131072], dtype=np.float32).T
        s = np.concatenate([best_s, block], axis=1)
        p = np.concatenate([best_p, np.broadcast_to(np.arange(start, start + block.shape[1]), block.shape)], axis=1)
        if s.shape[1] <= k:
            best_s, best_p = s, p
            continue
        top = np.argpartition(-s, k - 1, axis=1)[:, :k]
        best_s, best_p = np.take_along_axis(s, top, 1), np.take_along_axis(p, top, 1)
    order = np.argsort(-best_s, axis=1)
    return np.take_along_axis(best_p, order, 1)


def chunks_to_arrays(chunks: Iterable[tuple[np.ndarray, np.ndarray]], dim: int) -> tuple[np.ndarray, np.ndarray]:
    parts = list(chunks)
    if not parts:
        return np.zeros(0, np.int64), np.zeros((0, dim), np.float32)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
