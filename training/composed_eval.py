"""A composed-query benchmark: multi-part queries over a captioned photo set.

Three kinds of query, each with one target photo (built with a fixed seed):

* ``two_captions``: two different captions of the target, weights 1 and 1;
* ``caption_photo``: a caption of the target (1.0) plus a *different* photo that shares the
  target's main object (0.5), e.g. "a dog runs on the beach" + another dog photo;
* ``negative``: a caption of the target (1.0) minus a distractor concept (-0.2, chosen on flickr
  dev): the word for
  an object that the photo ranked highest above the target shows and the target does not.

Every query runs through ``Engine.search_embedded`` over a temporary index of the photos
(parts pre-embedded; photo parts are ``item_id`` parts, and the query's own photo is left out
of its results), per fusion strategy, and is compared
with each of its parts alone ("best single part": the part with the best recall on its own).
Photos and captions come from the backbone cache of ``training.image_projection``.
"""

from __future__ import annotations

import re
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from search.catalog import SegmentIn
from search.encoders.base import Encoder
from search.engine import Engine
from search.index import Index
from search.query import Query, QueryPart
from training.evaluation import read_captions
from training.image_projection import load_split

RECALL_AT = (1, 5, 10)
STRATEGIES = ("weighted", "attention", "attention_learned", "rrf", "score_sum")
KINDS = ("two_captions", "caption_photo", "negative")
PHOTO_WEIGHT = 0.5
NEGATIVE_WEIGHT = -0.2
# concrete objects and scenes that captions name (plural -> singular where it differs)
_PLURAL = {"dogs": "dog", "men": "man", "women": "woman", "children": "child", "kids": "kid",
           "boys": "boy", "girls": "girl", "people": "person", "persons": "person",
           "players": "player", "balls": "ball", "cars": "car", "bikes": "bike", "trees": "tree",
           "horses": "horse", "cats": "cat", "birds": "bird", "rocks": "rock", "waves": "wave",
           "buildings": "building", "mountains": "mountain", "boats": "boat", "hats": "hat"}
VOCAB = frozenset({
    "dog", "man", "woman", "child", "kid", "boy", "girl", "person", "baby", "player", "team",
    "crowd", "ball", "water", "beach", "snow", "grass", "field", "street", "road", "car", "bike",
    "bicycle", "motorcycle", "horse", "cat", "bird", "tree", "mountain", "rock", "building",
    "city", "shirt", "hat", "jacket", "pool", "ocean", "lake", "river", "sand", "stick",
    "frisbee", "toy", "table", "food", "bench", "wall", "sidewalk", "park", "stage", "guitar",
    "camera", "fence", "skateboard", "surfboard", "wave", "boat", "sky", "helmet", "bus",
    "train", "pizza", "plate", "kitchen", "room", "bed", "umbrella", "tennis", "football",
})


@dataclass
class Corpus:
    """Photos and their captions embedded with one encoder."""

    name: str
    images: np.ndarray  # [n, dim]
    captions: np.ndarray  # [m, dim]
    owner: np.ndarray  # [m] photo of each caption
    texts: list[str]

    def concepts(self) -> list[Counter]:
        """Per photo: how many of its captions name each vocabulary concept."""
        out: list[Counter] = [Counter() for _ in range(len(self.images))]
        for text, photo in zip(self.texts, self.owner.tolist()):
            words = {_PLURAL.get(w, w) for w in re.findall(r"[a-z]+", text.lower())}
            out[photo].update(sorted(words & VOCAB))  # sorted: ties break the same every run
        return out


@dataclass
class ComposedQuery:
    kind: str
    target: int
    # (source, index or word, weight); source: caption | photo | word
    parts: list[tuple[str, int | str, float]] = field(default_factory=list)


def load_corpus(encoder: Encoder, data_root: Path, cache_dir: Path, dataset: str, split: str) -> Corpus:
    """A split's photo and caption vectors (backbone outputs cached; see image_projection)."""
    # the split's bridge vectors are not used (combine() below rebuilds the image vectors)
    sp = load_split(encoder, data_root, cache_dir, dataset, split, encoder.bridge.sentence_weight)  # type: ignore[attr-defined]
    images = encoder.combine(sp.logits, sp.features)  # type: ignore[attr-defined]
    texts = read_captions(data_root / dataset / "captions_all.csv", split).captions
    return Corpus(f"{dataset}/{split}", images.astype(np.float32), sp.captions.astype(np.float32),
                  np.asarray(sp.owner), texts)


def load_corpora(encoder: Encoder, data_root: Path, cache_dir: Path, dataset: str, splits: list[str]) -> Corpus:
    """Several splits of one set as one corpus (coco_mini: val2017 + train2017)."""
    parts = [load_corpus(encoder, data_root, cache_dir, dataset, s) for s in splits]
    offsets = np.cumsum([0] + [len(c.images) for c in parts[:-1]])
    return Corpus(
        f"{dataset}/{'+'.join(splits)}",
        np.concatenate([c.images for c in parts]),
        np.concatenate([c.captions for c in parts]),
        np.concatenate([c.owner + o for c, o in zip(parts, offsets)]),
        [t for c in parts for t in c.texts],
    )


