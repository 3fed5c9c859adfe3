"""From embedded query parts to ranked hits: fusion, filters, keywords, relevance, paging.

Every hit's ``score`` is its raw cosine similarity to the query vector (the weighted average
of the parts, or the attention-weighted one); ``relevance`` is that score calibrated per
modality to 0..1 (``search.calibration``), which ``min_score`` thresholds. The *order* is the
strategy's: cosine for early fusion, the fused value (shown as ``fused_score``) for late
fusion, and keyword hits (``keyword: true``) merged in by RRF when the query is hybrid.
A query with one part (or one non-zero part) takes the same path under every strategy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from search.attention import (
    NEIGHBOURS,
    attention_model,
    attention_weights,
    part_features,
)
from search.filters import path_matches
from search.fusion import check_weights, late_fuse, weighted_average
from search.query import Query
from search.types import Hit

if TYPE_CHECKING:
    import faiss

    from search.engine import Engine

# segments fetched per wanted hit when grouping passages/windows per item
OVERFETCH = 4
# attention features: neighbour scores over a random sample of this many items
ATTENTION_SAMPLE = 4096
# late fusion: candidates fetched per part, at least
LATE_POOL = 100
# keyword hits fetched per text part
KEYWORD_POOL = 100
# unfiltered candidates a broad filter is checked on before listing all the ids it passes
BROAD_PROBE = 512


def query_modality(engine: Engine, query: Query) -> str:
    """The modality of the strongest positive part (an item part: that item's modality)."""
    part = max(query.parts, key=lambda p: p.weight)
    if part.kind != "item":
        return part.kind
    info = engine.index.catalog.segments([int(part.item_id)]).get(int(part.item_id))
    return info.modality if info is not None else "text"


def _neighbour_sample(engine: Engine) -> tuple[np.ndarray, faiss.Index]:
    """A fixed random sample of the index (ids, a small exact FAISS index of their vectors)
    that attention features are computed against: a few thousand items, like the corpora the
    learned model was trained on, and far cheaper than searching the whole index per part."""
    import faiss

    store = engine.index.store
    key = (id(store), store.count())
    cached = engine._neighbour_sample
    if cached is not None and cached[0] == key:
        return cached[1], cached[2]
    ids = store.ids()
    if len(ids) > ATTENTION_SAMPLE:
        ids = np.sort(np.random.default_rng(0).choice(ids, ATTENTION_SAMPLE, replace=False))
    flat = faiss.IndexFlatIP(store.dim)
    if len(ids):
        flat.add(np.ascontiguousarray(store.reconstruct(ids), dtype=np.float32))
    engine._neighbour_sample = (key, ids, flat)
    return ids, flat


def fusion_weights(engine: Engine, strategy: str, vectors: np.ndarray, weights: np.ndarray,
                   kinds: list[str], item_ids: list[int | None]) -> np.ndarray:
    """The weights an early-fusion strategy gives the parts (attention re-weights them)."""
    if strategy not in ("attention", "attention_learned") or (weights > 0).sum() < 2:
        return weights
    ids, flat = _neighbour_sample(engine)
    if len(ids) < NEIGHBOURS + 1:
        return weights
    import faiss

    # one OpenMP thread for a handful of queries: FAISS workers only add contention on busy
    # cores (0.7 ms vs 17 ms here), as in the store
    faiss.omp_set_num_threads(1)
    scores, rows = flat.search(np.ascontiguousarray(vectors, dtype=np.float32), NEIGHBOURS + 1)
    top = np.empty((len(vectors), NEIGHBOURS), dtype=np.float32)
    for i, item in enumerate(item_ids):
        own = ids[rows[i]] == item if item is not None else np.zeros(NEIGHBOURS + 1, bool)
        # an indexed item's match with itself says nothing about its neighbours
        keep = np.nonzero(~own)[0][:NEIGHBOURS]
        top[i] = scores[i, keep]
    feats = part_features(vectors, weights, kinds, top)
    return attention_weights(weights, attention_model(strategy).logits(feats))


def _vector_ranking(
    engine: Engine,
    strategy: str,
    qvec: np.ndarray,
    vectors: np.ndarray,
    weights: np.ndarray,
    allowed: np.ndarray | None,
    n: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(segment ids best first, their cosine to ``qvec``, late-fusion scores or None)."""
    store = engine.index.store
    if strategy not in ("rrf", "score_sum"):
        scores, ids = store.search(qvec[None, :], n, allowed)
        keep = ids[0] >= 0
        return ids[0][keep], scores[0][keep], None
    pool: dict[int, None] = {}
    positive = vectors[weights > 0]
    _, ids = store.search(positive, max(n, LATE_POOL), allowed)
    for row in ids:
        pool.update(dict.fromkeys(int(i) for i in row if i >= 0))
    cand = np.fromiter(pool, dtype=np.int64, count=len(pool))
    if len(cand) == 0:
        return cand, np.zeros(0, np.float32), np.zeros(0, np.float32)
    cvecs = store.reconstruct(cand)
    fused = late_fuse(vectors @ cvecs.T, weights, strategy)  # type: ignore[arg-type]
    order = np.argsort(-fused, kind="stable")
    return cand[order], (cvecs @ qvec)[order], fused[order]


def _keyword_lists(engine: Engine, query: Query, allowed: np.ndarray | None) -> list[tuple[list[int], float]]:
    if not query.hybrid:
        return []
    from search.hybrid import keyword_ids

    top = max((p.weight for p in query.parts), default=1.0)
    lists = []
    for part in query.parts:
        if part.text is None or part.weight <= 0:
            continue
        ids = keyword_ids(engine.index.catalog, part.text, KEYWORD_POOL, engine.index.store.count())
        if allowed is not None and ids:
            ids = [i for i, ok in zip(ids, np.isin(ids, allowed)) if ok]
        if ids:
            lists.append((ids, part.weight / top))
    return lists


def _broad_filter(engine: Engine, query: Query, qvec: np.ndarray, strategy: str, need: int) -> np.ndarray | None:
    """For a filter that passes many items: the filter checked on the unfiltered top
    candidates only (one small SQL query), instead of listing every id it passes (500k ids at
    1M took ~0.5 s). None when too few candidates pass, or the query needs the full set
    (keyword hits, late fusion, a threshold): the caller then lists them all."""
    if (query.filters.is_empty() or query.hybrid or query.min_score is not None
            or strategy in ("rrf", "score_sum")):
        return None
    probe = max(BROAD_PROBE, 8 * need)
    _, ids = engine.index.store.search(qvec[None, :], probe, rerank=False)
    candidates = ids[0][ids[0] >= 0]
    if len(candidates) < probe:  # a small index: listing the allowed ids is cheap
        return None
    from search.filters import filter_ids

    passing = filter_ids(engine.index.catalog, query.filters, candidates)
    return passing if len(passing) >= 2 * need else None


def rank(engine: Engine, query: Query, vectors: np.ndarray, *, fused: bool = False,
         full_filter: bool = False) -> list[Hit]:
    """The hits of ``query`` whose part i embeds to ``vectors[i]`` (or, with ``fused``, whose
    parts were already fused into the one vector ``vectors[0]``)."""
    given = vectors
    vectors = np.asarray(vectors, dtype=np.float32)
    if fused:
        weights = np.ones(1, dtype=np.float32)
        vectors = vectors[:1]
    else:
        weights = np.array([p.weight for p in query.parts], dtype=np.float32)
    weights = check_weights(weights, len(vectors))
    store = engine.index.store
    kinds = [p.kind for p in query.parts]
    # one non-zero part: every strategy is the plain nearest-neighbour search
    strategy = query.fusion if (weights != 0).sum() > 1 else "weighted"
    weights = fusion_weights(engine, strategy, vectors, weights, kinds, [p.item_id for p in query.parts])
    qvec = weighted_average(vectors, weights)
    want = query.offset + query.k
    n = want * (OVERFETCH if query.group else 1)
    allowed = None if full_filter else _broad_filter(engine, query, qvec, strategy, n)
    shortcut = allowed is not None
    if allowed is None:
        allowed = engine.allowed_ids(query)
    if allowed is not None and len(allowed) == 0:
        return []
    qmod = query_modality(engine, query)
    calibration = engine.calibration()
    floor = calibration.floor(qmod, query.min_score) if query.min_score is not None else None
    keyword = _keyword_lists(engine, query, allowed)

    limit = len(allowed) if allowed is not None else store.count()
    while True:
        fetch = max(1, min(n, limit))
        ids, cos, fused = _vector_ranking(engine, strategy, qvec, vectors, weights, allowed, fetch)
        matched: set[int] = set()
        if keyword:
            from search.hybrid import rrf_merge

            vector_ids = ids
            ids, fused, matched = rrf_merge(ids, keyword)
            cos_of = dict(zip(vector_ids.tolist(), cos.tolist()))
            extra = [i for i in ids.tolist() if i not in cos_of]
            if extra:  # keyword hits the vector search did not return; one deleted since drops
                held, vecs = store.vectors(np.array(extra, dtype=np.int64))
                cos_of.update(zip(held.tolist(), (vecs @ qvec).tolist()))
                keep = np.array([i in cos_of for i in ids.tolist()], dtype=bool)
                ids, fused = ids[keep], fused[keep]
            cos = np.array([cos_of[i] for i in ids.tolist()], dtype=np.float32)
        # with a threshold some hits drop out after lookup, so none can be skipped
        hit_limit = want if query.min_score is None else None
        hits = _annotate(engine._to_hits(cos, ids, query.group, hit_limit), fused if strategy in ("rrf", "score_sum") else None, ids, matched, qmod, calibration, query)
        exhausted = fetch >= limit or (floor is not None and len(cos) and float(cos.min()) < floor)
        if shortcut and len(hits) < want and exhausted:  # grouping ate the candidates
            return rank(engine, query, given, fused=fused, full_filter=True)
        if len(hits) >= want or exhausted:
            return hits[query.offset : want]
        n *= 4


def _annotate(hits: list[Hit], fused: np.ndarray | None, ids: np.ndarray, matched: set[int], qmod: str, calibration, query: Query) -> list[Hit]:  # noqa: ANN001
    """Relevance, keyword flags and fused scores on the hits; the min_score threshold."""
    fused_of = dict(zip(ids.tolist(), fused.tolist())) if fused is not None else {}
    out = []
    for hit in hits:
        relevance = calibration.scale(qmod, hit.modality).relevance_one(hit.score)
        keyword = hit.id in matched
        if query.min_score is not None and relevance < query.min_score and not keyword:
            continue
        hit.extra["relevance"] = round(relevance, 4)
        if keyword:
            hit.extra["keyword"] = True
        if hit.id in fused_of:
            hit.extra["fused_score"] = round(float(fused_of[hit.id]), 6)
        if len(hit.paths) > 1 and not query.filters.is_empty():
            first = next((p for p in hit.paths if path_matches(p, query.filters)), hit.path)
            hit.paths = [first] + [p for p in hit.paths if p != first]
            hit.path = first
        out.append(hit)
    return out
