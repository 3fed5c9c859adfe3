"""The search engine: embeds a ``Query``, searches the store, and turns ids into ``Hit``s."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from search.audio import decode_audio_bytes, embed_clip
from search.calibration import Calibration, load_or_compute
from search.encoders.base import Encoder
from search.errors import NotFound
from search.filters import allowed_segment_ids
from search.index import Index
from search.media import open_image
from search.query import Query, QueryPart
from search.ranking import NeighbourSample, rank
from search.types import Hit


@dataclass
class SearchResult:
    hits: list[Hit]
    took_ms: float
    query: dict[str, object] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "results": [h.to_json() for h in self.hits],
            "took_ms": round(self.took_ms, 3),
        }


class Engine:
    """Answers queries over one index with the encoder that built it."""

    def __init__(self, index: Index, encoder: Encoder, max_image_pixels: int = 64_000_000):
        index.require_encoder(encoder.id)
        self.index = index
        self.encoder = encoder
        self.max_image_pixels = max_image_pixels
        self._calibration: Calibration | None = None
        self._sample = NeighbourSample()

    # -- embedding ----------------------------------------------------------------------------
    def embed_part(self, part: QueryPart) -> np.ndarray:
        """One query part -> one L2-normalised vector."""
        if part.text is not None:
            return self.encoder.encode_text([part.text])[0]
        if part.item_id is not None:
            return self.item_vector(part.item_id)
        if part.kind == "image":
            image = open_image(part.media_bytes(), self.max_image_pixels)
            return self.encoder.encode_image([image])[0]
        return embed_clip(self.encoder, decode_audio_bytes(part.media_bytes()))

    def item_vector(self, item_id: int) -> np.ndarray:
        if item_id not in self.index.catalog.segments([item_id]):
            raise NotFound(f"no indexed item with id {item_id}")
        return self.index.store.reconstruct(np.array([item_id]))[0]

    # -- searching ----------------------------------------------------------------------------
    def search(self, query: Query) -> SearchResult:
        t0 = time.perf_counter()
        self.index.refresh()
        vectors = np.stack([self.embed_part(p) for p in query.parts])
        hits = self.search_embedded(query, vectors)
        return SearchResult(hits, (time.perf_counter() - t0) * 1000, query.describe())

    def search_embedded(self, query: Query, vectors: np.ndarray) -> list[Hit]:
        """Search with the parts already embedded (``vectors[i]`` is part i): fusion, filters,
        keyword hits, calibration, threshold and paging. See ``search.ranking``."""
        return rank(self.index, query, vectors, calibration=self.calibration, sample=self._sample)

    def search_vector(self, vector: np.ndarray, query: Query) -> list[Hit]:
        """Nearest items to one query vector under the query's filters and threshold."""
        return rank(self.index, query, np.asarray(vector)[None, :], calibration=self.calibration,
                    sample=self._sample, fused=True)

    def allowed_ids(self, query: Query) -> np.ndarray | None:
        """Segment ids that pass the filters, or None for no restriction."""
        return allowed_segment_ids(self.index.catalog, query.filters)

    def calibration(self) -> Calibration:
        """The index's relevance calibration, computed once per index state (cached)."""
        self._calibration = load_or_compute(
            self.index.store,
            self.index.catalog,
            self.encoder.id,
            lambda texts: self.encoder.encode_text(texts),
            self._calibration,
        )
        return self._calibration
