"""``crossfind train-calibration``: fit the shipped relevance calibration.

For every query type (query modality > result modality) the judged pool of
``training.calibration_data`` gives (cosine, relevant?) pairs; a Platt model per type,

    relevance = sigmoid(a * cos + b * (cos - top) + c)

with ``top`` the query's best cosine in that result modality, is fitted by weighted logistic
regression (each query counts once, however many items it judged). Platt rather than isotonic:
it is monotone in the cosine, so a relevance threshold maps back to a cosine floor the ranking
can stop at, and a two- or three-number model cannot overfit a few hundred queries. The
``--min-score auto`` rule's one setting (the least relevance it keeps) is chosen here too, by
the mean F1 of the kept sets over the training-side text queries.
"""

from __future__ import annotations

import logging
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from search.calibration import auto_keep
from search.checkpoints import PlattModel, RelevanceWeights
from search.encoders import create_encoder
from training.calibration_data import (
    CONCEPTS,
    SOUNDS,
    Pool,
    embed_pool,
    photo_concepts,
    text_concepts,
)

log = logging.getLogger(__name__)

QUERY_PHOTOS = 200
QUERY_CLIPS = 240


@dataclass
class Judged:
    """One query type's scores [queries, items] and relevance labels."""

    scores: np.ndarray
    labels: np.ndarray

    def features(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(cos, cos - the query's top cos, relevant 0/1, weight) per judged pair: each query
        weighs one in all."""
        ok = np.isfinite(self.scores)
        top = np.max(np.where(ok, self.scores, -np.inf), axis=1, keepdims=True)
        weights = np.broadcast_to(1.0 / np.maximum(ok.sum(axis=1, keepdims=True), 1), self.scores.shape)
        return self.scores[ok], (self.scores - top)[ok], np.where(self.labels, 1.0, 0.0)[ok], weights[ok]


def _concept_labels(sounds: tuple[str, ...], labels: list[str]) -> np.ndarray:
    return np.array([lab in sounds for lab in labels], dtype=bool)


def judge(pool: Pool, encoder: Any, seed: int = 0) -> dict[str, Judged]:
    """The judged score matrices per query type."""
    rng = np.random.default_rng(seed)
    queries = CONCEPTS + SOUNDS
    qvecs = encoder.encode_text([q for q, _, _ in queries])
    photo_rel = np.zeros((len(queries), len(pool.photo_captions)), dtype=bool)
    text_rel = np.zeros((len(queries), len(pool.texts)), dtype=bool)
    for i, (_, pattern, _) in enumerate(queries):
        if not pattern:
            continue
        rx = re.compile(pattern, re.IGNORECASE)
        photo_rel[i] = [any(rx.search(c) for c in caps) for caps in pool.photo_captions]
        text_rel[i] = [bool(rx.search(t)) for t in pool.texts]
    clip_rel = np.stack([_concept_labels(s, pool.clip_labels) for _, _, s in queries])
    out = {
        "text>image": Judged(qvecs @ pool.photo_vecs.T, photo_rel),
        "text>text": Judged(qvecs @ pool.text_vecs.T, text_rel),
        "text>audio": Judged(pool.clip_scores(qvecs), clip_rel),
    }
    # image queries: photos and texts sharing a concept; clips whose label a shared concept names
    pc, tc = photo_concepts(pool.photo_captions), text_concepts(pool.texts)
    cc = np.stack([_concept_labels(s, pool.clip_labels) for _, _, s in CONCEPTS], axis=1)
    qp = rng.choice(np.flatnonzero(pc.any(axis=1)), min(QUERY_PHOTOS, int(pc.any(axis=1).sum())), replace=False)
    ii = pool.photo_vecs[qp] @ pool.photo_vecs.T
    ii[np.arange(len(qp)), qp] = -np.inf  # a photo is not its own hit
    out["image>image"] = Judged(ii, (pc[qp].astype(int) @ pc.T.astype(int)) > 0)
    out["image>text"] = Judged(pool.photo_vecs[qp] @ pool.text_vecs.T, (pc[qp].astype(int) @ tc.T.astype(int)) > 0)
    out["image>audio"] = Judged(pool.clip_scores(pool.photo_vecs[qp]), (pc[qp].astype(int) @ cc.T.astype(int)) > 0)
    labels = np.array(pool.clip_labels)
    qc = rng.choice(len(labels), min(QUERY_CLIPS, len(labels)), replace=False)
    aa = pool.clip_scores(pool.clip_vecs[qc])
    aa[np.arange(len(qc)), qc] = -np.inf
    out["audio>audio"] = Judged(aa, labels[qc][:, None] == labels[None, :])
    has = cc[qc].any(axis=1)
    if has.any():
        qa = qc[has]
        out["audio>image"] = Judged(pool.clip_vecs[qa] @ pool.photo_vecs.T, (cc[qa].astype(int) @ pc.T.astype(int)) > 0)
        out["audio>text"] = Judged(pool.clip_vecs[qa] @ pool.text_vecs.T, (cc[qa].astype(int) @ tc.T.astype(int)) > 0)
    return out


def fit_platt(x: np.ndarray, y: np.ndarray, w: np.ndarray, l2: float = 1e-6, steps: int = 50) -> np.ndarray:
    """Weighted logistic regression by Newton's method; ``x`` [n, f] -> coefficients [f + 1]."""
    X = np.hstack([x, np.ones((len(x), 1))])
    w = w / w.sum()
    beta = np.zeros(X.shape[1])
    reg = l2 * np.eye(X.shape[1])
    reg[-1, -1] = 0.0
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-np.clip(X @ beta, -30, 30)))
        grad = X.T @ (w * (p - y)) + reg @ beta
        hess = (X * (w * p * (1 - p))[:, None]).T @ X + reg
        step = np.linalg.solve(hess, grad)
        beta -= step
        if np.abs(step).max() < 1e-8:
            break
    return beta


