"""What the app holds for its lifetime: settings, the encoder (loaded once), the engine over the
index, the background indexing job and the thumbnail cache."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import anyio.to_thread
import numpy as np

from search.access import Gate
from search.catalog import SegmentInfo
from search.deadline import Deadline
from search.encoders import create_encoder
from search.encoders.base import AUDIO_SAMPLE_RATE, Encoder
from search.engine import Engine, SearchResult, echo
from search.errors import CrossfindError, DiskFull, NotFound, RequestTimeout, is_disk_full
from search.index import Index
from search.query import Query, QueryPart
from search.settings import Settings
from web.batching import TextBatcher
from web.errors import ServiceUnavailable
from web.indexing import IndexFn, IndexJob
from web.query_cache import QueryVectorCache
from web.thumbnails import Thumbnails

log = logging.getLogger(__name__)


class Services:
    """Created by ``create_app``; ``start`` (in the lifespan) loads models and opens the index."""

    def __init__(
        self,
        settings: Settings,
        *,
        engine: Engine | None = None,
        encoder: Encoder | None = None,
        index_fn: IndexFn | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        if engine is not None:
            engine.background_calibration = True  # see Engine.calibration
        self.encoder = encoder or (engine.encoder if engine else None)
        self.db = Path(engine.index.root) if engine else Path(settings.db)
        self.job = IndexJob(self, index_fn)
        self.thumbnails = Thumbnails(self.db / "thumbnails", settings.max_image_pixels)
        # searches run in worker threads; enough of them that concurrent text queries meet in
        # one model call (see web.batching), and a bound so a burst cannot spawn hundreds
        self.limiter = anyio.CapacityLimiter(32)
        self._lock = threading.Lock()
        self.vectors = QueryVectorCache()
        self._batchers: dict[int, TextBatcher] = {}

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        """Open the index and load its encoder once, so the first query is fast."""
        if self.engine is None and Index.exists(self.db):
            self.open_engine()
        if self.encoder is not None:
            self.warm_up(self.encoder)
        if self.engine is not None:
            try:  # the first search should not pay for probing the index
                self.engine.calibration()
            except Exception:  # searches retry it; the server starts anyway
                log.exception("relevance calibration failed")

    @staticmethod
    def warm_up(encoder: Encoder) -> None:
        """Run each model once: lazy weights, sessions and graphs load now, not in the first
        query. A model that fails here fails the same way per request, with its own message."""
        from PIL import Image

        try:
            encoder.encode_text(["warm up"])
            encoder.encode_image([Image.new("RGB", (64, 64), (128, 128, 128))])
            if encoder.supports("audio"):
                encoder.encode_audio([np.zeros(AUDIO_SAMPLE_RATE, dtype=np.float32)])
        except CrossfindError as exc:
            log.warning("warm-up of encoder %r failed: %s", encoder.id, exc.message)

    def open_engine(self) -> Engine:
        with self._lock:
            if self.engine is None:
                index = Index.open(self.db, catalog_url=self.settings.catalog)
                encoder = self.load_encoder(index.manifest.encoder)
                engine = Engine(
                    index,
                    encoder,
                    self.settings.max_image_pixels,
                    self.settings.max_query_audio_s,
                    self.settings.max_query_image_pixels,
                )
                engine.background_calibration = True
                self.engine = engine
            return self.engine

    def load_encoder(self, name: str | None = None) -> Encoder:
        """The encoder called ``name`` (default: the one loaded, else ``settings.model``)."""
        if self.encoder is not None and name in (None, self.encoder.id):
            return self.encoder

        encoder = create_encoder(name or self.settings.model, self.settings.cache_dir)
        self.encoder = self.encoder or encoder
        return encoder

    def close(self) -> None:
        self.job.wait(timeout=5.0)

    # -- reads --------------------------------------------------------------------------------
    def require_engine(self) -> Engine:
        if self.engine is None:
            if Index.exists(self.db):
                return self.open_engine()
            raise ServiceUnavailable(
                f"no index at {self.db} yet; build one with `crossfind index PATH --db {self.db}` "
                "or POST /api/index"
            )
        return self.engine

    async def search(self, query: Query) -> SearchResult:
        """Run a search in a worker thread, bounded by the request timeout. On timeout the
        thread is told to stop (``Deadline``): it gives up at its next check, between audio
        blocks, window batches, parts or rounds of candidates, instead of working on for nobody."""
        engine = self.require_engine()
        timeout = self.settings.request_timeout_s
        deadline = Deadline(timeout)
        try:
            return await asyncio.wait_for(
                anyio.to_thread.run_sync(
                    self._search, engine, query, deadline, limiter=self.limiter
                ),
                timeout=timeout,
            )
        except (TimeoutError, RequestTimeout):
            raise RequestTimeout(
                f"the search took longer than {timeout:g} s; "
                "ask for fewer results or raise CROSSFIND_REQUEST_TIMEOUT_S"
            ) from None
        finally:
            deadline.cancel()  # the request is over (answered, timed out or dropped)

    def _search(self, engine: Engine, query: Query, deadline: Deadline) -> SearchResult:
        """``Engine.search`` with part vectors taken from the cache where it has them."""
        t0 = time.perf_counter()
        engine.index.refresh()
        embed = self._embedder(engine, deadline)
        vectors, notes = engine.embed_query(
            query, deadline, lambda part, note: self.vectors.get(part, embed, note)
        )
        hits = engine.search_embedded(query, vectors, shown=_readable_paths(engine), deadline=deadline)
        return SearchResult(hits, (time.perf_counter() - t0) * 1000, echo(query, notes))

    def _embedder(
        self, engine: Engine, deadline: Deadline
    ) -> Callable[[QueryPart, dict], np.ndarray]:
        """The engine's ``embed_part``, with text parts batched across concurrent requests."""
        batcher = self._batchers.get(id(engine.encoder))
        if batcher is None:
            batcher = TextBatcher(engine.encoder.encode_text)
            self._batchers = {id(engine.encoder): batcher}  # one engine at a time

        def embed(part: QueryPart, notes: dict) -> np.ndarray:
            if part.text is not None:
                return batcher.encode(part.text)
            return engine.embed_part(part, deadline, notes)

        return embed

    def segment(self, item_id: int, readable: bool = True) -> SegmentInfo:
        """A segment that is in the index now (rows deleted while indexing are gone), with
        only the paths that may still be read (``search.access``) unless ``readable`` is off."""
        engine = self.require_engine()
        catalog = engine.index.catalog
        info = catalog.segments([item_id]).get(item_id) if item_id >= 0 else None
        if info is None or not info.paths:
            raise NotFound(f"no indexed item with id {item_id}")
        if readable and Gate(catalog).restrict(info) is None:
            raise NotFound(
                f"the file of item {item_id} is gone, changed or now outside the indexed "
                "folders since it was indexed; re-run `crossfind index` on its folder"
            )
        return info

    def index_bytes(self) -> int:
        total = 0
        for entry in os.scandir(self.db) if self.db.is_dir() else []:
            if entry.is_file(follow_symlinks=False):
                total += entry.stat().st_size
        return total

    # -- writes -------------------------------------------------------------------------------
    def delete_item(self, item_id: int) -> tuple[list[str], int]:
        """Forget the files of this item (not on disk). Returns (paths, vectors removed)."""
        info = self.segment(item_id, readable=False)  # a vanished file can still be forgotten
        engine = self.require_engine()
        with Index.open_for_write(
            self.db, engine.index.manifest.encoder, engine.index.manifest.dim,
            catalog_url=self.settings.catalog,
        ) as w:
            try:
                dropped = w.catalog.remove_paths(info.paths)
            except Exception as exc:  # the delete rolled back: nothing changed
                if is_disk_full(exc):
                    raise DiskFull.writing(self.db) from exc
                raise
            w.remove_segments(dropped)
            w.checkpoint()
        self.thumbnails.forget(info.content_id, info.sha256)
        return info.paths, len(dropped)


def _readable_paths(engine: Engine) -> Callable[[SegmentInfo], list[str]]:
    """The paths of an item that may still be read (``search.access``): a hit shows only those,
    and one with none is left out before paging, so no snippet or path of a file that is gone,
    changed or now leads outside the roots is shown, and a page still holds ``k`` hits."""
    gate = Gate(engine.index.catalog)
    return lambda info: [path for path, _ in gate.readable(info)]
