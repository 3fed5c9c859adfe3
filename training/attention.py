"""Fit the attention fusion on composed queries: flickr8k train, tuned on dev.

    crossfind train-attention --out search/encoders/weights/attention_fusion.npz

The learned module (``search.attention.LearnedAttention``) starts at zero output, which is
exactly the weighted average, and is trained full-batch with InfoNCE over the training photos;
the epoch kept is the one with the best dev recall (epoch 0 included, so it can never ship
worse than weighted averaging on dev). The heuristic's two constants are chosen on dev by a
grid. coco_mini and the test splits are never read here.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from search.attention import (
    FEATURES,
    NEIGHBOURS,
    HeuristicAttention,
    LearnedAttention,
    attention_weights,
    neighbour_scores,
    part_features,
)
from search.checkpoints import AttentionWeights
from search.encoders import create_encoder
from search.encoders.base import l2_normalize
from training.composed_eval import ComposedQuery, Corpus, build_queries, load_corpus, part_vectors
from training.config import AttentionConfig

log = logging.getLogger("crossfind.training")
TRAIN = (("flickr8k_1k", "train"), ("flickr8k_extra", "train"))
DEV = (("flickr8k_1k", "dev"),)
HIDDEN = 8


@dataclass
class Prepared:
    """Composed queries as arrays over one corpus (all queries have the same part count)."""

    images: np.ndarray  # [n, dim]
    vectors: np.ndarray  # [q, p, dim]
    weights: np.ndarray  # [q, p]
    features: np.ndarray  # [q, p, f]
    targets: np.ndarray  # [q]
    own: np.ndarray  # [q] the query's own photo (left out of its ranking), -1 if none


def prepare(corpus: Corpus, encoder, queries: list[ComposedQuery]) -> Prepared:
    words: dict[str, np.ndarray] = {}
    vecs = np.stack([part_vectors(corpus, encoder, q, words) for q in queries])
    ws = np.array([[p[2] for p in q.parts] for q in queries], dtype=np.float32)
    feats = np.zeros(vecs.shape[:2] + (len(FEATURES),), dtype=np.float32)
    for start in range(0, len(queries), 512):  # top-K neighbours in chunks (memory)
        scores = vecs[start : start + 512] @ corpus.images.T
        top = -np.sort(-np.partition(scores, -(NEIGHBOURS + 1), axis=-1)[..., -(NEIGHBOURS + 1) :], axis=-1)
        for i, q in enumerate(queries[start : start + 512]):
            kinds = ["item" if p[0] == "photo" else "text" for p in q.parts]
            feats[start + i] = part_features(vecs[start + i], ws[start + i], kinds,
                                             neighbour_scores(top[i], kinds))
    own = [next((int(r) for src, r, _ in q.parts if src == "photo"), -1) for q in queries]
    return Prepared(corpus.images, vecs, ws, feats, np.array([q.target for q in queries]),
                    np.array(own))


def merge(parts: list[Prepared]) -> Prepared:
    """One pool: the photos of every corpus, targets shifted accordingly."""
    offsets = np.cumsum([0] + [len(p.images) for p in parts[:-1]])
    return Prepared(
        np.concatenate([p.images for p in parts]),
        np.concatenate([p.vectors for p in parts]),
        np.concatenate([p.weights for p in parts]),
        np.concatenate([p.features for p in parts]),
        np.concatenate([p.targets + o for p, o in zip(parts, offsets)]),
        np.concatenate([np.where(p.own >= 0, p.own + o, -1) for p, o in zip(parts, offsets)]),
    )


def mean_recall(data: Prepared, model: HeuristicAttention | LearnedAttention | None) -> float:
    """Mean of R@1, R@5, R@10 with the model's weights (None: plain weighted average)."""
    fused = []
    for v, w, f in zip(data.vectors, data.weights, data.features):
        if model is not None and (w > 0).sum() > 1:
            w = attention_weights(w, model.logits(f))
        fused.append((w[:, None] * v).sum(0))
    scores = l2_normalize(np.stack(fused)) @ data.images.T
    rows = np.nonzero(data.own >= 0)[0]
    scores[rows, data.own[rows]] = -np.inf
    target = scores[np.arange(len(scores)), data.targets]
    ranks = (scores > target[:, None]).sum(1) + 1
    return float(np.mean([(ranks <= k).mean() for k in (1, 5, 10)]))


