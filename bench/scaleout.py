"""Scale-out figures (``--only scaleout``): each engine crossfind can run on, measured here.

``milvus_figures`` (Milvus Lite, embedded, on this machine's cores): 100k realistic 384-d
vectors (``bench.scale.realistic``: MiniLM caption embeddings replicated with their own
covariance; clustered Gaussians without the model or data, said in ``scaleout_vectors``) with
their filter fields are written through ``MilvusStore`` in the indexer's batch size, then
flushed (sealed and indexed):

* ``milvus_lite_index_vectors_per_s``: vectors written and flushed per second;
* ``milvus_lite_query_p50_ms_100k``: one query, k=10, through ``MilvusStore.search`` (the index
  type ``auto`` picks at that size, in ``milvus_lite_index_type``);
* ``milvus_lite_filtered_query_p50_ms_100k``: the same with a pushed-down expression passing
  ~10% of the vectors (``size`` range);
* ``milvus_vs_faiss_top10_overlap``: the mean share of the top 10 that Milvus and a FAISS
  Flat store over the same vectors agree on.

``--quick``: 10k vectors (the ``_100k`` keys then end in ``_10k``; ``scaleout_milvus_vectors``
says the size). The PostgreSQL catalog's figures come from ``bench.scaleout_postgres``, the Ray
executor's and the encoders' per-core rates from ``bench.scaleout_ray``; ``run`` merges them.
"""

from __future__ import annotations

import time

import numpy as np

from bench.context import BenchContext, percentile_ms
from bench.scale import _vectors, seed_embeddings
from bench.scaleout_postgres import postgres_figures
from bench.scaleout_ray import run as ray_run
from bench.store import K

BATCH = 256  # the indexer's write batch (rows per add_contents)
N_QUERIES = 100


def _tag(n: int) -> str:
    return f"{n // 1000}k"


def milvus_figures(ctx: BenchContext) -> dict[str, object]:
    from search.store.faiss_store import FaissStore
    from search.store.milvus_store import Fields, MilvusStore
    from search.store.spec import StoreOptions

    n = 10_000 if ctx.quick else 100_000
    tag = _tag(n)
    seeds = seed_embeddings(ctx.shared_data)
    vectors = _vectors(n, seeds, seed=0)
    queries = _vectors(N_QUERIES, seeds, seed=9)
    ids = np.arange(1, n + 1, dtype=np.int64)
    sizes = np.random.default_rng(3).integers(0, 10_000, n)
    fields = [Fields("image", "jpg", int(i) * 10**9, int(s), None, 1) for i, s in zip(ids, sizes)]
    store = MilvusStore(str(ctx.scratch / "scaleout-milvus.db"), vectors.shape[1], options=StoreOptions())
    try:
        t0 = time.perf_counter()
        for start in range(0, n, BATCH):
            store.add(ids[start : start + BATCH], vectors[start : start + BATCH], fields[start : start + BATCH])
        store.ensure_index()
        store.flush()
        index_s = time.perf_counter() - t0
        store.search(queries[:1], K)  # the first search loads the sealed segments
        times, found = [], []
        for q in queries:
            t = time.perf_counter()
            _, top = store.search(q[None, :], K)
            times.append(time.perf_counter() - t)
            found.append(top[0])
        from search.store import StoreFilter

        filtered = []
        for i, q in enumerate(queries[:30]):
            low = 100 * (i % 90)
            where = StoreFilter(f"size >= {low} and size < {low + 1000}")
            t = time.perf_counter()
            store.search(q[None, :], K, where)
            filtered.append(time.perf_counter() - t)
        index_type = store.index_type
    finally:
        store.close()
    exact = FaissStore(vectors.shape[1])
    exact.add(ids, vectors)
    _, truth = exact.search(queries, K)
    overlap = np.mean([len(set(a.tolist()) & set(b.tolist())) / K for a, b in zip(found, truth)])
    return {
        "scaleout_vectors": "realistic" if seeds is not None else "clustered (no model or data)",
        "scaleout_milvus_vectors": n,
        "milvus_lite_index_type": index_type,
        "milvus_lite_index_vectors_per_s": round(n / index_s),
        f"milvus_lite_query_p50_ms_{tag}": percentile_ms(times, 50),
        f"milvus_lite_filtered_query_p50_ms_{tag}": percentile_ms(filtered, 50),
        "milvus_vs_faiss_top10_overlap": round(float(overlap), 4),
    }


def run(ctx: BenchContext) -> dict[str, object]:
    figures: dict[str, object] = {}
    for section in (milvus_figures, postgres_figures, ray_run):
        figures.update(section(ctx))
    return figures
