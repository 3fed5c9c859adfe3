"""Attention fusion: per-query part weights computed from the parts themselves.

Each positive part gets a logit from features of the query alone: how strongly it agrees with
the other parts, and how peaked its own neighbour scores over the corpus are (a part whose best
match stands out is specific; a flat one is vague). The weights are
``softmax(log w_i + g(features_i))`` over the positive parts, scaled back to the user's positive
weight total, so the user's weights act as priors. Negative parts keep their weights.

``g`` is either a fixed formula (``HeuristicAttention``) or a tiny MLP trained on composed
queries from flickr8k_1k train (``LearnedAttention``, weights in
``search/encoders/weights/attention_fusion.npz``; see ``training.attention``).
With one positive part the softmax is 1, so the result equals plain weighted averaging.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from search.checkpoints import AttentionWeights
from search.encoders.base import l2_normalize
from search.errors import ModelUnavailable

KINDS = ("text", "image", "audio", "item")
# neighbours per part used for the peakedness features
NEIGHBOURS = 32
FEATURES = ("peak", "gap", "top1", "agree", "to_mean", "text", "image", "audio", "item", "n_pos")
WEIGHTS_FILE = "attention_fusion.npz"


def part_features(
    vectors: np.ndarray, weights: np.ndarray, kinds: list[str], neighbour_scores: np.ndarray
) -> np.ndarray:
    """float32[n_parts, len(FEATURES)].

    Args:
        vectors: the parts' L2-normalised vectors.
        weights: their weights (only positive parts count as "others" for agreement).
        kinds: text, image, audio or item per part.
        neighbour_scores: float32[n_parts, K], each part's top-K corpus scores, best first
            (for an item part, without the item itself: see ``neighbour_scores``).
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    s = np.asarray(neighbour_scores, dtype=np.float32)
    pos = np.asarray(weights) > 0
    n = len(vectors)
    out = np.zeros((n, len(FEATURES)), dtype=np.float32)
    out[:, 0] = (s[:, 0] - s.mean(axis=1)) / (s.std(axis=1) + 1e-3)
    out[:, 1] = s[:, 0] - s[:, -1]
    out[:, 2] = s[:, 0]
    sims = vectors @ vectors.T
    mean_pos = l2_normalize(vectors[pos].sum(axis=0))[0]
    for i in range(n):
        others = pos.copy()
        others[i] = False
        out[i, 3] = sims[i, others].mean() if others.any() else 0.0
    out[:, 4] = vectors @ mean_pos
    for i, kind in enumerate(kinds):
        out[i, 5 + KINDS.index(kind)] = 1.0
    out[:, 9] = pos.sum() / 4.0
    return out


def neighbour_scores(scores: np.ndarray, kinds: list[str]) -> np.ndarray:
    """Top-(K+1) search scores -> top-K per part; an indexed item's own match (always ~1) is
    dropped, so its peakedness says how distinct it is, not that it is in the index."""
    scores = np.asarray(scores, dtype=np.float32)
    return np.stack([row[1:] if kind == "item" else row[:-1] for row, kind in zip(scores, kinds)])


def attention_weights(weights: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """The user's weights re-weighted by per-part logits (positive parts only)."""
    weights = np.asarray(weights, dtype=np.float64)
    pos = weights > 0
    out = weights.copy()
    z = np.log(weights[pos]) + np.asarray(logits, dtype=np.float64)[pos]
    z = np.exp(z - z.max())
    out[pos] = z / z.sum() * weights[pos].sum()
    return out.astype(np.float32)


class HeuristicAttention:
    """g = agree_scale * agreement + peak_scale * peakedness.

    The defaults favour the *more distinctive* part (the one that agrees less with the others)
    and the one whose neighbours are more peaked (how they were chosen, and what they score:
    ``MODEL_CARD_bundled.md``, "Attention fusion").
    """

    name = "attention"

    def __init__(self, agree_scale: float = -2.0, peak_scale: float = 1.0) -> None:
        self.agree_scale = agree_scale
        self.peak_scale = peak_scale

    def logits(self, features: np.ndarray) -> np.ndarray:
        return self.agree_scale * features[:, 3] + self.peak_scale * features[:, 0]


class LearnedAttention:
    """A one-hidden-layer MLP on standardised features -> one logit per part (numpy)."""

    name = "attention_learned"

    def __init__(self, weights: AttentionWeights) -> None:
        self.weights = weights
        self.mean, self.std = weights.mean, weights.std
        self.w1, self.b1, self.w2 = weights.w1, weights.b1, weights.w2

    @classmethod
    def load(cls, path: Path | None = None) -> LearnedAttention:
        path = Path(path) if path is not None else _default_weights_path()
        try:
            return cls(AttentionWeights.load(path))
        except (OSError, KeyError, ValueError) as exc:
            raise ModelUnavailable(
                f"learned attention weights {path} are missing or corrupt ({exc}); use "
                "fusion 'attention' (no learned weights) or reinstall crossfind"
            ) from None

    def logits(self, features: np.ndarray) -> np.ndarray:
        h = np.tanh(((features - self.mean) / self.std) @ self.w1 + self.b1)
        return h @ self.w2


def _default_weights_path() -> Path:
    return Path(str(resources.files("search.encoders") / "weights" / WEIGHTS_FILE))


@lru_cache(maxsize=1)
def default_learned() -> LearnedAttention:
    return LearnedAttention.load()


def attention_model(name: str) -> HeuristicAttention | LearnedAttention:
    """The attention model of a fusion name: ``attention`` or ``attention_learned``."""
    return default_learned() if name == "attention_learned" else HeuristicAttention()
