"""Train the bundled encoder's image projection: EfficientNet-Lite0 features -> MiniLM space.

    crossfind train-image-projection --out search/encoders/weights/bundled_image_projection.npz

Recipe: a small MLP (or linear map) trained with symmetric InfoNCE against the MiniLM
embeddings of the captions (a random one of the five per photo each epoch) on the *train*
splits of flickr8k_1k and flickr8k_extra; early stopping, the hyper-parameter grid and the mix
weight with the label bridge are all chosen on the *dev* splits. coco_mini and the test splits
are never read. Backbone outputs and caption embeddings are cached under the cache directory,
so a rerun takes seconds; ``--seed`` makes it reproducible.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from search.checkpoints import ProjectionWeights
from search.encoders.base import l2_normalize
from search.encoders.bundled import TEXT_MODEL_KEY, BundledEncoder, project
from search.encoders.imagenet import LabelBridge, load_class_table
from search.media import open_image
from training.concepts import phrase_queries, precision_at
from training.config import ProjectionConfig
from training.evaluation import read_captions
from training.noun_phrases import caption_phrases, head_key

log = logging.getLogger("crossfind.training")

TRAIN = (("flickr8k_1k", "train"), ("flickr8k_extra", "train"))
DEV = (("flickr8k_1k", "dev"), ("flickr8k_extra", "dev"))
CACHE_VERSION = 2  # 2: no cached bridge vectors (they depend on the class hierarchy)


@dataclass
class Split:
    """One captioned split with everything training needs, per photo."""

    name: str
    logits: np.ndarray  # [n, 1000]
    features: np.ndarray  # [n, 1280]
    bridge: np.ndarray  # [n, 384] the label bridge's image vectors
    captions: np.ndarray  # [m, 384] caption embeddings
    owner: np.ndarray  # [m] photo index of each caption
    phrases: Phrases | None = None  # the captions' noun phrases (training splits)


@dataclass
class Phrases:
    """The noun phrases of a split's captions: one row per (photo, distinct phrase)."""

    vectors: np.ndarray  # [p, 384] phrase embeddings
    owner: np.ndarray  # [p] photo index
    key: np.ndarray  # [p] id of the phrase without its determiner (``head_key``), split-wide
    keys: list[str]  # id -> text


def load_split(encoder, data_root: Path, cache_dir: Path, dataset: str, split: str,
               sentence_weight: float, *, phrases: bool = False) -> Split:
    """Backbone outputs + caption embeddings of a split, from the cache or computed once;
    ``bridge`` holds ``encoder``'s label bridge vectors with this weight on its top-5
    sentence; ``phrases`` adds the captions' noun phrases (``load_phrases``)."""
    path = cache_dir / "training" / f"{dataset}_{split}_v{CACHE_VERSION}.npz"
    if not path.exists():
        data = read_captions(data_root / dataset / "captions_all.csv", split)
        logits, feats = [], []
        t0 = time.perf_counter()
        for start in range(0, len(data.images), 64):
            arrays = np.stack(
                [encoder.preprocess_image(open_image(p)) for p in data.images[start : start + 64]]
            )
            out = encoder.backbone(arrays)
            logits.append(out[0])
            feats.append(out[1])
        log.info("%s/%s: %d photos in %.0f s", dataset, split, len(data.images),
                 time.perf_counter() - t0)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
        np.savez(
            tmp,
            logits=np.concatenate(logits),
            features=np.concatenate(feats),
            captions=encoder.encode_text(data.captions),
            owner=np.asarray(data.caption_image),
        )
        os.replace(tmp, path)
    with np.load(path) as z:
        logits_a = z["logits"]
        split_data = Split(f"{dataset}/{split}", logits_a, z["features"],
                           bridge_vectors(encoder.bridge, logits_a, sentence_weight),
                           z["captions"], z["owner"])
    if phrases:
        split_data.phrases = load_phrases(encoder, data_root, cache_dir, dataset, split)
    return split_data


def bridge_vectors(bridge: LabelBridge, logits: np.ndarray, sentence_weight: float) -> np.ndarray:
    """The label bridge's image vectors with ``sentence_weight`` on its top-5 sentence."""
    mixed, sentences = bridge.parts(logits, with_sentence=bool(sentence_weight))
    return mixed if sentences is None else l2_normalize(mixed + sentence_weight * sentences)


PHRASE_VERSION = 1  # bump when training.noun_phrases changes what it extracts