def build_queries(corpus: Corpus, seed: int = 0) -> list[ComposedQuery]:
    """One query of each kind per photo where the kind can be built."""
    rng = np.random.default_rng(seed)
    concepts = corpus.concepts()
    caps_of: list[list[int]] = [[] for _ in range(len(corpus.images))]
    for c, photo in enumerate(corpus.owner.tolist()):
        caps_of[photo].append(c)
    having: dict[str, list[int]] = {}
    for p, counts in enumerate(concepts):
        for word, n in counts.items():
            if n >= 2:
                having.setdefault(word, []).append(p)
    out: list[ComposedQuery] = []
    for t, caps in enumerate(caps_of):
        if len(caps) < 2:
            continue
        i, j = rng.choice(caps, 2, replace=False)
        out.append(ComposedQuery("two_captions", t, [("caption", int(i), 1.0), ("caption", int(j), 1.0)]))
        main = [w for w, n in concepts[t].most_common() if n >= 2]
        if main:
            partners = [p for p in having[main[0]] if p != t]
            if partners:
                p = int(rng.choice(partners))
                c = int(rng.choice(caps))
                out.append(ComposedQuery("caption_photo", t, [("caption", c, 1.0), ("photo", p, PHOTO_WEIGHT)]))
        c = int(rng.choice(caps))
        order = np.argsort(-(corpus.images @ corpus.captions[c]))
        rank_t = int(np.nonzero(order == t)[0][0])
        for d in order[: max(rank_t, 3)].tolist():
            extra = [w for w, n in concepts[d].most_common() if n >= 2 and concepts[t][w] == 0]
            if d != t and extra:
                out.append(ComposedQuery("negative", t, [("caption", c, 1.0), ("word", extra[0], NEGATIVE_WEIGHT)]))
                break
    return out


def part_vectors(corpus: Corpus, encoder: Encoder, query: ComposedQuery, words: dict[str, np.ndarray]) -> np.ndarray:
    rows = []
    for source, ref, _ in query.parts:
        if source == "caption":
            rows.append(corpus.captions[int(ref)])
        elif source == "photo":
            rows.append(corpus.images[int(ref)])
        else:
            if ref not in words:
                words[str(ref)] = encoder.encode_text([str(ref)])[0]
            rows.append(words[str(ref)])
    return np.stack(rows).astype(np.float32)


def _recalls(ranks: list[int]) -> dict[str, float]:
    r = np.asarray(ranks)
    return {f"R@{k}": round(float((r <= k).mean()), 4) for k in RECALL_AT} | {"n": len(ranks)}


def evaluate(corpus: Corpus, encoder: Encoder, queries: list[ComposedQuery],
             strategies: tuple[str, ...] = STRATEGIES) -> dict[str, dict[str, dict[str, float]]]:
    """R@1/5/10 per query kind: each strategy, each part alone and the best single part."""
    words: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory(prefix="crossfind-composed-") as tmp:
        index = Index.open_for_write(Path(tmp), encoder.id, encoder.dim)
        try:
            seg_of = _add_photos(index, corpus.images)
            engine = Engine(index, encoder)
            photo_of = {s: p for p, s in enumerate(seg_of)}
            results: dict[str, dict[str, dict[str, float]]] = {}
            for kind in KINDS:
                mine = [q for q in queries if q.kind == kind]
                if not mine:
                    continue
                ranks: dict[str, list[int]] = {s: [] for s in strategies}
                single: list[list[int]] = [[] for _ in mine[0].parts]
                for q in mine:
                    vectors = part_vectors(corpus, encoder, q, words)
                    parts = [_query_part(src, ref, w, seg_of) for src, ref, w in q.parts]
                    # the query's own photo is not an answer (as in composed image retrieval)
                    own = {int(ref) for src, ref, _ in q.parts if src == "photo"}
                    k = 10 + len(own)
                    for s in strategies:
                        hits = engine.search_embedded(Query(parts=parts, fusion=s, k=k, hybrid=False), vectors)
                        ranks[s].append(_rank([photo_of[h.id] for h in hits], q.target, own))
                    for i, part in enumerate(parts):
                        if part.weight > 0:
                            hits = engine.search_embedded(Query(parts=[part], k=k, hybrid=False), vectors[i : i + 1])
                            single[i].append(_rank([photo_of[h.id] for h in hits], q.target, own))
                table = {s: _recalls(r) for s, r in ranks.items()}
                singles = {f"part{i + 1}_alone": _recalls(r) for i, r in enumerate(single) if r}
                table.update(singles)
                table["best_single_part"] = max(singles.values(), key=lambda d: (d["R@5"], d["R@1"]))
                results[kind] = table
        finally:
            index.close()
    return results


def _query_part(source: str, ref: int | str, weight: float, seg_of: list[int]) -> QueryPart:
    if source == "photo":
        return QueryPart(item_id=seg_of[int(ref)], weight=weight)
    return QueryPart(text=str(ref) if source == "word" else f"caption {ref}", weight=weight)


def _rank(photos: list[int], target: int, skip: set[int]) -> int:
    photos = [p for p in photos if p not in skip]
    return photos.index(target) + 1 if target in photos else 10**6


def _add_photos(index: Index, vectors: np.ndarray) -> list[int]:
    seg_ids = []
    for n in range(len(vectors)):
        _, segs = index.catalog.add_content(f"composed-{n}", "image", 1, [SegmentIn()], [(f"/photo/{n}.jpg", 1, 1)])
        seg_ids.extend(segs)
    index.add_vectors(seg_ids, vectors)
    index.checkpoint()
    return seg_ids
