"""Fusion figures: 3-part queries over a real 100k-segment index (synthetic vectors).

The index comes from ``bench.store.build_index`` (SQLite catalog with FTS rows + FAISS). Parts
are pre-embedded (two text parts whose words come from the index's vocabulary, so keyword
search runs too, and one indexed item), so the figures measure fusion, search, keyword hits,
calibration lookup and SQLite, not the text model.

Figures: ``fused_query_p50_ms_100k`` (the default strategy, attention_learned),
``..._<strategy>`` for the others, ``filtered_query_p50_ms_100k`` (the 3-part query under a
filter passing ~1% of items),
``calibration_s_100k`` (the one-off calibration of a fresh index).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence

import numpy as np

from bench.context import BenchContext, percentile_ms
from bench.store import ENCODER_ID, build_index, clustered, vocabulary

STRATEGIES = ("attention_learned", "weighted", "attention", "rrf", "score_sum")


class _StubEncoder:
    """Text -> a fixed pseudo-random unit vector per string (the model is not timed here)."""

    id = ENCODER_ID
    dim = 384

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        out = []
        for t in texts:
            seed = int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little")
            v = np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)
            out.append(v / np.linalg.norm(v))
        return np.stack(out)


def run(ctx: BenchContext) -> dict[str, float]:
    from search.engine import Engine
    from search.index import Index
    from search.query import Filters, Query, QueryPart

    n = 10_000 if ctx.quick else 100_000
    rounds = 20 if ctx.quick else 60
    vectors = clustered(n)
    root = ctx.scratch / "fusion-index"
    build_index(root, vectors)
    index = Index.open(root)
    engine = Engine(index, _StubEncoder())  # type: ignore[arg-type]
    t0 = time.perf_counter()
    engine.calibration()
    figures: dict[str, float] = {"calibration_s_100k": round(time.perf_counter() - t0, 3)}

    rng = np.random.default_rng(3)
    words, p = vocabulary()

    def make(fusion: str, filters: Filters | None = None) -> tuple[Query, np.ndarray]:
        text = [" ".join(rng.choice(words, 2, p=p)) for _ in range(2)]
        item = int(rng.integers(1, n + 1))
        parts = [QueryPart(text=text[0]), QueryPart(text=text[1], weight=0.7),
                 QueryPart(item_id=item, weight=-0.3)]
        vecs = np.stack([*_StubEncoder().encode_text(text), vectors[item - 1]])
        return Query(parts=parts, fusion=fusion, k=10, filters=filters or Filters()), vecs

    selective = Filters(path_glob="/bench/image/*7.jpg", min_size=1000 + n // 2 + n // 5)
    cases = {f"fused_query_p50_ms_100k_{s}": (s, None) for s in STRATEGIES[1:]}
    cases["fused_query_p50_ms_100k"] = (STRATEGIES[0], None)
    cases["filtered_query_p50_ms_100k"] = (STRATEGIES[0], selective)
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for fusion, filters in cases.values():  # warm-up (learned weights, FTS pages)
        engine.search_embedded(*make(fusion, filters))
    for _ in range(rounds):  # interleaved, so background load hits every case alike
        for name, (fusion, filters) in cases.items():
            query, vecs = make(fusion, filters)
            t = time.perf_counter()
            hits = engine.search_embedded(query, vecs)
            samples[name].append(time.perf_counter() - t)
            assert len(hits) == 10, (name, len(hits))
    for name, s in samples.items():
        figures[name] = percentile_ms(s, 50)
    index.close()
    return figures
