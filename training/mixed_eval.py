"""``crossfind eval-mixed``: one ranked list across media, judged on a mixed corpus.

Every query runs through the ``Engine`` users search with (default options: hybrid keywords,
one hit per item). Per query type and overall it reports

- ``P@10``, ``nDCG@10`` (binary gains) and ``perfect_P@10``, the P@10 of a perfect ranking of
  the same corpus (min(10, relevant) / 10), the upper bound;
- ``modality_oracle_P@10``: the P@10 of the same list with the hits of the modalities that hold
  nothing relevant for the query taken out, i.e. what ordering the media perfectly against each
  other could reach with these vectors (within a modality the order stays the engine's);
- irrelevant hits per modality in the top 10, and irrelevant keyword-matched hits;
- the same summaries per half of the query set (``by_split``: dev, test; ``MixedQuery.split``);
- cutoff F1 over each query's full list (k=1000): the best single global threshold on
  ``relevance`` and on raw cosine (one threshold for all queries), a per-query oracle threshold,
  and the F1 of the list kept by ``min_score="auto"`` where the engine supports it (else null).

``absent_audio`` queries (sounds whose class is not in the corpus) are measured apart, over the
audio hits alone: the best (absent, so irrelevant) hit's relevance per query against the
relevance of true hits of the sound queries (best per query, and all in their top 10).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from search.engine import Engine
from search.query import Filters, Query
from search.types import Hit
from training.mixed_corpus import CorpusItem
from training.mixed_queries import MixedQuery

TOP = 10
FULL_K = 1000
MODALITIES = ("image", "audio", "text")
QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)
RELEVANCE_GRID = np.linspace(0.0, 1.0, 201)
COSINE_GRID = np.linspace(-0.3, 1.0, 261)


@dataclass
class Judged:
    """One hit as judged: its modality, scores, keyword flag and relevance to the query."""

    modality: str
    relevance: float
    score: float
    keyword: bool
    relevant: bool


def auto_supported() -> bool:
    """Whether this engine's queries accept ``min_score="auto"`` (the per-query cutoff)."""
    try:
        Query.text("probe", min_score="auto")
    except ValidationError:
        return False
    return True


class Judge:
    """Looks up the corpus item of a hit and judges it for a query."""

    def __init__(self, corpus: Path, items: Sequence[CorpusItem]):
        root = Path(corpus).resolve()
        self.by_path = {str((root / i.path).resolve()): i for i in items}
        self._relevant: dict[str, list[str]] = {}  # query id -> modality of each relevant item
        self.items = items

    def _relevant_modalities(self, query: MixedQuery) -> list[str]:
        if query.id not in self._relevant:
            self._relevant[query.id] = [i.modality for i in self.items if query.relevant(i)]
        return self._relevant[query.id]

    def relevant_modalities(self, query: MixedQuery) -> set[str]:
        return set(self._relevant_modalities(query))

    def total_relevant(self, query: MixedQuery) -> int:
        return len(self._relevant_modalities(query))

    def judge(self, query: MixedQuery, hits: list[Hit]) -> list[Judged]:
        out = []
        for hit in hits:
            item = self.by_path.get(str(Path(hit.path).resolve()))
            out.append(Judged(
                modality=item.modality if item else hit.modality,
                relevance=float(hit.extra.get("relevance", 0.0)),
                score=float(hit.score),
                keyword=bool(hit.extra.get("keyword")),
                relevant=item is not None and query.relevant(item),
            ))
        return out


def _dcg(flags: Sequence[bool]) -> float:
    return float(sum(1.0 / np.log2(r + 2) for r, f in enumerate(flags) if f))


