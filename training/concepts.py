"""Concept queries on photos: short phrases ("a pet dog", "a helmet", "food") judged by the
photos' captions, scored by precision@5.

Two query sets:

* the written set (``data/concept_queries.csv``: query, caption regex; a photo is relevant
  when any of its captions matches), used to *report*;
* a set derived from a split's own captions (``phrase_queries``: "a {phrase}" for every noun
  phrase that several photos' captions share), used to *choose* settings on dev without
  reading the written set.

Photos are ranked by exact cosine against the encoder's image vectors (what a flat index
returns); queries run only where at least ``min_relevant`` photos are relevant (P@5 is
bounded by the count below that).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from search.encoders.base import Encoder
from search.errors import BadRequest
from search.media import open_image
from training.evaluation import CaptionSet, read_captions
from training.noun_phrases import caption_phrases, head_key

DEFAULT_K = 5
MIN_RELEVANT = 5


@dataclass(frozen=True)
class ConceptQuery:
    text: str
    pattern: re.Pattern[str]


def default_queries_path() -> Path:
    return Path(str(resources.files("training") / "data" / "concept_queries.csv"))


def load_queries(path: Path | None = None) -> list[ConceptQuery]:
    """The query file: CSV with columns query, pattern (a regex over lower-case captions)."""
    path = Path(path) if path is not None else default_queries_path()
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise BadRequest(f"cannot read {path}: {exc.strerror}") from None
    if not rows or not {"query", "pattern"} <= set(rows[0]):
        raise BadRequest(f"{path} needs columns query,pattern and at least one row")
    out = []
    for n, row in enumerate(rows, 2):
        try:
            out.append(ConceptQuery(row["query"].strip(), re.compile(row["pattern"])))
        except re.error as exc:
            raise BadRequest(f"{path} line {n}: bad pattern {row['pattern']!r} ({exc})") from None
    return out


def photo_texts(data: CaptionSet) -> list[str]:
    """All captions of each photo, lower-case, joined."""
    texts = [""] * len(data.images)
    for caption, owner in zip(data.captions, data.caption_image):
        texts[owner] += " | " + caption.lower()
    return texts


def judge(data: CaptionSet, queries: list[ConceptQuery],
          min_relevant: int = MIN_RELEVANT) -> dict[str, np.ndarray]:
    """query -> bool[photos] relevance, for the queries with at least ``min_relevant``."""
    texts = photo_texts(data)
    rel = {q.text: np.array([bool(q.pattern.search(t)) for t in texts]) for q in queries}
    return {q: r for q, r in rel.items() if r.sum() >= min_relevant}


def phrase_queries(data: CaptionSet, min_relevant: int = MIN_RELEVANT,
                   max_share: float = 0.2) -> dict[str, np.ndarray]:
    """Concept queries from the split's own noun phrases: "a {phrase}" (determiner dropped)
    for each phrase found in the captions of ``min_relevant`` or more photos, but of at most
    ``max_share`` of them ("a man" in every other photo ranks nothing); relevant: those photos."""
    owners: dict[str, set[int]] = {}
    for owner, found in zip(data.caption_image, caption_phrases(data.captions)):
        for phrase in found:
            key = head_key(phrase)
            if len(key.split()) <= 3:
                owners.setdefault(key, set()).add(owner)
    n = len(data.images)
    out = {}
    for key, photos in sorted(owners.items()):
        if min_relevant <= len(photos) <= max_share * n:
            rel = np.zeros(n, dtype=bool)
            rel[list(photos)] = True
            out[f"a {key}"] = rel
    return out


def precision_at(images: np.ndarray, queries: np.ndarray, relevance: list[np.ndarray],
                 k: int = DEFAULT_K) -> np.ndarray:
    """Per query, the share of relevant photos among the ``k`` most similar."""
    top = np.argsort(-(queries @ images.T), axis=1, kind="stable")[:, :k]
    return np.array([rel[row].mean() for rel, row in zip(relevance, top)])


def embed_images(encoder: Encoder, images: list[Path], batch_size: int = 32,
                 progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    out = []
    for start in range(0, len(images), batch_size):
        arrays = np.stack([encoder.preprocess_image(open_image(p))
                           for p in images[start : start + batch_size]])
        out.append(encoder.encode_image_arrays(arrays))
        if progress:
            progress(start + len(arrays), len(images))
    return np.concatenate(out) if out else np.zeros((0, encoder.dim), dtype=np.float32)


def evaluate_concepts(csv_path: Path, split: str | None, encoder: Encoder, *,
                      queries_path: Path | None = None, k: int = DEFAULT_K,
                      min_relevant: int = MIN_RELEVANT, batch_size: int = 32,
                      progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Mean and per-query P@k of the written concept queries on a captioned split."""
    data = read_captions(csv_path, split)
    rel = judge(data, load_queries(queries_path), min_relevant)
    if not rel:
        raise BadRequest(f"no concept query has {min_relevant} relevant photos in {csv_path}")
    images = embed_images(encoder, data.images, batch_size, progress)
    texts = list(rel)
    per = precision_at(images, encoder.encode_text(texts), [rel[q] for q in texts], k)
    return {
        f"P@{k}": round(float(per.mean()), 4),
        "n_queries": len(texts),
        "n_images": len(data.images),
        "per_query": {q: {f"P@{k}": round(float(p), 4), "relevant": int(rel[q].sum())}
                      for q, p in zip(texts, per)},
    }
