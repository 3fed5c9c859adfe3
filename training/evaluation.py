"""Retrieval evaluation on a captioned image set (``captions_all.csv``: path, caption_idx,
caption, split; paths relative to the CSV).

The images and captions go into a temporary index and every query runs through the same
``Engine`` users search with, so the figures measure the product, not a side path:
text->image (each caption finds its photo) and image->text (each photo finds any of its captions).
"""

from __future__ import annotations

import csv
import hashlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from search.catalog import SegmentIn
from search.encoders.base import Encoder
from search.engine import Engine
from search.errors import BadRequest
from search.index import Index
from search.media import open_image
from search.query import Filters, Query, QueryPart

RECALL_AT = (1, 5, 10)
# Ranks are looked up in the first FIRST_K hits, then (rarely) in up to MAX_K.
FIRST_K = 50
MAX_K = 1000


@dataclass
class CaptionSet:
    images: list[Path]
    captions: list[str]
    caption_image: list[int]  # index into images for each caption


def read_captions(csv_path: Path, split: str | None = None) -> CaptionSet:
    """The rows of ``split`` (all rows when None), images in first-seen order."""
    csv_path = Path(csv_path)
    try:
        with open(csv_path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise BadRequest(f"cannot read {csv_path}: {exc.strerror}") from None
    if rows and not {"path", "caption"} <= set(rows[0]):
        raise BadRequest(f"{csv_path} needs columns path,caption (and optionally split)")
    if split is not None:
        rows = [r for r in rows if r.get("split") == split]
    if not rows:
        raise BadRequest(f"no captions in {csv_path}" + (f" for split {split!r}" if split else ""))
    order: dict[str, int] = {}
    captions, owners = [], []
    for row in rows:
        idx = order.setdefault(row["path"], len(order))
        captions.append(row["caption"])
        owners.append(idx)
    images = [csv_path.parent / p for p in order]
    return CaptionSet(images, captions, owners)


def evaluate_captions(
    csv_path: Path,
    split: str | None,
    encoder: Encoder,
    *,
    batch_size: int = 32,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Index the split's images and captions into a temporary index and measure retrieval.

    Returns ``{"t2i": {"R@1","R@5","R@10","median_rank"}, "i2t": {...}, "n_images",
    "n_captions"}``; ``progress(done, total)`` is called as images are embedded.
    """
    data = read_captions(csv_path, split)
    with tempfile.TemporaryDirectory(prefix="crossfind-eval-") as tmp:
        index = Index.open_for_write(Path(tmp), encoder.id, encoder.dim)
        try:
            image_ids = _add_images(index, encoder, data.images, batch_size, progress)
            caption_vectors = encoder.encode_text(data.captions)
            caption_ids = _add_captions(index, data.captions, caption_vectors)
            index.checkpoint()
            engine = Engine(index, encoder)
            t2i = _text_to_image(engine, caption_vectors, data, image_ids)
            i2t = _image_to_text(engine, data, image_ids, caption_ids)
        finally:
            index.close()
    return {
        "t2i": _summary(t2i),
        "i2t": _summary(i2t),
        "n_images": len(data.images),
        "n_captions": len(data.captions),
    }


def _key(kind: str, n: int, name: str) -> str:
    # Catalog contents dedupe by hash; eval items are distinct by position, not bytes.
    return hashlib.sha256(f"eval:{kind}:{n}:{name}".encode()).hexdigest()


def _add_images(
    index: Index,
    encoder: Encoder,
    images: list[Path],
    batch_size: int,
    progress: Callable[[int, int], None] | None,
) -> list[int]:
    ids: list[int] = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        arrays = np.stack([encoder.preprocess_image(open_image(p)) for p in chunk])
        vectors = encoder.encode_image_arrays(arrays)
        seg_ids = []
        for n, path in enumerate(chunk, start):
            stat = path.stat()
            _, segs = index.catalog.add_content(
                _key("image", n, path.name), "image", stat.st_size, [SegmentIn()],
                [(str(path), stat.st_size, stat.st_mtime_ns)],
            )
            seg_ids += segs
        index.add_vectors(seg_ids, vectors)
        ids += seg_ids
        if progress:
            progress(len(ids), len(images))
    return ids


def _add_captions(index: Index, captions: list[str], vectors: np.ndarray) -> list[int]:
    ids = []
    for n, caption in enumerate(captions):
        text = SegmentIn(text=caption, char_start=0, char_end=len(caption))
        _, segs = index.catalog.add_content(
            _key("caption", n, caption), "text", len(caption.encode()), [text],
            [(f"caption/{n}", len(caption.encode()), 0)],
        )
        ids += segs
    index.add_vectors(ids, vectors)
    return ids


def _rank(engine: Engine, vector: np.ndarray, modality: str, wanted: set[int], total: int) -> int:
    """1-based rank of the best hit in ``wanted`` among ``modality`` items (MAX_K+1 if beyond)."""
    k = min(FIRST_K, total)
    while True:
        # one segment per item here, so no grouping (which would over-fetch 4x)
        query = Query(
            parts=[QueryPart(text="eval")], k=k, filters=Filters(modality=[modality]),
            hybrid=False, group=False,
        )
        hits = engine.search_vector(vector, query)
        for rank, hit in enumerate(hits, 1):
            if hit.id in wanted:
                return rank
        if k >= min(total, MAX_K):
            return MAX_K + 1
        k = min(total, MAX_K)


def _text_to_image(
    engine: Engine, vectors: np.ndarray, data: CaptionSet, image_ids: list[int]
) -> list[int]:
    """Each caption's (already embedded, as the engine would) rank of its photo."""
    return [
        _rank(engine, vec, "image", {image_ids[owner]}, len(image_ids))
        for vec, owner in zip(vectors, data.caption_image)
    ]


def _image_to_text(
    engine: Engine, data: CaptionSet, image_ids: list[int], caption_ids: list[int]
) -> list[int]:
    owned: list[set[int]] = [set() for _ in image_ids]
    for cap_id, owner in zip(caption_ids, data.caption_image):
        owned[owner].add(cap_id)
    vectors = engine.index.store.reconstruct(np.asarray(image_ids, dtype=np.int64))
    return [
        _rank(engine, vec, "text", owned[i], len(caption_ids)) for i, vec in enumerate(vectors)
    ]


def _summary(ranks: list[int]) -> dict[str, float]:
    r = np.asarray(ranks)
    out = {f"R@{k}": round(float((r <= k).mean()), 4) for k in RECALL_AT}
    out["median_rank"] = float(np.median(r))
    return out