def top_metrics(judged: list[Judged], n_relevant: int) -> dict[str, float]:
    """P@10, nDCG@10, the perfect P@10, and irrelevant hits per modality in the top 10."""
    top = judged[:TOP]
    flags = [j.relevant for j in top]
    ideal = _dcg([True] * min(TOP, n_relevant))
    out = {
        "P@10": sum(flags) / TOP,
        "nDCG@10": _dcg(flags) / ideal if ideal else 0.0,
        "perfect_P@10": min(TOP, n_relevant) / TOP,
        "irrelevant_keyword": float(sum(j.keyword and not j.relevant for j in top)),
    }
    for m in MODALITIES:
        out[f"irrelevant_{m}"] = float(sum(j.modality == m and not j.relevant for j in top))
    return out


def modality_oracle_precision(judged: list[Judged], modalities: set[str]) -> float:
    """P@10 of ``judged`` with the hits of other modalities than ``modalities`` left out."""
    kept = [j for j in judged if j.modality in modalities][:TOP]
    return sum(j.relevant for j in kept) / TOP


def f1_curve(values: np.ndarray, relevant: np.ndarray, n_relevant: int,
             grid: np.ndarray) -> np.ndarray:
    """F1 of keeping the hits with value >= t, for each t of ``grid``."""
    kept = values[None, :] >= grid[:, None]
    tp = (kept & relevant[None, :]).sum(axis=1)
    return np.asarray(2 * tp / np.maximum(kept.sum(axis=1) + n_relevant, 1), dtype=np.float64)


def oracle_f1(values: np.ndarray, relevant: np.ndarray, n_relevant: int) -> float:
    """The best F1 of any threshold on ``values`` for this one query."""
    order = np.argsort(-values, kind="stable")
    tp = np.cumsum(relevant[order])
    kept = np.arange(1, len(order) + 1)
    return float(max(0.0, (2 * tp / (kept + n_relevant)).max(initial=0.0)))


def _quantiles(values: Sequence[float]) -> dict[str, float] | None:
    if not len(values):
        return None
    qs = np.quantile(np.asarray(values, dtype=np.float64), QUANTILES)
    out = {f"q{int(q * 100)}": round(float(v), 4) for q, v in zip(QUANTILES, qs)}
    out["mean"] = round(float(np.mean(values)), 4)
    out["n"] = len(values)
    return out


def _mean(rows: list[dict[str, float]], key: str) -> float:
    return round(float(np.mean([r[key] for r in rows])), 4) if rows else 0.0


