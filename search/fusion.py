"""Fusing a multi-part query.

Early fusion turns the part vectors into one query vector (``weighted_average``; the attention
strategies only choose the weights, see ``search.attention``). Late fusion searches each part
and fuses the candidates' per-part scores (``late_fuse``: reciprocal rank fusion or a sum of
normalised scores). Negative weights push results away in every strategy.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from search.encoders.base import l2_normalize
from search.errors import BadRequest

# the usual RRF constant (Cormack et al. 2009): damps the head of each list
RRF_K = 60

LateFusion = Literal["rrf", "score_sum"]


def check_weights(weights: np.ndarray, n: int) -> np.ndarray:
    weights = np.asarray(weights, dtype=np.float32)
    if len(weights) != n or n == 0:
        raise BadRequest("need one weight per query part")
    if not np.any(weights > 0):
        raise BadRequest("a query needs at least one part with a positive weight")
    return weights


def weighted_average(vectors: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """f = sum(w_i x_i) / sum(w_i), renormalised.

    Negative weights subtract. When sum(w) <= 0 the division would flip or blow up the
    direction, so the signed sum is normalised directly (the division only scales it).
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    weights = check_weights(weights, len(vectors))
    fused = (weights[:, None] * vectors).sum(axis=0)
    total = float(weights.sum())
    if total > 0:
        fused = fused / total
    out = l2_normalize(fused[None, :])[0]
    if not np.any(out):
        raise BadRequest("the query parts cancel each other out")
    return out


def _ranks(scores: np.ndarray) -> np.ndarray:
    """1-based rank of every column of each row, best (highest) first; ties by position."""
    order = np.argsort(-scores, axis=1, kind="stable")
    ranks = np.empty_like(order)
    rows = np.arange(scores.shape[0])[:, None]
    ranks[rows, order] = np.arange(1, scores.shape[1] + 1)[None, :]
    return ranks


def late_fuse(part_scores: np.ndarray, weights: np.ndarray, method: LateFusion) -> np.ndarray:
    """Fuse per-part scores of the same candidates into one ranking score per candidate.

    Args:
        part_scores: float32[n_parts, n_candidates], cosine of each candidate to each part.
        weights: the parts' weights; a negative part demotes the candidates nearest to it.
        method: ``rrf`` sums w / (60 + rank) over parts (rank by that part's score, so a
            negative part's penalty is largest for the candidate most like it); ``score_sum``
            sums w * z, with z the part's scores standardised over the candidates.

    Returns:
        float32[n_candidates], higher is better, scaled by the positive weight total.
    """
    part_scores = np.asarray(part_scores, dtype=np.float32)
    weights = check_weights(weights, len(part_scores))
    if part_scores.shape[1] == 0:
        return np.zeros(0, dtype=np.float32)
    if method == "rrf":
        contrib = 1.0 / (RRF_K + _ranks(part_scores))
    elif method == "score_sum":
        mean = part_scores.mean(axis=1, keepdims=True)
        std = part_scores.std(axis=1, keepdims=True)
        # a part that scores every candidate alike cannot rank them: it contributes nothing
        contrib = np.divide(part_scores - mean, std, out=np.zeros_like(part_scores), where=std > 1e-6)
    else:
        raise BadRequest(f"unknown late fusion {method!r}; use rrf or score_sum")
    fused = (weights[:, None] * contrib).sum(axis=0) / float(weights[weights > 0].sum())
    return fused.astype(np.float32)