def load_phrases(encoder, data_root: Path, cache_dir: Path, dataset: str, split: str) -> Phrases:
    """The noun phrases of a split's captions with their embeddings, cached like the split."""
    path = cache_dir / "training" / f"{dataset}_{split}_phrases_v{PHRASE_VERSION}.npz"
    if not path.exists():
        data = read_captions(data_root / dataset / "captions_all.csv", split)
        per_photo: list[set[str]] = [set() for _ in data.images]
        for owner, found in zip(data.caption_image, caption_phrases(data.captions)):
            per_photo[owner].update(found)
        rows = [(i, p) for i, found in enumerate(per_photo) for p in sorted(found)]
        texts = sorted({p for _, p in rows})
        text_id = {t: n for n, t in enumerate(texts)}
        keys = sorted({head_key(t) for t in texts})
        key_id = {k: n for n, k in enumerate(keys)}
        vectors = encoder.encode_text(texts)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
        np.savez(tmp, vectors=vectors[[text_id[p] for _, p in rows]],
                 owner=np.array([i for i, _ in rows], dtype=np.int64),
                 key=np.array([key_id[head_key(p)] for _, p in rows], dtype=np.int64),
                 keys=np.array(keys))
        os.replace(tmp, path)
    with np.load(path) as z:
        return Phrases(z["vectors"], z["owner"], z["key"], [str(k) for k in z["keys"]])


def t2i_recall(images: np.ndarray, captions: np.ndarray, owner: np.ndarray, k: int = 5) -> float:
    """Text->image recall@k: each caption against every photo of its split."""
    sims = captions @ images.T
    own = sims[np.arange(len(owner)), owner]
    ranks = 1 + (sims > own[:, None]).sum(axis=1)
    return float((ranks <= k).mean())