def log_loss(model: PlattModel, cos: np.ndarray, gap: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    p = np.clip(model.probability(cos, gap), 1e-6, 1 - 1e-6)
    return float(-(w * (y * np.log(p) + (1 - y) * np.log(1 - p))).sum() / w.sum())


def fit_models(judged: dict[str, Judged], use_gap: bool = True) -> dict[str, PlattModel]:
    """A Platt model per query type. Relevance must grow with the cosine and fall with the gap
    to the best hit (the ranking's cosine floor relies on it): a type whose two features fit
    otherwise (they are correlated) is refitted on the cosine alone, and a type whose cosine
    does not separate its relevant hits is left to the index's own scale."""
    models = {}
    for name, j in judged.items():
        cos, gap, y, w = j.features()
        if y.sum() < 5:
            log.warning("%s: only %d relevant pairs; left to the index's own calibration", name, int(y.sum()))
            continue
        beta = fit_platt(np.stack([cos, gap], axis=1), y, w) if use_gap else None
        if beta is None or beta[0] <= 0 or beta[1] < 0:
            a, c = fit_platt(cos[:, None], y, w)
            beta = np.array([a, 0.0, c])
        if beta[0] <= 0:
            log.warning("%s: relevance does not grow with the cosine; left to the index's own calibration", name)
            continue
        models[name] = PlattModel(float(beta[0]), float(beta[1]), float(beta[2]))
    return models


def _split(j: Judged, half: int) -> Judged:
    idx = np.arange(len(j.scores)) % 2 == half
    return Judged(j.scores[idx], j.labels[idx])


def held_out_report(judged: dict[str, Judged]) -> dict[str, Any]:
    """Log loss and share of relevant hits kept at 0.5, fitted on half of each type's queries
    and measured on the other half, with and without the gap feature."""
    report: dict[str, Any] = {}
    for name, j in judged.items():
        a, b = _split(j, 0), _split(j, 1)
        row = {}
        for label, gap in (("cos", False), ("cos+gap", True)):
            m = fit_models({name: a}, gap).get(name)
            if m is None:
                continue
            cos, g, y, w = b.features()
            p = m.probability(cos, g)
            kept = p >= 0.5
            row[label] = {
                "log_loss": round(log_loss(m, cos, g, y, w), 4),
                "recall@0.5": round(float(y[kept].sum() / max(y.sum(), 1)), 3),
                "precision@0.5": round(float(y[kept].mean()) if kept.any() else 0.0, 3),
                "mean_p_relevant": round(float(p[y == 1].mean()), 3) if (y == 1).any() else None,
            }
        report[name] = row
    return report


def mixed_lists(judged: dict[str, Judged], models: dict[str, PlattModel]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per text query: (relevance of every pool item, relevant?) over photos, texts and clips."""
    out = []
    parts = ("text>image", "text>text", "text>audio")
    for i in range(len(judged["text>image"].scores)):
        ps, ys = [], []
        for name in parts:
            s = judged[name].scores[i]
            m = models[name]
            ps.append(m.probability(s, s - s.max()))
            ys.append(judged[name].labels[i])
        out.append((np.concatenate(ps), np.concatenate(ys)))
    return out


def f1(kept: np.ndarray, y: np.ndarray) -> float:
    tp = float((kept & y).sum())
    if tp == 0:
        return 1.0 if not kept.any() and not y.any() else 0.0
    return 2 * tp / (kept.sum() + y.sum())


def _at_least(t: float) -> Callable[[np.ndarray], np.ndarray]:
    def keep(p: np.ndarray) -> np.ndarray:
        return p >= t
    return keep


def choose_auto_floor(lists: list[tuple[np.ndarray, np.ndarray]]) -> tuple[float, dict[str, float]]:
    """The auto rule's least kept relevance that maximises the mean F1 of the kept sets over
    ``lists`` (queries with something relevant, as ``crossfind eval-mixed`` counts them), and
    the best single global threshold's F1 for comparison."""
    lists = [(p, y) for p, y in lists if y.any()]
    grid = np.round(np.arange(0.05, 0.96, 0.05), 2)

    def mean_f1(keep_fn: Callable[[np.ndarray], np.ndarray]) -> float:
        return float(np.mean([f1(keep_fn(p), y) for p, y in lists]))

    glob = {float(t): mean_f1(_at_least(float(t))) for t in grid}
    auto = {float(t): mean_f1(partial(auto_keep, floor=float(t))) for t in grid}
    best_auto = max(auto, key=auto.__getitem__)
    best_glob = max(glob, key=glob.__getitem__)
    return best_auto, {"auto_f1": round(auto[best_auto], 4), "auto_floor": best_auto,
                       "global_f1": round(glob[best_glob], 4), "global_threshold": best_glob}


def train_calibration(out: Path, data: Path, cache_dir: Path, model: str = "bundled",
                      seed: int = 0) -> dict[str, Any]:
    """Fit and write the shipped calibration; returns the report (held-out figures)."""
    encoder = create_encoder(model, cache_dir)
    pool = embed_pool(encoder, data, cache_dir, seed)
    judged = judge(pool, encoder, seed)
    report: dict[str, Any] = {"pairs": {n: {"queries": int(j.scores.shape[0]), "items": int(j.scores.shape[1]),
                                            "relevant_share": round(float(j.labels.mean()), 4)}
                                        for n, j in judged.items()}}
    report["held_out"] = held_out_report(judged)
    models = fit_models(judged)
    floor, auto = choose_auto_floor(mixed_lists(judged, models))
    report["auto"] = auto
    shipped = RelevanceWeights(
        encoder=encoder.id, fingerprints={m: encoder.weights_key(m) for m in ("text", "image", "audio")},
        models=models, auto_floor=floor,
        meta={"seed": seed, "photos": len(pool.photo_captions), "texts": len(pool.texts),
              "clips": len(pool.clip_labels), "commit": _commit()},
    )
    shipped.save(out)
    report["models"] = {n: m.__dict__ for n, m in models.items()}
    report["out"] = str(out)
    return report


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=False, cwd=Path(__file__).parent).stdout.strip()
    except OSError:
        return ""
