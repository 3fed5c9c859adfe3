"""The ImageNet label bridge (ConSE, Norouzi et al. 2014): an image's class probabilities become
a vector in the text space by mixing the text embeddings of its most probable class names.

Class-name embeddings depend only on the text model and the prompt templates, so they are
computed once and cached on disk, keyed by both.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from search.encoders.base import l2_normalize
from search.encoders.imagenet_hierarchy import HIERARCHY_VERSION, class_parents

log = logging.getLogger(__name__)

# Bump when TEMPLATES or the class-name source change: it keys the on-disk cache.
TEMPLATE_VERSION = 1
TEMPLATES = (
    "a photo of a {}.",
    "a picture of a {}.",
    "a photo of the {}.",
    "a close-up photo of a {}.",
    "an image showing a {}.",
)

TextEncodeFn = Callable[[Sequence[str]], np.ndarray]


def load_class_table(
    cache_dir: Path, text_model_key: str, encode: TextEncodeFn, hierarchy_weight: float = 0.0
) -> tuple[list[str], np.ndarray]:
    """ImageNet class names and their prompt-averaged, L2-normalised text embeddings [1000, d],
    each moved ``hierarchy_weight`` towards its parents' (``class_embeddings``).

    Read from ``cache_dir`` when present; otherwise computed with ``encode`` and written there
    atomically (a corrupt or foreign cache file is recomputed, never trusted).
    """
    name = f"imagenet_classes_{text_model_key}_t{TEMPLATE_VERSION}"
    if hierarchy_weight:
        name += f"_h{HIERARCHY_VERSION}w{hierarchy_weight:g}"
    path = Path(cache_dir) / f"{name}.npz"
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as data:
                names = [str(n) for n in data["names"]]
                vectors = data["vectors"].astype(np.float32)
            if len(names) == 1000 and vectors.shape[0] == 1000:
                return names, vectors
            log.warning("class-embedding cache %s has the wrong shape; recomputing", path)
        except (OSError, ValueError, KeyError) as exc:
            log.warning("class-embedding cache %s unreadable (%s); recomputing", path, exc)
    names = imagenet_class_names()
    vectors = class_embeddings(names, encode, hierarchy_weight)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, names=np.array(names), vectors=vectors)
    os.replace(tmp, path)
    return names, vectors


def imagenet_class_names() -> list[str]:
    """The 1,000 ImageNet class names (open_clip's cleaned list; same order as the logits)."""
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    return list(IMAGENET_CLASSNAMES)


def class_embeddings(names: Sequence[str], encode: TextEncodeFn, hierarchy_weight: float = 0.0,
                     parents: Sequence[Sequence[str]] | None = None) -> np.ndarray:
    """Mean of the template embeddings per class, L2-normalised: float32[len(names), d].

    With ``hierarchy_weight`` w > 0 (1,000 ImageNet names), a class with parents becomes
    normalise(v_class + w · v_parents), v_parents the normalised mean of its parents' vectors
    ("a photo of a dog.", "a photo of a pet." ...; ``parents`` per name, by default
    ``imagenet_hierarchy`` for the 1,000 ImageNet names): a Labrador retriever then also
    answers "a pet"."""
    vectors = _prompt_embeddings(names, encode)
    if not hierarchy_weight:
        return vectors
    if parents is None:
        parents = class_parents(len(names))
    broader = sorted({p for ps in parents for p in ps})
    row = {p: i for i, p in enumerate(broader)}
    parent_vectors = _prompt_embeddings(broader, encode)
    for i, ps in enumerate(parents):
        if ps:
            mean = l2_normalize(parent_vectors[[row[p] for p in ps]].mean(axis=0, keepdims=True))
            vectors[i] = vectors[i] + hierarchy_weight * mean[0]
    return l2_normalize(vectors)


def _prompt_embeddings(names: Sequence[str], encode: TextEncodeFn) -> np.ndarray:
    prompts = [t.format(n) for n in names for t in TEMPLATES]
    emb = encode(prompts).reshape(len(names), len(TEMPLATES), -1).mean(axis=1)
    return l2_normalize(emb)


def softmax(logits: np.ndarray, scale: float) -> np.ndarray:
    z = logits.astype(np.float64) * scale
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


class LabelBridge:
    """ConSE: softmax(scale·logits) -> weighted mean of the top-k class vectors, plus a weighted
    embedding of one sentence naming the top classes (which lets the text model compose them)."""

    def __init__(
        self,
        names: list[str],
        class_vectors: np.ndarray,
        encode: TextEncodeFn,
        *,
        scale: float = 0.5,
        top_k: int = 50,
        sentence_top: int = 5,
        sentence_weight: float = 0.5,
    ) -> None:
        self.names = names
        self.class_vectors = class_vectors
        self.encode = encode
        self.scale = scale
        self.top_k = top_k
        self.sentence_top = sentence_top
        self.sentence_weight = sentence_weight

    def __call__(self, logits: np.ndarray) -> np.ndarray:
        """ImageNet logits [n, 1000] -> L2-normalised float32[n, d]."""
        mixed, sentences = self.parts(logits, with_sentence=bool(self.sentence_weight))
        if sentences is None:
            return mixed
        return l2_normalize(mixed + self.sentence_weight * sentences)

    def parts(
        self, logits: np.ndarray, *, with_sentence: bool = True
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """The two halves, each L2-normalised: the class mix and the sentence embedding."""
        probs = softmax(logits, self.scale)
        top = np.argsort(-probs, axis=1)[:, : self.top_k]
        weights = np.take_along_axis(probs, top, axis=1)
        mixed = l2_normalize(np.einsum("nk,nkd->nd", weights, self.class_vectors[top]))
        if not with_sentence:
            return mixed, None
        sentences = [self.sentence(row[: self.sentence_top]) for row in top]
        return mixed, l2_normalize(self.encode(sentences))

    def sentence(self, classes: Sequence[int]) -> str:
        return "a photo with a " + ", ".join(self.names[int(i)] for i in classes) + "."

    def top_classes(self, logits: np.ndarray, k: int = 5) -> list[list[tuple[str, float]]]:
        """The k most probable class names with probabilities, per image (for inspection)."""
        probs = softmax(logits, 1.0)
        top = np.argsort(-probs, axis=1)[:, :k]
        return [[(self.names[int(i)], float(p[i])) for i in row] for row, p in zip(top, probs)]
