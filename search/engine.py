"""The search engine: embeds a ``Query``, searches the store, and turns ids into ``Hit``s."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from search.audio import SR, decode_audio_prefix, embed_clip
from search.calibration import Calibration, current, fingerprint, load_or_compute, load_shipped
from search.deadline import NO_DEADLINE, Deadline
from search.encoders.base import Encoder
from search.errors import NotFound
from search.index import Index
from search.media import WEB_IMAGE_FORMATS, open_image
from search.query import Query, QueryPart
from search.ranking import NeighbourSample, ShownPaths, rank
from search.types import Hit

log = logging.getLogger(__name__)


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


def echo(query: Query, notes: list[dict]) -> dict[str, object]:
    """The query's JSON echo, each part with what embedding it reported (e.g. audio cut)."""
    out = query.describe()
    for part, note in zip(out["parts"], notes):  # type: ignore[call-overload]
        part.update(note)
    return out


class Engine:
    """Answers queries over one index with the encoder that built it."""

    def __init__(
        self,
        index: Index,
        encoder: Encoder,
        max_image_pixels: int = 64_000_000,
        max_query_audio_s: float = 30.0,
        max_query_image_pixels: int | None = 16_000_000,
    ):
        index.require_encoder(encoder.id)
        self.index = index
        self.encoder = encoder
        self.max_image_pixels = max_image_pixels
        self.max_query_audio_s = max_query_audio_s
        self.max_query_image_pixels = max_query_image_pixels  # decoded pixels (see open_image)
        self._calibration: Calibration | None = None
        self._shipped = load_shipped(encoder)  # the encoder's fitted relevance models
        self._calibration_lock = threading.Lock()
        self.background_calibration = False  # see ``calibration``
        self._sample = NeighbourSample()

    # -- embedding ----------------------------------------------------------------------------
    def embed_part(
        self, part: QueryPart, deadline: Deadline = NO_DEADLINE, notes: dict | None = None
    ) -> np.ndarray:
        """One query part -> one L2-normalised vector.

        An audio part longer than ``max_query_audio_s`` is embedded from its first
        ``max_query_audio_s`` seconds only (decoding stops there); ``notes`` then gets
        ``audio_used_s`` and ``audio_truncated`` for the response's echo of the part.
        """
        if part.text is not None:
            return self.encoder.encode_text([part.text])[0]
        if part.item_id is not None:
            return self.item_vector(part.item_id)
        if part.kind == "image":
            # bytes sent in (API, page) get the common formats only; a local file (CLI), any
            sent = part.image_b64 is not None
            image = open_image(
                part.media_bytes(), self.max_image_pixels,
                max_decoded_pixels=self.max_query_image_pixels,
                formats=WEB_IMAGE_FORMATS if sent else None,
            )
            return self.encoder.encode_image([image])[0]
        waveform, cut = decode_audio_prefix(part.media_bytes(), self.max_query_audio_s, deadline)
        if cut and notes is not None:
            notes.update(audio_used_s=round(len(waveform) / SR, 3), audio_truncated=True)
        return embed_clip(self.encoder, waveform, deadline=deadline)

    def item_vector(self, item_id: int) -> np.ndarray:
        if item_id not in self.index.catalog.segments([item_id]):
            raise NotFound(f"no indexed item with id {item_id}")
        return self.index.store.reconstruct(np.array([item_id]))[0]

    # -- searching ----------------------------------------------------------------------------
    def embed_query(
        self,
        query: Query,
        deadline: Deadline = NO_DEADLINE,
        embed: Callable[[QueryPart, dict], np.ndarray] | None = None,
    ) -> tuple[np.ndarray, list[dict]]:
        """(vectors[i] of part i, notes[i] embedding reported about part i), the deadline
        checked between parts. ``embed`` replaces ``embed_part`` (the server's cache)."""
        embed = embed or (lambda part, note: self.embed_part(part, deadline, note))
        notes: list[dict] = [{} for _ in query.parts]
        vectors = []
        for part, note in zip(query.parts, notes):
            deadline.check()
            vectors.append(embed(part, note))
        deadline.check()
        return np.stack(vectors), notes

    def search(self, query: Query, deadline: Deadline = NO_DEADLINE) -> SearchResult:
        t0 = time.perf_counter()
        self.index.refresh()
        vectors, notes = self.embed_query(query, deadline)
        hits = self.search_embedded(query, vectors, deadline=deadline)
        return SearchResult(hits, (time.perf_counter() - t0) * 1000, echo(query, notes))

    def search_embedded(
        self, query: Query, vectors: np.ndarray, shown: ShownPaths | None = None,
        deadline: Deadline = NO_DEADLINE,
    ) -> list[Hit]:
        """Search with the parts already embedded (``vectors[i]`` is part i): fusion, filters,
        keyword hits, calibration, threshold and paging; with ``shown``, hits keep only the
        paths it gives and paging counts only hits with some; ``deadline`` is checked between
        rounds of candidates. See ``search.ranking.rank``."""
        return rank(self.index, query, vectors, calibration=self.calibration, sample=self._sample,
                    shown=shown, deadline=deadline)

    def search_vector(self, vector: np.ndarray, query: Query) -> list[Hit]:
        """Nearest items to one query vector under the query's filters and threshold."""
        return rank(self.index, query, np.asarray(vector)[None, :], calibration=self.calibration,
                    sample=self._sample, fused=True)

    def calibration(self) -> Calibration:
        """The index's relevance calibration, computed once per index state (cached).

        With ``background_calibration`` (the server), a calibration of an earlier state is
        served while one background thread computes the new one: an indexing run changes the
        index at every checkpoint, and each change would otherwise make every concurrent
        search recompute the probes at once (16 searches, 10+ s each, measured).
        """
        cached = self._calibration
        if cached is not None and self.background_calibration:
            if not current(cached.fingerprint, fingerprint(self.index.store, self.encoder.id)):
                self._recalibrate_in_background()
            return cached
        with self._calibration_lock:  # one computation; the others wait for its result
            self._calibration = self._load_or_compute_calibration()
            return self._calibration

    def _load_or_compute_calibration(self) -> Calibration:
        return load_or_compute(
            self.index.store,
            self.index.catalog,
            self.encoder.id,
            lambda texts: self.encoder.encode_text(texts),
            self._calibration,
            self._shipped,
        )

    def _recalibrate_in_background(self) -> None:
        if not self._calibration_lock.acquire(blocking=False):
            return  # already being computed

        def work() -> None:
            try:
                self._calibration = self._load_or_compute_calibration()
            except Exception:  # the next search tries again; this one keeps the old scale
                log.exception("recomputing the relevance calibration failed")
            finally:
                self._calibration_lock.release()

        threading.Thread(target=work, name="crossfind-calibration", daemon=True).start()
