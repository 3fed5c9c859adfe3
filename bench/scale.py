"""Scale figures: one index of 1M realistic 384-d vectors with catalog rows (``--only scale``).

Vectors: real MiniLM embeddings of Flickr8k-extra training captions (the bundled text model),
replicated with noise drawn from their own covariance, L2-normalised: clusters and spread like
real embeddings, which clustered Gaussians are not. Without the model or the data the bench
falls back to ``bench.store.clustered`` and says so (``scale_vectors``).

The index is built as ``bench.store.build_index`` builds its 100k one (bulk SQL rows, durable
vectors, then the end-of-run compaction: ``faiss:auto``'s choice, trained and tuned) and cached
under ``.cache/bench-scale-<n>/`` with its build time; delete the folder to rebuild.

Figures (suffix ``_1m``): ``scale_items``, ``scale_store`` (what auto chose) and
``scale_store_params``; ``ann_recall_at_10`` (the store's top 10 against exact search over the
same vectors); ``ann_query_p50_ms`` (``Engine.search_vector``, k=10, hits looked up) and
``exact_query_p50_ms`` (raw FAISS Flat over the same vectors, same queries, same run) and their
ratio; ``text_query_p50_ms`` (``Engine.search`` of a text query, MiniLM encoding included, no
keyword tier) and ``text_query_hybrid_p50_ms`` (with the FTS5 keyword tiers, 8 queries);
``filtered_query_p50_ms_1pct`` / ``_50pct`` (a file-size range passing ~1% / ~50% of items,
a new range each query so no cached allowed set helps); ``first_query_s``
(a fresh process: imports, index open, model load, first answer) and ``rss_mb`` (that
process after its queries); ``checkpoint_mb_per_10k_new`` / ``checkpoint_s_per_10k_new``
(10k new vectors made durable in batches of 256 plus ``Index.checkpoint``: bytes this process
wrote, from /proc/self/io, and wall time) and ``rows_*`` the same for their catalog rows.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench.context import REPO, BenchContext, percentile_ms, rss_mb
from bench.store import (
    DIM,
    ENCODER_ID,
    K,
    _bundled_installed,
    build_index,
    clustered,
    text_encoder,
    vocabulary,
)

CACHE = REPO / ".cache"
SEED_CAPTIONS = 8000
NOISE = 0.6  # scale of the covariance noise around each replicated embedding
MTIME_BASE = 1_700_000_000_000_000_000  # bench.store.build_index: file mtime_ns = base + content id


def _tag(n: int) -> str:
    return "1m" if n == 1_000_000 else f"{n // 1000}k"


def seed_embeddings(shared: Path | None) -> np.ndarray | None:
    """MiniLM embeddings of real captions (cached), or None without the model or the data."""
    path = CACHE / f"bench-scale-seeds-{SEED_CAPTIONS}.npy"
    if path.exists():
        return np.load(path)
    captions = shared / "flickr8k_extra" / "captions_all.csv" if shared else None
    if captions is None or not captions.exists() or not _bundled_installed():
        return None
    import csv

    from search.encoders import create_encoder

    with open(captions, newline="") as fh:
        texts = [row["caption"] for row in csv.DictReader(fh) if row["split"] == "train"]
    texts = texts[:SEED_CAPTIONS]
    encoder = create_encoder("bundled:bridge")
    seeds = np.concatenate([encoder.encode_text(texts[i : i + 256]) for i in range(0, len(texts), 256)])
    CACHE.mkdir(exist_ok=True)
    np.save(path, seeds.astype(np.float32))
    return seeds


def realistic(n: int, seeds: np.ndarray, seed: int = 0) -> np.ndarray:
    """``n`` vectors: a random seed embedding plus noise of the seeds' own covariance."""
    rng = np.random.default_rng(seed)
    cov = np.cov(seeds, rowvar=False) + 1e-6 * np.eye(seeds.shape[1])
    chol = np.linalg.cholesky(cov).astype(np.float32)
    out = np.empty((n, seeds.shape[1]), dtype=np.float32)
    for start in range(0, n, 100_000):
        m = min(n, start + 100_000) - start
        block = seeds[rng.integers(0, len(seeds), m)]
        block = block + NOISE * (rng.standard_normal((m, seeds.shape[1]), dtype=np.float32) @ chol.T)
        out[start : start + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def _vectors(n: int, seeds: np.ndarray | None, seed: int) -> np.ndarray:
    return realistic(n, seeds, seed) if seeds is not None else clustered(n, seed=seed)


def _cached_index(n: int, seeds: np.ndarray | None) -> tuple[Path, dict[str, object]]:
    root = CACHE / f"bench-scale-{_tag(n)}"
    marker = root / "bench.json"
    if marker.exists():
        return root, json.loads(marker.read_text())
    import shutil

    shutil.rmtree(root, ignore_errors=True)
    t0 = time.perf_counter()
    vectors = _vectors(n, seeds, seed=0)
    build_index(root, vectors)
    del vectors
    built: dict[str, object] = {"n": n, "build_s": round(time.perf_counter() - t0, 1),
             "vectors": "minilm-replicated" if seeds is not None else "clustered"}
    marker.write_text(json.dumps(built))
    return root, built


def _calibrated(root: Path) -> None:
    """The relevance calibration the indexer computes at the end of a run (``build_index``
    writes rows in bulk, bypassing the indexer): computed once, reused within 10%."""
    from search.calibration import load_or_compute
    from search.index import Index

    with Index.open_for_write(root, ENCODER_ID, DIM) as index:
        encoder = text_encoder() if _bundled_installed() else None
        embed = encoder.encode_text if encoder is not None else clustered_text  # type: ignore[attr-defined]
        load_or_compute(index.store, index.catalog, ENCODER_ID, embed)


def clustered_text(texts: list[str]) -> np.ndarray:
    return clustered(len(texts), seed=7)


def probe(root: Path, queries_path: Path) -> dict[str, object]:
    """Run in a fresh process: open, first answer, then the timed queries and RSS."""
    t0 = time.perf_counter()
    from search.engine import Engine
    from search.index import Index
    from search.query import Filters, Query

    index = Index.open(root, encoder=ENCODER_ID)
    encoder: object
    if _bundled_installed():
        encoder = text_encoder()
    else:
        from bench.store import _VectorsOnly

        encoder = _VectorsOnly()
    engine = Engine(index, encoder)  # type: ignore[arg-type]
    rng = np.random.default_rng(3)
    words, p = vocabulary()
    texts = [" ".join(rng.choice(words, 3, p=p)) for _ in range(60)]
    first = engine.search(Query.text(texts[0], k=K)) if _bundled_installed() else None
    first_s = time.perf_counter() - t0
    out: dict[str, object] = {"first_query_s": round(first_s, 2), "first_hits": len(first.hits) if first else None}
    queries = np.load(queries_path)
    query = Query.text("bench", k=K, hybrid=False)
    for q in queries[:10]:
        engine.search_vector(q, query)
    times, found = [], []
    for q in queries:
        t = time.perf_counter()
        engine.search_vector(q, query)
        times.append(time.perf_counter() - t)
        found.append(index.store.search(q[None, :], K)[1][0].tolist())
    out["ann_query_p50_ms"] = percentile_ms(times, 50)
    print(f"ann done {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    out["ann_ids"] = found
    if _bundled_installed():
        # vector-only text queries (MiniLM encoding, ANN, re-rank, hit lookup), and a few
        # hybrid ones: their FTS5 keyword tiers over 500k passages are measured apart
        for label, hybrid, batch in (("text_query_p50_ms", False, texts[1:]),
                                     ("text_query_hybrid_p50_ms", True, texts[1:9])):
            text_times = []
            for phrase in batch:
                t1 = time.perf_counter()
                engine.search(Query.text(phrase, k=K, hybrid=hybrid))
                text_times.append(time.perf_counter() - t1)
            out[label] = percentile_ms(text_times, 50)
            print(f"{label} done {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    n_contents = int(str(index.catalog.counts()["contents"]))
    for label, share in (("1pct", 0.01), ("50pct", 0.5)):
        width = int(n_contents * share)
        samples = []
        for q in queries[:30]:
            start = int(rng.integers(1, n_contents - width))
            filt = Filters(min_size=1000 + start, max_size=1000 + start + width - 1)
            t1 = time.perf_counter()
            hits = engine.search_vector(q, Query.text("bench", k=K, hybrid=False, filters=filt))
            samples.append(time.perf_counter() - t1)
            assert len(hits) == K
        out[f"filtered_query_p50_ms_{label}"] = percentile_ms(samples, 50)
        print(f"filtered {label} done {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    out["rss_mb"] = round(rss_mb(), 1)
    info = index.info()
    out["store"], out["store_params"] = info["store"], info["store_params"]
    index.close()
    return out


def _exact(root: Path, queries: np.ndarray, n: int) -> tuple[list[list[int]], list[float]]:
    import faiss

    from search.catalog import Catalog
    from search.index import CATALOG

    catalog = Catalog(root / CATALOG)
    flat = faiss.IndexFlatIP(DIM)
    ids = []
    for chunk_ids, vecs in catalog.iter_vectors(DIM):
        flat.add(vecs)
        ids.append(chunk_ids)
    catalog.close()
    all_ids = np.concatenate(ids)
    faiss.omp_set_num_threads(1)  # as the store runs one query
    times, found = [], []
    for q in queries:
        t = time.perf_counter()
        _, pos = flat.search(q[None, :], K)
        times.append(time.perf_counter() - t)
        found.append(all_ids[pos[0]].tolist())
    del flat
    return found, times


def _io_written() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    return 0


def _checkpoint(root: Path, seeds: np.ndarray | None, n_new: int = 10_000) -> dict[str, float]:
    """10k new items written in indexer-sized batches (256), the items removed afterwards.

    The rows and the vectors are timed apart so the checkpoint figures compare with the old
    design's (rows committed, then the vector file saved): ``checkpoint_*`` is the vectors'
    durable write plus ``Index.checkpoint``; ``rows_*`` the catalog rows alone. The indexer
    writes both in one transaction per batch (``Index.add_contents``)."""
    from search.catalog import NewContent, SegmentIn
    from search.index import Index

    vectors = _vectors(n_new, seeds, seed=11)
    stamp = time.time_ns()
    items = [NewContent(f"new-{stamp}-{i}", "image", 1000, [SegmentIn()],
                        [(f"/bench/new/{stamp}/{i}.jpg", 1000, MTIME_BASE)], 640, 480)
             for i in range(n_new)]
    with Index.open_for_write(root, ENCODER_ID, DIM) as index:
        io0, t0 = _io_written(), time.perf_counter()
        written = []
        for start in range(0, n_new, 256):
            written += index.catalog.add_contents(items[start : start + 256])
        io1, t1 = _io_written(), time.perf_counter()
        ids = [i for _, seg_ids in written for i in seg_ids]
        for start in range(0, n_new, 256):
            index.add_vectors(ids[start : start + 256], vectors[start : start + 256])
        index.checkpoint()
        io2, t2 = _io_written(), time.perf_counter()
        dropped = index.catalog.remove_contents([cid for cid, _ in written])
        index.remove_segments(dropped)
    return {"checkpoint_mb": (io2 - io1) / 1e6, "checkpoint_s": t2 - t1,
            "rows_mb": (io1 - io0) / 1e6, "rows_s": t1 - t0}


def run(ctx: BenchContext) -> dict[str, object]:
    n = 50_000 if ctx.quick else 1_000_000
    tag = _tag(n)
    seeds = seed_embeddings(ctx.shared_data)
    root, built = _cached_index(n, seeds)
    _calibrated(root)
    queries = _vectors(300, seeds, seed=9)
    qpath = ctx.scratch / "scale-queries.npy"
    np.save(qpath, queries)
    proc = subprocess.run(
        [sys.executable, "-m", "bench.scale", "--probe", str(root), str(qpath)],
        cwd=REPO, capture_output=True, text=True, timeout=1800, check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"scale probe failed: {proc.stderr[-2000:]}")
    sys.stderr.write(proc.stderr)
    probed = json.loads(proc.stdout.strip().splitlines()[-1])
    exact_ids, exact_times = _exact(root, queries, n)
    recall = np.mean([len(set(a) & set(e)) / K for a, e in zip(probed.pop("ann_ids"), exact_ids)])
    exact_p50 = percentile_ms(exact_times, 50)
    writes = _checkpoint(root, seeds)
    figures: dict[str, object] = {
        "scale_items": n,
        "scale_vectors": built["vectors"],
        f"scale_build_s_{tag}": built["build_s"],
        "scale_store": probed["store"],
        "scale_store_params": probed["store_params"],
        f"ann_recall_at_10_{tag}": round(float(recall), 4),
        f"ann_query_p50_ms_{tag}": probed["ann_query_p50_ms"],
        f"exact_query_p50_ms_{tag}": exact_p50,
        f"exact_over_ann_ratio_{tag}": round(exact_p50 / max(probed["ann_query_p50_ms"], 1e-6), 1),  # type: ignore[arg-type]
        f"rss_mb_{tag}": probed["rss_mb"],
        f"first_query_s_{tag}": probed["first_query_s"],
        f"filtered_query_p50_ms_{tag}_1pct": probed["filtered_query_p50_ms_1pct"],
        f"filtered_query_p50_ms_{tag}_50pct": probed["filtered_query_p50_ms_50pct"],
        f"checkpoint_mb_per_10k_new_{tag}": round(writes["checkpoint_mb"], 1),
        f"checkpoint_s_per_10k_new_{tag}": round(writes["checkpoint_s"], 2),
        f"rows_mb_per_10k_new_{tag}": round(writes["rows_mb"], 1),
        f"rows_s_per_10k_new_{tag}": round(writes["rows_s"], 2),
    }
    for key in ("text_query_p50_ms", "text_query_hybrid_p50_ms"):
        if key in probed:
            figures[f"{key}_{tag}"] = probed[key]
    return figures


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--probe":
        sys.stdout.write(json.dumps(probe(Path(sys.argv[2]), Path(sys.argv[3]))) + "\n")