def train_head(train: list[Split], dev: list[Split], hidden: int, temperature: float,
               lr: float, weight_decay: float, dropout: float, epochs: int, seed: int,
               mean: np.ndarray, std: np.ndarray, phrase_share: float = 0.0,
               ) -> tuple[list[tuple[np.ndarray, np.ndarray]], float, int]:
    """InfoNCE training with early stopping on dev R@5 (projection alone). With
    ``phrase_share`` > 0, that share of photos is paired each epoch with one of its captions'
    noun phrases instead of a caption; every photo in the batch whose captions have the same
    phrase (determiner aside) counts as a positive for it ("a dog" fits every dog photo).
    Returns (layers as numpy (w, b), best dev score, best epoch)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    feats = np.concatenate([s.features for s in train])
    x = torch.from_numpy((feats - mean) / std).float()
    # captions sorted by photo; photo i owns rows starts[i] : starts[i] + counts[i]
    caps, owners, base = [], [], 0
    for s in train:
        order = np.argsort(s.owner, kind="stable")
        caps.append(s.captions[order])
        owners.append(s.owner[order] + base)
        base += len(s.features)
    y = torch.from_numpy(np.concatenate(caps)).float()
    counts = np.bincount(np.concatenate(owners), minlength=len(x))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    phrases = _phrase_table(train, len(x)) if phrase_share > 0 else None
    dims = [x.shape[1]] + ([hidden] if hidden else []) + [y.shape[1]]
    layers: list[torch.nn.Module] = [torch.nn.Dropout(dropout)]
    for i in range(len(dims) - 1):
        layers.append(torch.nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            layers += [torch.nn.ReLU(), torch.nn.Dropout(dropout)]
    model = torch.nn.Sequential(*layers)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    best, best_epoch, best_state = -1.0, 0, None
    batch = 256
    for epoch in range(epochs):
        model.train()
        perm = torch.from_numpy(rng.permutation(len(x)))
        # a random one of each photo's captions this epoch
        pick = torch.from_numpy(starts + (rng.random(len(x)) * counts).astype(np.int64))
        texts, phrase_key = y[pick], None
        if phrases is not None:
            texts, phrase_key = phrases.draw(texts, phrase_share, rng)
        for start in range(0, len(x), batch):
            idx = perm[start : start + batch]
            img = torch.nn.functional.normalize(model(x[idx]), dim=1)
            logits = img @ texts[idx].T / temperature
            if phrase_key is None:
                target = torch.arange(len(idx))
                loss = (torch.nn.functional.cross_entropy(logits, target)
                        + torch.nn.functional.cross_entropy(logits.T, target)) / 2
            else:
                pos = phrases.positives(idx, phrase_key[idx])  # type: ignore[union-attr]
                loss = (_soft_ce(logits, pos) + _soft_ce(logits.T, pos.T)) / 2
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        score = float(np.mean([t2i_recall(_project(model, s.features, mean, std), s.captions, s.owner)
                               for s in dev]))
        if score > best:
            best, best_epoch = score, epoch + 1
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
    if best_state is not None:
        model.load_state_dict(best_state)
    linears = [m for m in model if isinstance(m, torch.nn.Linear)]
    out = [(m.weight.detach().numpy().T.copy(), m.bias.detach().numpy().copy()) for m in linears]
    return out, float(best), best_epoch


class _PhraseTable:
    """Every training photo's noun phrases, for drawing texts and finding shared phrases."""

    def __init__(self, vectors: np.ndarray, owner: np.ndarray, key: np.ndarray, n_photos: int,
                 n_keys: int) -> None:
        order = np.argsort(owner, kind="stable")
        self.vectors = torch.from_numpy(vectors[order]).float()
        self.key = torch.from_numpy(key[order]).long()
        self.counts = np.bincount(owner, minlength=n_photos)
        self.starts = np.concatenate([[0], np.cumsum(self.counts)[:-1]])
        self.has = torch.zeros((n_photos, n_keys), dtype=torch.bool)  # photo -> its phrase keys
        self.has[torch.from_numpy(owner).long(), torch.from_numpy(key).long()] = True

    def draw(self, captions: torch.Tensor, share: float, rng: np.random.Generator
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """Replace ``share`` of the photos' caption texts by one of their phrases; the key of
        the phrase drawn per photo (-1 where the caption stays)."""
        n = len(captions)
        use = (rng.random(n) < share) & (self.counts > 0)
        rows = self.starts + (rng.random(n) * np.maximum(self.counts, 1)).astype(np.int64)
        texts = captions.clone()
        key = torch.full((n,), -1, dtype=torch.long)
        sel = torch.from_numpy(np.flatnonzero(use))
        texts[sel] = self.vectors[torch.from_numpy(rows[use])]
        key[sel] = self.key[torch.from_numpy(rows[use])]
        return texts, key

    def positives(self, photos: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        """[images, texts] bool: the photo's own text, and every photo with a drawn phrase."""
        pos = torch.eye(len(photos), dtype=torch.bool)
        phrase = key >= 0
        if phrase.any():
            pos[:, phrase] |= self.has[photos][:, key[phrase]]
        return pos


def _phrase_table(train: list[Split], n_photos: int) -> _PhraseTable:
    """One table over the training splits (photo indices offset as in ``train_head``; phrase
    keys unified by text)."""
    ids: dict[str, int] = {}
    vectors, owners, keys, base = [], [], [], 0
    for s in train:
        if s.phrases is None:
            raise ValueError(f"{s.name} has no noun phrases to train on")
        remap = np.array([ids.setdefault(k, len(ids)) for k in s.phrases.keys], dtype=np.int64)
        vectors.append(s.phrases.vectors)
        owners.append(s.phrases.owner + base)
        keys.append(remap[s.phrases.key])
        base += len(s.features)
    return _PhraseTable(np.concatenate(vectors), np.concatenate(owners), np.concatenate(keys),
                        n_photos, len(ids))


def _soft_ce(logits: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against the uniform distribution over each row's positives."""
    target = pos.float() / pos.sum(dim=1, keepdim=True)
    return -(target * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()


def _project(model, features: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        out = model(torch.from_numpy((features - mean) / std).float()).numpy()
    return l2_normalize(out)


def recall_summary(images: np.ndarray, s: Split) -> float:
    """Mean of t2i R@1, R@5 and R@10: smoother than R@5 alone on a small dev split."""
    return float(np.mean([t2i_recall(images, s.captions, s.owner, k) for k in (1, 5, 10)]))


def train_projection(cfg: ProjectionConfig) -> dict[str, Any]:
    """Train every grid point of ``cfg``, write the best on dev to ``cfg.out``; returns its
    hyper-parameters and dev scores.

    Per trained head and hierarchy weight, alpha is the largest bridge share whose caption
    recall on flickr8k_1k dev is within tolerance of the best (``allowed_alphas``: dev photos
    are Flickr photos like the training ones, so dev cannot show the bridge's main merit -- it
    is training-free and generalises to other collections -- and where dev cannot tell, the
    rule prefers it). The hierarchy weight is the one with the best ``dev_score``: caption
    recall and concept precision (``training.concepts.phrase_queries``: concepts from the dev
    captions' own noun phrases) in equal parts, over both dev splits."""
    torch.set_num_threads(cfg.threads)
    cache_dir = cfg.cache_dir
    encoder = BundledEncoder("bridge", cache_dir)
    with_phrases = any(share > 0 for share in cfg.phrase_share)
    train = [load_split(encoder, cfg.data, cache_dir, d, s, cfg.sentence_weight,
                        phrases=with_phrases) for d, s in TRAIN]
    dev = [load_split(encoder, cfg.data, cache_dir, d, s, cfg.sentence_weight) for d, s in DEV]
    concepts = [dev_concepts(encoder, cfg.data, d, s) for d, s in DEV]
    bridged = {w: [bridge_vectors(hierarchy_bridge(encoder, cache_dir, w), s.logits,
                                  cfg.sentence_weight) for s in dev]
               for w in cfg.hierarchy_weight}
    feats = np.concatenate([s.features for s in train])
    mean, std = feats.mean(0), feats.std(0) + 1e-3
    for w, vectors in bridged.items():
        log.info("bridge alone, hierarchy weight %g: dev %s", w,
                 [dev_score(v, s, c) for v, s, c in zip(vectors, dev, concepts)])

    best: dict | None = None
    grid = itertools.product(cfg.hidden, cfg.temperature, cfg.lr, cfg.dropout, cfg.phrase_share)
    for hidden, temp, lr, dropout, share in grid:
        t0 = time.perf_counter()
        layers, proj_score, epoch = train_head(train, dev, hidden, temp, lr, cfg.weight_decay,
                                               dropout, cfg.epochs, cfg.seed, mean, std,
                                               phrase_share=share)
        projected = [project(layers, s.features, mean, std) for s in dev]
        choices = []
        for w, vectors in bridged.items():
            # alphas from the native-resolution dev photos: flickr8k_extra's are 144 px
            # squashed copies, on which the ImageNet classifier (the bridge) is handicapped
            alpha = max(allowed_alphas(vectors[0], projected[0], dev[0]))
            each = [dev_score(_mix(b, p, alpha), s, c)
                    for b, p, s, c in zip(vectors, projected, dev, concepts)]
            choices.append((float(np.mean([np.mean(e) for e in each])), alpha, w, each))
        score, alpha, weight, each = max(choices, key=lambda c: c[0])
        point = {"hidden": hidden, "temperature": temp, "lr": lr, "dropout": dropout,
                 "phrase_share": share, "epoch": epoch, "dev_r5_projection": round(proj_score, 4),
                 "alpha": alpha, "hierarchy_weight": weight, "dev_score": round(score, 4),
                 "dev_r5_each": [round(e[0], 4) for e in each],
                 "dev_concept_p5_each": [round(e[1], 4) for e in each]}
        log.info("%s (%.0f s)", point, time.perf_counter() - t0)
        if best is None or score > best["cfg"]["dev_score"]:
            best = {"cfg": point, "layers": layers}
    assert best is not None
    meta = {**best["cfg"], "seed": cfg.seed, "train": [f"{d}/{s}" for d, s in TRAIN],
            "dev": [f"{d}/{s}" for d, s in DEV], "weight_decay": cfg.weight_decay}
    ProjectionWeights(tuple(best["layers"]), mean, std, best["cfg"]["alpha"], cfg.sentence_weight,
                      best["cfg"]["hierarchy_weight"], meta).save(cfg.out)
    log.info("wrote %s (%d bytes): %s", cfg.out, cfg.out.stat().st_size, best["cfg"])
    return dict(best["cfg"])


def hierarchy_bridge(encoder: BundledEncoder, cache_dir: Path, weight: float) -> LabelBridge:
    """``encoder``'s label bridge with the class table pulled ``weight`` towards parents."""
    names, vectors = load_class_table(cache_dir, TEXT_MODEL_KEY, encoder.encode_text, weight)
    return LabelBridge(names, vectors, encoder.encode_text)


def dev_concepts(encoder: BundledEncoder, data_root: Path, dataset: str, split: str
                 ) -> tuple[np.ndarray, list[np.ndarray]]:
    """A dev split's concept queries from its own captions: (query vectors, relevance)."""
    rel = phrase_queries(read_captions(data_root / dataset / "captions_all.csv", split))
    return encoder.encode_text(list(rel)), list(rel.values())


def dev_score(images: np.ndarray, s: Split, concepts: tuple[np.ndarray, list[np.ndarray]]
              ) -> tuple[float, float]:
    """(caption t2i R@5, concept P@5) of image vectors on a dev split."""
    return (t2i_recall(images, s.captions, s.owner),
            float(precision_at(images, concepts[0], concepts[1]).mean()))


def allowed_alphas(bridge: np.ndarray, projected: np.ndarray, dev: Split,
                   tolerance: float = 0.01) -> list[float]:
    """The bridge shares whose caption recall (``recall_summary``) on ``dev`` is within
    ``tolerance`` of the best share's."""
    scores = {float(a): recall_summary(_mix(bridge, projected, float(a)), dev)
              for a in np.round(np.arange(0.0, 0.85, 0.05), 2)}
    top = max(scores.values())
    return [a for a, v in scores.items() if v >= top - tolerance]


def _mix(bridge: np.ndarray, projected: np.ndarray, alpha: float) -> np.ndarray:
    return l2_normalize(alpha * bridge + (1 - alpha) * projected)
