"""From embedded query parts to ranked hits: fusion, filters, keywords, relevance, paging.

Every hit's ``score`` is its raw cosine similarity to the query vector (the weighted average
of the parts, or the attention-weighted one); ``relevance`` is that score calibrated per
modality to 0..1 (``search.calibration``), which ``min_score`` thresholds. The *order* is the
strategy's: cosine for early fusion, the fused value (shown as ``fused_score``) for late
fusion, and keyword hits (``keyword: true``) placed by cosine plus their weighted keyword
match, those of strong lexical evidence by that evidence too, when the query is hybrid
(``search.hybrid.blend_lexical``, ``merge_evidence``).
A query with one part (or one non-zero part) takes the same path under every strategy.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from search.attention import (
    NEIGHBOURS,
    attention_model,
    attention_weights,
    part_features,
)
from search.calibration import Calibration, auto_keep
from search.catalog import Catalog, SegmentInfo
from search.deadline import NO_DEADLINE, Deadline
from search.filters import allowed_for, filter_ids, path_matches
from search.fusion import check_weights, late_fuse, weighted_average
from search.hybrid import STRONG_EVIDENCE, KeywordHit, blend_lexical, keyword_hits, merge_evidence
from search.index import Index
from search.paths import shown
from search.query import Query
from search.store import StoreFilter, VectorStore, create_store
from search.types import Hit

# segments fetched per wanted hit when grouping passages/windows per item
OVERFETCH = 4
# attention features: neighbour scores over a random sample of this many items
ATTENTION_SAMPLE = 4096
# late fusion: candidates fetched per part, at least
LATE_POOL = 100
# keyword hits fetched per text part
KEYWORD_POOL = 100
# the auto cutoff weighs at least this many hits (above the auto floor) before it cuts
AUTO_POOL = 100
# a threshold with another order than relevance sorts at most this many kept hits
SORT_POOL = 1000
# unfiltered candidates a broad filter is checked on before listing all the ids it passes
BROAD_PROBE = 512
# a search that hides hits (``Visibility``) stops looking once it has hidden this many: it
# answers with fewer hits rather than check every file of, say, a deleted folder
HIDDEN_CAP = 10_000

# the paths of a segment's item that may be shown (none: its hit is hidden)
ShownPaths = Callable[[SegmentInfo], list[str]]


def query_modality(catalog: Catalog, query: Query) -> str:
    """The modality of the strongest positive part (an item part: that item's modality)."""
    part = max(query.parts, key=lambda p: p.weight)
    if part.kind != "item":
        return part.kind
    item = int(part.item_id or 0)  # an item part always has one
    info = catalog.segments([item]).get(item)
    return info.modality if info is not None else "text"


class NeighbourSample:
    """A fixed random sample of an index (its ids, and a small exact store of their vectors)
    that attention features are computed against: a few thousand items, like the corpora the
    learned model was trained on, and far cheaper than searching the whole index per part.
    Rebuilt when the index's store changes."""

    def __init__(self) -> None:
        self._key: tuple[int, int] | None = None
        self._ids = np.zeros(0, dtype=np.int64)
        self._store: VectorStore | None = None

    def get(self, store: VectorStore) -> tuple[np.ndarray, VectorStore]:
        key = (id(store), store.count())
        if self._store is None or self._key != key:
            ids = store.ids()
            if len(ids) > ATTENTION_SAMPLE:
                ids = np.sort(np.random.default_rng(0).choice(ids, ATTENTION_SAMPLE, replace=False))
            sample = create_store(store.dim)
            sample.add(ids, store.reconstruct(ids))
            self._key, self._ids, self._store = key, ids, sample
        return self._ids, self._store


class Visibility:
    """Which paths of each candidate segment may be shown (``shown``, e.g. the files that may
    still be read): asked once per segment in one search, since each round of ``rank`` looks
    at the same top candidates again. ``hidden`` counts the segments with none."""

    def __init__(self, shown: ShownPaths) -> None:
        self.shown = shown
        self._paths: dict[int, list[str]] = {}
        self.hidden = 0

    def paths(self, seg_id: int, info: SegmentInfo) -> list[str]:
        paths = self._paths.get(seg_id)
        if paths is None:
            paths = self._paths[seg_id] = list(self.shown(info))
            self.hidden += not paths
        return paths


def fusion_weights(sample: NeighbourSample, store: VectorStore, strategy: str,
                   vectors: np.ndarray, weights: np.ndarray, kinds: list[str],
                   item_ids: list[int | None]) -> np.ndarray:
    """The weights an early-fusion strategy gives the parts (attention re-weights them)."""
    if strategy not in ("attention", "attention_learned") or (weights > 0).sum() < 2:
        return weights
    ids, near = sample.get(store)
    if len(ids) < NEIGHBOURS + 1:
        return weights
    scores, found = near.search(vectors, NEIGHBOURS + 1)
    top = np.empty((len(vectors), NEIGHBOURS), dtype=np.float32)
    for i, item in enumerate(item_ids):
        own = found[i] == item if item is not None else np.zeros(NEIGHBOURS + 1, bool)
        # an indexed item's match with itself says nothing about its neighbours
        keep = np.nonzero(~own)[0][:NEIGHBOURS]
        top[i] = scores[i, keep]
    feats = part_features(vectors, weights, kinds, top)
    return attention_weights(weights, attention_model(strategy).logits(feats))


def _vector_ranking(
    store: VectorStore,
    strategy: str,
    qvec: np.ndarray,
    vectors: np.ndarray,
    weights: np.ndarray,
    allowed: np.ndarray | StoreFilter | None,
    n: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(segment ids best first, their cosine to ``qvec``, late-fusion scores or None).
    ``allowed`` is a ``StoreFilter`` only for a store whose ``pushdown`` is true."""
    if strategy not in ("rrf", "score_sum"):
        scores, ids = store.search(qvec[None, :], n, allowed)  # type: ignore[arg-type]
        keep = ids[0] >= 0
        return ids[0][keep], scores[0][keep], None
    pool: dict[int, None] = {}
    positive = vectors[weights > 0]
    _, ids = store.search(positive, max(n, LATE_POOL), allowed)  # type: ignore[arg-type]
    for row in ids:
        pool.update(dict.fromkeys(int(i) for i in row if i >= 0))
    cand = np.fromiter(pool, dtype=np.int64, count=len(pool))
    if len(cand) == 0:
        return cand, np.zeros(0, np.float32), np.zeros(0, np.float32)
    cvecs = store.reconstruct(cand)
    fused = late_fuse(vectors @ cvecs.T, weights, strategy)  # type: ignore[arg-type]
    order = np.argsort(-fused, kind="stable")
    return cand[order], (cvecs @ qvec)[order], fused[order]


def _keyword_evidence(index: Index, query: Query,
                      allowed: np.ndarray | StoreFilter | None) -> dict[int, tuple[KeywordHit, float]]:
    """Keyword hits of the query's text parts: id -> (hit, its part's weight next to the
    strongest part's); a hit of several parts keeps its strongest."""
    if not query.hybrid:
        return {}
    top = max((p.weight for p in query.parts), default=1.0)
    out: dict[int, tuple[KeywordHit, float]] = {}
    for part in query.parts:
        if part.text is None or part.weight <= 0:
            continue
        hits = keyword_hits(index.catalog, part.text, KEYWORD_POOL, index.store.count())
        if allowed is not None and hits:
            ids = np.array([h.id for h in hits], dtype=np.int64)
            passing = (filter_ids(index.catalog, query.filters, ids)  # a store-side filter
                       if isinstance(allowed, StoreFilter) else allowed)
            hits = [h for h, ok in zip(hits, np.isin(ids, passing)) if ok]
        for hit in hits:
            held = out.get(hit.id)
            if held is None or hit.evidence * part.weight > held[0].evidence * held[1] * top:
                out[hit.id] = (hit, part.weight / top)
    return out


def _kinds(catalog: Catalog, ids: list[int]) -> dict[int, str]:
    """What made each segment's vector (``_vector_kind``); one lookup, ids since deleted absent."""
    return {seg: _vector_kind(info) for seg, info in catalog.segments(ids).items()}


def _relevance(kind_of: dict[int, str], calibration: Calibration, qmod: str, ids: list[int],
               cos: list[float], tops: dict[str, float]) -> np.ndarray:
    """The calibrated relevance of candidate segments (``kind_of``: what made each one's
    vector, from ``_kinds``); ``tops``: the best cosine per kind seen so far, updated (a hit's
    gap to it is evidence)."""
    kinds = [kind_of.get(seg) for seg in ids]
    for kind, score in zip(kinds, cos):
        if kind is not None:
            tops[kind] = max(tops.get(kind, -1.0), score)
    out = np.zeros(len(ids), dtype=np.float64)
    for n, (kind, score) in enumerate(zip(kinds, cos)):
        if kind is not None:
            out[n] = calibration.relevance_one(qmod, kind, score, score - tops[kind])
    return out


def _broad_filter(index: Index, query: Query, qvec: np.ndarray, strategy: str, need: int) -> np.ndarray | None:
    """For a filter that passes many items: the filter checked on the unfiltered top
    candidates only (one small SQL query), instead of listing every id it passes (500k ids at
    1M took ~0.5 s). None when too few candidates pass, or the query needs the full set
    (keyword hits, late fusion, a threshold): the caller then lists them all. None too for a
    store that filters itself (Milvus: the filter goes to it as an expression)."""
    if (query.filters.is_empty() or query.hybrid or query.min_score is not None
            or strategy in ("rrf", "score_sum") or index.store.pushdown):
        return None
    probe = max(BROAD_PROBE, 8 * need)
    _, ids = index.store.search(qvec[None, :], probe, rerank=False)
    candidates = ids[0][ids[0] >= 0]
    if len(candidates) < probe:  # a small index: listing the allowed ids is cheap
        return None
    passing = filter_ids(index.catalog, query.filters, candidates)
    return passing if len(passing) >= 2 * need else None


def rank(index: Index, query: Query, vectors: np.ndarray, *,
         calibration: Callable[[], Calibration], sample: NeighbourSample,
         fused: bool = False, full_filter: bool = False,
         shown: ShownPaths | Visibility | None = None,
         deadline: Deadline = NO_DEADLINE) -> list[Hit]:
    """The hits of ``query`` whose part i embeds to ``vectors[i]`` (or, with ``fused``, whose
    parts were already fused into the one vector ``vectors[0]``) over ``index``.

    Args:
        calibration: the index's relevance calibration (called once, after the filters).
        sample: the neighbour sample attention fusion reads (kept by the caller across queries).
        full_filter: list every id the filters pass (no candidates shortcut).
        shown: the paths of a candidate that may be shown; each hit keeps only those, and one
            with none is left out before the auto cutoff, sorting and paging, so a page holds
            ``k`` shown hits while there are that many, and ``offset`` counts shown hits only.
            Relevance is the same as without (the best cosine of a kind counts hidden hits
            too). After ``HIDDEN_CAP`` hidden hits the search answers with what it found.
        deadline: checked before each round of candidates, so a search its caller gave up on
            (a request past its timeout) stops instead of fetching ever larger rounds.

    Raises:
        RequestTimeout: the deadline passed.
    """
    visible = Visibility(shown) if shown is not None and not isinstance(shown, Visibility) else shown
    given = vectors
    vectors = np.asarray(vectors, dtype=np.float32)
    if fused:
        weights = np.ones(1, dtype=np.float32)
        vectors = vectors[:1]
    else:
        weights = np.array([p.weight for p in query.parts], dtype=np.float32)
    weights = check_weights(weights, len(vectors))
    store = index.store
    kinds: list[str] = [p.kind for p in query.parts]
    # one non-zero part: every strategy is the plain nearest-neighbour search
    strategy = query.fusion if (weights != 0).sum() > 1 else "weighted"
    weights = fusion_weights(sample, store, strategy, vectors, weights, kinds,
                             [p.item_id for p in query.parts])
    qvec = weighted_average(vectors, weights)
    want = query.offset + query.k
    n = want * (OVERFETCH if query.group else 1)
    broad = None if full_filter else _broad_filter(index, query, qvec, strategy, n)
    shortcut = broad is not None
    allowed = broad if broad is not None else allowed_for(index.catalog, query.filters, store)
    limit = _allowed_count(store, allowed)
    if limit == 0:
        return []
    qmod = query_modality(index.catalog, query)
    scales = calibration()
    auto = query.min_score == "auto"
    # the least relevance kept: the auto cutoff's floor, or the threshold asked
    least = scales.shipped.auto_floor if query.min_score == "auto" else query.min_score
    floor = scales.floor(qmod, least) if least is not None else None
    keyword = _keyword_evidence(index, query, allowed)

    while True:
        deadline.check()
        fetch = max(1, min(n, limit))
        ids, cos, scores = _vector_ranking(store, strategy, qvec, vectors, weights, allowed, fetch)
        matched: set[int] = set()
        if keyword:
            cos_of = dict(zip(ids.tolist(), cos.tolist()))
            late_of = dict(zip(ids.tolist(), scores.tolist())) if scores is not None else {}
            extra = [i for i in keyword if i not in cos_of]
            if extra:  # keyword hits the vector search did not return; one deleted since drops
                held, vecs = store.vectors(np.array(extra, dtype=np.int64))
                cos_of.update(zip(held.tolist(), (vecs @ qvec).tolist()))
            found = [i for i in keyword if i in cos_of]
            if scores is None:  # early fusion: a keyword hit's words add to its cosine
                ids = blend_lexical(ids, cos_of, {i: keyword[i][0].match * keyword[i][1] for i in found})
            kind_of = _kinds(index.catalog, list(dict.fromkeys([*ids.tolist(), *found])))
            tops: dict[str, float] = {}  # the best cosine per kind, for the gap to it
            vector_rel = _relevance(kind_of, scales, qmod, ids.tolist(),
                                    [cos_of[i] for i in ids.tolist()], tops)
            meaning = _relevance(kind_of, scales, qmod, found, [cos_of[i] for i in found], tops)
            lexical = {i: (keyword[i][0].supported(m) * keyword[i][1], m)
                       for i, m in zip(found, meaning.tolist())}
            ids, _ = merge_evidence(ids, vector_rel, {i: ev for i, ev in lexical.items()
                                                      if ev[0] >= STRONG_EVIDENCE})
            matched = set(found)
            cos = np.array([cos_of[i] for i in ids.tolist()], dtype=np.float32)
            if scores is not None:
                scores = np.array([late_of.get(i, np.nan) for i in ids.tolist()], dtype=np.float32)
        # with a threshold some hits drop out after lookup, so none can be skipped
        hit_limit = want if least is None else None
        late = scores if strategy in ("rrf", "score_sum") else None
        hits = _annotate(to_hits(index.catalog, cos, ids, query.group, hit_limit, visible), late,
                         ids, matched, qmod, scales, query, least, keyword_kept=not auto)
        capped = visible is not None and visible.hidden >= HIDDEN_CAP
        if visible is not None:
            hits = [h for h in hits if h.paths]
        exhausted = fetch >= limit or (floor is not None and len(cos) and float(cos.min()) < floor)
        if shortcut and len(hits) < want and exhausted and not capped:  # grouping ate them
            return rank(index, query, given, calibration=calibration, sample=sample, fused=fused,
                        full_filter=True, shown=visible, deadline=deadline)
        exhausted = exhausted or capped
        if auto and (exhausted or len(hits) >= max(want, AUTO_POOL)):
            return sort_hits(cut_auto(hits, scales.shipped.auto_floor), query.sort)[query.offset : want]
        # sorting other than by relevance orders every kept hit (up to SORT_POOL)
        whole = least is not None and query.sort != "relevance"
        if not auto and (exhausted or len(hits) >= (max(want, SORT_POOL) if whole else want)):
            kept = hits if least is not None else hits[:want]
            return sort_hits(kept, query.sort)[query.offset : want]
        n *= 4


def cut_auto(hits: list[Hit], floor: float) -> list[Hit]:
    """The hits the auto cutoff keeps (``auto_keep`` over their relevance), in order. Keyword
    hits are weighed like the others: a word shared with a passage is no evidence on its own."""
    rel = np.array([h.extra["relevance"] for h in hits], dtype=np.float64)
    return [h for h, k in zip(hits, auto_keep(rel, floor).tolist()) if k]


def sort_hits(hits: list[Hit], order: str) -> list[Hit]:
    """``hits`` in the asked order: the ranking's, newest file first, or by shown path."""
    if order == "date":
        return sorted(hits, key=lambda h: -h.mtime_ns)
    if order == "name":
        return sorted(hits, key=lambda h: shown(h.path))
    return hits


def _allowed_count(store: VectorStore, allowed: np.ndarray | StoreFilter | None) -> int:
    if allowed is None:
        return store.count()
    if isinstance(allowed, StoreFilter):
        return store.count(allowed)  # type: ignore[call-arg]  # a store that pushes filters down
    return len(allowed)


def _vector_kind(hit: Hit | SegmentInfo) -> str:
    """What made the hit's vector, for calibration: text read off an image is text, a video
    frame an image, a video's sound audio."""
    if hit.ocr:
        return "text"
    if hit.stream is not None:
        return "image" if hit.stream == "frame" else "audio"
    return hit.modality


def _annotate(hits: list[Hit], fused: np.ndarray | None, ids: np.ndarray, matched: set[int],
              qmod: str, calibration: Calibration, query: Query, least: float | None,
              keyword_kept: bool = True) -> list[Hit]:
    """Relevance, keyword flags and fused scores on the hits; the ``least`` relevance kept
    (keyword hits below it too, with ``keyword_kept``)."""
    fused_of = dict(zip(ids.tolist(), fused.tolist())) if fused is not None else {}
    top: dict[str, float] = {}  # the best cosine per kind: a hit's gap to it is evidence
    for hit in hits:
        kind = _vector_kind(hit)
        top[kind] = max(top.get(kind, -1.0), hit.score)
    out = []
    for hit in hits:
        kind = _vector_kind(hit)
        relevance = calibration.relevance_one(qmod, kind, hit.score, hit.score - top[kind])
        keyword = hit.id in matched
        if least is not None and relevance < least and not (keyword and keyword_kept):
            continue
        hit.extra["relevance"] = round(relevance, 4)
        if keyword:
            hit.extra["keyword"] = True
        if hit.id in fused_of and not np.isnan(fused_of[hit.id]):
            hit.extra["fused_score"] = round(float(fused_of[hit.id]), 6)
        if len(hit.paths) > 1 and not query.filters.is_empty():
            first = next((p for p in hit.paths if path_matches(p, query.filters)), hit.path)
            hit.paths = [first] + [p for p in hit.paths if p != first]
            hit.path = first
        out.append(hit)
    return out


def to_hits(
    catalog: Catalog, scores: np.ndarray, ids: np.ndarray, group: bool, limit: int | None = None,
    visible: Visibility | None = None,
) -> list[Hit]:
    """Hits for candidate ``ids`` in order (one per item with ``group``), at most ``limit``.

    Metadata is read only for as many candidates as the hits still wanted need, so a
    query over-fetched for grouping does not pay a lookup for every candidate. With
    ``visible`` each hit has only the paths it may show; one with none is kept with no
    ``paths`` (its cosine still counts for relevance) and does not count toward ``limit``.
    """
    keep = ids >= 0
    score_list, ids_list = scores[keep].tolist(), ids[keep].tolist()
    hits: list[Hit] = []
    seen: set[int] = set()
    infos: dict[int, SegmentInfo] = {}
    looked = 0
    count = 0  # hits with paths to show
    for pos, (score, seg_id) in enumerate(zip(score_list, ids_list)):
        if limit is not None and count >= limit:
            break
        if pos >= looked:
            todo = len(ids_list) if limit is None else max(8, 2 * (limit - count))
            infos = catalog.segments(ids_list[pos : pos + todo])
            looked = pos + todo
        info = infos.get(seg_id)
        if info is None or not info.paths:  # deleted since the store snapshot
            continue
        if group:
            if info.content_id in seen:
                continue
            seen.add(info.content_id)
        paths = info.paths if visible is None else list(visible.paths(seg_id, info))
        count += bool(paths)
        hits.append(
            Hit(
                id=seg_id,
                path=info.path if info.path in paths or not paths else paths[0],
                modality=info.modality,
                score=score,
                content_id=info.content_id,
                paths=paths,
                snippet=info.text,
                char_start=info.char_start,
                char_end=info.char_end,
                start_s=info.start_s,
                end_s=info.end_s,
                page=info.page,
                stream=info.stream,
                ocr=info.ocr,
                mtime_ns=info.mtime_ns,
            )
        )
    return hits
