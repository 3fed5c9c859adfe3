"""The PostgreSQL catalog at 100k segments, against the SQLite one on the same rows
(``python -m bench.scaleout_postgres [--json] [--quick]``; ``postgres_figures`` for the
``scaleout`` section).

A throw-away server (``bench.pgserver``: initdb + pg_ctl in a temp folder, unix socket,
fsync off as for any scratch server) holds a catalog built through the real write path
(``Index.add_contents``: rows, keyword words and 384-d vectors in one transaction per batch of
256 contents); the same rows go into a SQLite catalog. Per engine, 200 repetitions each:

- ``*_hit_lookup_p50_ms_100k``: ``Catalog.segments`` of 10 random segment ids (segment +
  content + every path: what every search does with its hits);
  ``postgres_catalog_query_p50_ms_100k`` is this figure for PostgreSQL;
- ``*_filtered_query_p50_ms_100k``: ``allowed_segment_ids`` under a file-size range passing
  ~1% of the items, a new range each time (no cached allowed set);
- ``*_keyword_query_p50_ms_100k``: ``keyword_ids`` of a two-word query (phrase, AND and the
  rare-word tier: FTS5 / tsvector + GIN);
- ``*_catalog_write_segments_per_s``: the build's write rate;
- ``*_catalog_bytes_per_segment``: the catalog's size on disk (rows, keyword index, vectors)
  per segment: ``pg_database_size`` less an empty database's, or the SQLite file with its WAL.
Over a unix socket on the same machine: a network hop adds its round trips (3 statements for
a hit lookup, 1 for a filter).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from bench.context import BenchContext, percentile_ms, run_standalone
from bench.store import DIM, clustered, vocabulary

REPS = 200
BATCH = 256


def _items(n_segments: int, seed: int = 3) -> list:
    """Contents for ``n_segments`` segments: half as text documents of two 40-word passages,
    half as images, each with one path, a size and a modification time."""
    from search.catalog import NewContent, SegmentIn

    rng = np.random.default_rng(seed)
    words, p = vocabulary()
    n_text = n_segments // 4
    items = []
    for cid in range(1, n_text + n_segments // 2 + 1):
        is_text = cid <= n_text
        modality, ext = ("text", "txt") if is_text else ("image", "jpg")
        segments = (
            [SegmentIn(text=" ".join(words[rng.choice(len(words), 40, p=p)])) for _ in range(2)]
            if is_text else [SegmentIn()]
        )
        size = 1000 + cid
        items.append(NewContent(f"{cid:064x}", modality, size, segments,
                                [(f"/bench/{modality}/{cid:06d}.{ext}", size, 1_700_000_000_000_000_000 + cid)]))
    return items


def _build(root: Path, catalog_url: str | None, items: list, vectors: np.ndarray) -> float:
    """Write ``items`` through ``Index.add_contents``; returns segments per second."""
    from search.index import Index

    start = time.perf_counter()
    pos = 0
    with Index.open_for_write(root, "bench", DIM, catalog_url=catalog_url) as index:
        for i in range(0, len(items), BATCH):
            batch = items[i : i + BATCH]
            n = sum(len(item.segments) for item in batch)
            index.add_contents(batch, vectors[pos : pos + n])
            pos += n
        index.finish()  # as an indexing run ends (PostgreSQL: ANALYZE)
    return round(pos / (time.perf_counter() - start), 1)


def _measure(root: Path, n_segments: int, n_items: int) -> dict[str, float]:
    from search.filters import allowed_segment_ids
    from search.hybrid import keyword_ids
    from search.index import Index
    from search.query import Filters

    rng = np.random.default_rng(11)
    words, _ = vocabulary()
    with Index.open(root) as index:
        catalog = index.catalog
        lookups, filtered, keyword = [], [], []
        catalog.segments([1])  # the reader connection, opened once as a server does
        for _ in range(REPS):
            ids = rng.integers(1, n_segments + 1, 10).tolist()
            t = time.perf_counter()
            found = catalog.segments(ids)
            lookups.append(time.perf_counter() - t)
            assert len(found) == len(set(ids))
        width = max(1, n_items // 100)
        for _ in range(REPS):
            low = 1000 + int(rng.integers(1, n_items - width))
            t = time.perf_counter()
            allowed = allowed_segment_ids(catalog, Filters(min_size=low, max_size=low + width - 1))
            filtered.append(time.perf_counter() - t)
            assert allowed is not None and len(allowed) >= width
        for _ in range(REPS):
            query = " ".join(rng.choice(words[:2000], 2))
            t = time.perf_counter()
            keyword_ids(catalog, query, total=n_segments)
            keyword.append(time.perf_counter() - t)
    return {
        "hit_lookup_p50_ms": percentile_ms(lookups, 50),
        "filtered_query_p50_ms": percentile_ms(filtered, 50),
        "keyword_query_p50_ms": percentile_ms(keyword, 50),
    }


def _disk_bytes(root: Path, catalog_url: str | None, server) -> int:
    """The catalog's bytes on disk: a PostgreSQL database beyond an empty one's, or the SQLite
    file with its write-ahead log."""
    if catalog_url is None:
        return sum(p.stat().st_size for p in root.glob("catalog.sqlite3*"))
    import psycopg

    from bench.pgserver import _libpq

    with psycopg.connect(_libpq(server.url())) as con:
        used = con.execute("SELECT pg_database_size(%s)", (catalog_url.split("?")[0].rsplit("/", 1)[1],)).fetchone()
        empty = con.execute("SELECT pg_database_size('template0')").fetchone()
    return int(used[0]) - int(empty[0])


def postgres_figures(ctx: BenchContext) -> dict:
    """The PostgreSQL catalog's figures (and SQLite's on the same rows); ``{}`` plus a
    ``postgres_skipped`` reason where no server can be started here."""
    from bench.pgserver import temporary_server

    n = 10_000 if ctx.quick else 100_000
    tag = "_100k" if n == 100_000 else f"_{n // 1000}k"
    items = _items(n)
    vectors = clustered(n, DIM, seed=4)
    out: dict = {"postgres_catalog_segments": n}
    try:
        server_cm = temporary_server()
        server = server_cm.__enter__()
    except RuntimeError as exc:
        return {"postgres_skipped": str(exc)}
    try:
        url = server.create_database()
        for engine, catalog_url in (("postgres", url), ("sqlite", None)):
            root = ctx.scratch / f"catalog-{engine}"
            out[f"{engine}_catalog_write_segments_per_s"] = _build(root, catalog_url, items, vectors)
            out[f"{engine}_catalog_bytes_per_segment"] = round(_disk_bytes(root, catalog_url, server) / n)
            for key, value in _measure(root, n, len(items)).items():
                out[f"{engine}_catalog_{key}{tag}"] = value
    finally:
        server_cm.__exit__(None, None, None)
    out[f"postgres_catalog_query_p50_ms{tag}"] = out[f"postgres_catalog_hit_lookup_p50_ms{tag}"]
    return out


if __name__ == "__main__":
    raise SystemExit(run_standalone("python -m bench.scaleout_postgres", postgres_figures))