def tune_heuristic(dev: Prepared, margin: float = 0.005) -> tuple[HeuristicAttention, float]:
    """The grid point with the best dev recall; (0, 0), i.e. weighted averaging, unless some
    point beats it by more than ``margin`` (smaller gains are noise on ~200 dev queries)."""
    best, best_r = HeuristicAttention(0.0, 0.0), mean_recall(dev, HeuristicAttention(0.0, 0.0)) + margin
    for a, b in itertools.product((-2.0, -1.0, 0.0, 1.0, 2.0, 4.0), (-0.5, -0.25, 0.0, 0.1, 0.25, 0.5, 1.0)):
        r = mean_recall(dev, HeuristicAttention(a, b))
        if r > best_r + 1e-9:
            best, best_r = HeuristicAttention(a, b), r
    return best, mean_recall(dev, best)


def train_learned(train: Prepared, dev: Prepared, epochs: int = 100, lr: float = 0.02,
                  temperature: float = 0.05, seed: int = 0) -> tuple[LearnedAttention, float]:
    torch.manual_seed(seed)
    nf = train.features.shape[-1]
    flat = train.features.reshape(-1, nf)
    mean, std = flat.mean(0), flat.std(0) + 1e-3
    feats = torch.tensor((train.features - mean) / std)
    vecs, w = torch.tensor(train.vectors), torch.tensor(train.weights)
    images, targets = torch.tensor(train.images), torch.tensor(train.targets)
    own_rows = torch.tensor(np.nonzero(train.own >= 0)[0])
    own_cols = torch.tensor(train.own[train.own >= 0])
    w1 = torch.nn.Parameter(torch.randn(nf, HIDDEN) * 0.3)
    b1 = torch.nn.Parameter(torch.zeros(HIDDEN))
    w2 = torch.nn.Parameter(torch.zeros(HIDDEN))  # zero output: starts as weighted average
    opt = torch.optim.Adam([w1, b1, w2], lr=lr, weight_decay=1e-4)
    pos = w > 0
    log_w = torch.log(torch.where(pos, w, torch.ones_like(w)))

    def snapshot() -> LearnedAttention:
        return LearnedAttention(AttentionWeights(mean, std, w1.detach().numpy().copy(),
                                                 b1.detach().numpy().copy(), w2.detach().numpy().copy()))

    best, best_r = snapshot(), mean_recall(dev, snapshot())
    for epoch in range(1, epochs + 1):
        logits = torch.tanh(feats @ w1 + b1) @ w2
        z = torch.where(pos, log_w + logits, torch.full_like(logits, -1e9))
        alpha = torch.softmax(z, dim=1) * (w * pos).sum(1, keepdim=True)
        fused = torch.nn.functional.normalize((torch.where(pos, alpha, w)[..., None] * vecs).sum(1), dim=1)
        logits_all = fused @ images.T / temperature
        logits_all = logits_all.index_put((own_rows, own_cols), torch.tensor(-1e9))
        loss = torch.nn.functional.cross_entropy(logits_all, targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if epoch % 10 == 0:
            r = mean_recall(dev, snapshot())
            log.info("epoch %d loss %.4f dev %.4f", epoch, loss.item(), r)
            if r > best_r + 1e-9:
                best, best_r = snapshot(), r
    return best, best_r


def train_attention(cfg: AttentionConfig) -> dict[str, Any]:
    """Tune the heuristic and train the learned attention on flickr8k train (dev picks), write
    the learned model to ``cfg.out``; returns the dev recalls."""
    torch.set_num_threads(cfg.threads)
    cache = cfg.cache_dir
    encoder = create_encoder("bundled", cache)
    train_parts = []
    for dataset, split in TRAIN if cfg.extra else TRAIN[:1]:
        corpus = load_corpus(encoder, cfg.data, cache, dataset, split)
        for seed in range(cfg.seeds):
            queries = [q for q in build_queries(corpus, seed) if q.kind != "negative"]
            train_parts.append(prepare(corpus, encoder, queries))
    train = merge(train_parts)
    dev_corpus = load_corpus(encoder, cfg.data, cache, *DEV[0])
    dev = prepare(dev_corpus, encoder, [q for q in build_queries(dev_corpus, 0) if q.kind != "negative"])
    weighted = mean_recall(dev, None)
    heuristic, h_r = tune_heuristic(dev)
    learned, l_r = train_learned(train, dev, cfg.epochs)
    replace(learned.weights, encoder=encoder.id).save(cfg.out)
    return {
        "train_queries": len(train.targets), "dev_queries": len(dev.targets),
        "dev_weighted": round(weighted, 4), "dev_heuristic": round(h_r, 4),
        "heuristic": {"agree_scale": heuristic.agree_scale, "peak_scale": heuristic.peak_scale},
        "dev_learned": round(l_r, 4),
    }
