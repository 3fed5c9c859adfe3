"""Fusing the vectors of a multi-part query into one (early fusion)."""

from __future__ import annotations

import numpy as np

from search.encoders.base import l2_normalize
from search.errors import BadRequest


def weighted_average(vectors: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """f = sum(w_i x_i) / sum(w_i), renormalised.

    Negative weights subtract. When sum(w) <= 0 the division would flip or blow up the
    direction, so the signed sum is normalised directly (the division only scales it).
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    weights = np.asarray(weights, dtype=np.float32)
    if len(vectors) != len(weights) or len(vectors) == 0:
        raise BadRequest("need one weight per query part")
    if not np.any(weights > 0):
        raise BadRequest("a query needs at least one part with a positive weight")
    fused = (weights[:, None] * vectors).sum(axis=0)
    total = float(weights.sum())
    if total > 0:
        fused = fused / total
    out = l2_normalize(fused[None, :])[0]
    if not np.any(out):
        raise BadRequest("the query parts cancel each other out")
    return out