def evaluate_mixed(
    engine: Engine,
    corpus: Path,
    items: Sequence[CorpusItem],
    queries: Sequence[MixedQuery],
    *,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Run ``queries`` over the indexed ``corpus`` and measure the lists (see the module doc)."""
    judge = Judge(corpus, items)
    auto = auto_supported()
    main = [q for q in queries if q.type != "absent_audio" and judge.total_relevant(q) > 0]
    skipped = [q.id for q in queries if q.type != "absent_audio" and judge.total_relevant(q) == 0]
    absent = [q for q in queries if q.type == "absent_audio"]
    per_query: list[dict[str, Any]] = []
    full: list[tuple[np.ndarray, np.ndarray, np.ndarray, int]] = []
    auto_f1: list[float] = []
    true_best: list[float] = []
    true_all: list[float] = []
    total = len(main) + len(absent)
    for n, q in enumerate(main, 1):
        n_rel = judge.total_relevant(q)
        top = judge.judge(q, engine.search(Query.text(q.query, k=TOP)).hits)
        row: dict[str, Any] = {"id": q.id, "type": q.type, "split": q.split, "query": q.query,
                               "relevant": n_rel, **top_metrics(top, n_rel)}
        hits = judge.judge(q, engine.search(Query.text(q.query, k=FULL_K)).hits)
        row["modality_oracle_P@10"] = modality_oracle_precision(hits, judge.relevant_modalities(q))
        rel = np.array([h.relevant for h in hits], dtype=bool)
        full.append((np.array([h.relevance for h in hits]), np.array([h.score for h in hits]),
                     rel, n_rel))
        row["oracle_f1"] = oracle_f1(full[-1][0], rel, n_rel)
        if auto:
            kept = judge.judge(q, engine.search(
                Query.text(q.query, k=FULL_K, min_score="auto")).hits)
            tp = sum(h.relevant for h in kept)
            row["auto_kept"] = len(kept)
            row["auto_f1"] = 2 * tp / (len(kept) + n_rel)
            auto_f1.append(row["auto_f1"])
        if q.audio:
            audio = judge.judge(q, engine.search(
                Query.text(q.query, k=TOP, filters=Filters(modality=["audio"]))).hits)
            found = [h.relevance for h in audio if h.relevant]
            if found:
                true_best.append(max(found))
                true_all.extend(found)
        per_query.append(row)
        if progress:
            progress(n, total)
    absent_best: list[float] = []
    absent_rows = []
    for n, q in enumerate(absent, len(main) + 1):
        clips = engine.search(Query.text(q.query, k=TOP, filters=Filters(modality=["audio"]))).hits
        if clips:
            best = max(float(h.extra.get("relevance", 0.0)) for h in clips)
            absent_best.append(best)
            absent_rows.append({"id": q.id, "query": q.query, "best_relevance": round(best, 4),
                                "best_path": Path(clips[0].path).name})
        if progress:
            progress(n, total)
    return {
        "queries": len(main),
        "skipped_no_relevant": skipped,
        "corpus": {m: sum(i.modality == m for i in items) for m in MODALITIES},
        "by_type": _by_type(per_query),
        "by_split": _by_type(per_query, "split"),
        "overall": _summary(per_query),
        "cutoff_f1": _cutoffs(full, auto_f1 if auto else None),
        "absent_audio": {
            "queries": len(absent),
            "best_absent_relevance": _quantiles(absent_best),
            "true_hit_best_relevance": _quantiles(true_best),
            "true_hit_relevance_top10": _quantiles(true_all),
            "absent_above_median_true": (
                round(float(np.mean(np.array(absent_best) > np.median(true_best))), 4)
                if absent_best and true_best else None
            ),
            "per_query": absent_rows,
        },
        "per_query": per_query,
    }


_SUMMARY_KEYS = ("P@10", "nDCG@10", "perfect_P@10", "modality_oracle_P@10", "irrelevant_keyword",
                 *(f"irrelevant_{m}" for m in MODALITIES), "oracle_f1")


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"queries": len(rows)}
    out.update({k: _mean(rows, k) for k in _SUMMARY_KEYS})
    if rows and "auto_f1" in rows[0]:
        out["auto_f1"] = _mean(rows, "auto_f1")
        out["auto_kept"] = _mean(rows, "auto_kept")
    out["P@10_share_of_perfect"] = (
        round(out["P@10"] / out["perfect_P@10"], 4) if out["perfect_P@10"] else 0.0
    )
    return out


def _by_type(rows: list[dict[str, Any]], key: str = "type") -> dict[str, Any]:
    """The summary of each value of ``key`` (query type, or split)."""
    types = dict.fromkeys(r[key] for r in rows)
    return {t: _summary([r for r in rows if r[key] == t]) for t in types}


def _cutoffs(full: list[tuple[np.ndarray, np.ndarray, np.ndarray, int]],
             auto_f1: list[float] | None) -> dict[str, Any]:
    """Mean F1 over queries: one global threshold on relevance / on cosine (the best one), the
    per-query oracle, and the auto cutoff's."""
    out: dict[str, Any] = {}
    for name, col, grid in (("relevance", 0, RELEVANCE_GRID), ("cosine", 1, COSINE_GRID)):
        curves = np.stack([f1_curve((rel if col == 0 else cos), flags, n, grid)
                           for rel, cos, flags, n in full])
        mean = curves.mean(axis=0)
        best = int(mean.argmax())
        out[f"best_global_{name}"] = {"f1": round(float(mean[best]), 4),
                                      "threshold": round(float(grid[best]), 4)}
    out["oracle_per_query"] = round(float(np.mean(
        [oracle_f1(rel, flags, n) for rel, _, flags, n in full])), 4)
    out["auto"] = round(float(np.mean(auto_f1)), 4) if auto_f1 is not None else None
    return out
