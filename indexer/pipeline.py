"""The writer: ``index_paths`` scans, then decodes in workers while the model embeds batches.

Decoding overlaps inference: a bounded window of decode jobs stays in flight in the worker
pool while the main process runs the encoder on the current batch, so the model does not wait
on I/O and memory stays flat. Writes follow ``search.index``: a batch's rows and vectors
commit in one transaction, so a crash at any moment leaves a state every reader can serve;
``checkpoint`` (every ``checkpoint_every_s`` and at the end) folds the exact tail into the ANN
index when it has grown enough, and the end of a run computes the relevance calibration, so a
user's first query does not.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from indexer.discover import resolve_roots
from indexer.embedder import Embedder, audio_supported
from indexer.loaders import CHANGED, Loaded, LoaderConfig, Skip, load
from indexer.plan import Pending, scan
from indexer.ray_embed import RayExecutor, RayRun, ray_session
from indexer.report import IndexReport, Skipped
from indexer.workers import Workers
from search.access import record_roots
from search.catalog import NewContent, SegmentIn
from search.encoders.base import Encoder
from search.errors import DiskFull, is_disk_full
from search.index import Index
from search.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class _Batch:
    """Decoded files of one modality waiting for the encoder."""

    items: list[tuple[Pending, Loaded]] = field(default_factory=list)
    n_inputs: int = 0

    def add(self, pending: Pending, loaded: Loaded) -> None:
        self.items.append((pending, loaded))
        self.n_inputs += len(loaded.inputs)


class _Writer:
    """Writes embedded batches in the crash-safe order; keeps time and counts. Embeds them
    itself (``flush``) or takes vectors made elsewhere (``write``: the Ray executor)."""

    def __init__(
        self, index: Index, encoder: Encoder, batch_size: int, report: IndexReport,
        checkpoint_every_s: float, stale_before: Callable[[str], float] = lambda modality: 0.0,
        audio_ok: Callable[[], bool] = lambda: True,
    ) -> None:
        self.index, self.report = index, report
        self.batch_size = max(1, batch_size)
        self.embedder = Embedder(encoder, batch_size, audio_ok)
        # asked before a modality's first write, so the index records the model that made it
        self.stale_before = stale_before
        self.checkpoint_every_s = checkpoint_every_s
        self.last_checkpoint = time.monotonic()
        self.started = time.perf_counter()
        self.dirty = False

    def flush(self, modality: str, batch: _Batch) -> None:
        if not batch.items:
            return
        self.stale_before(modality)
        before = self.embedder.seconds
        vectors = self.embedder.embed([loaded for _, loaded in batch.items])
        self.report.encode_seconds += self.embedder.seconds - before
        self.write(modality, [(p, loaded, v) for (p, loaded), v in zip(batch.items, vectors)])
        batch.items.clear()
        batch.n_inputs = 0

    def write(self, modality: str, items: Sequence[tuple[Pending, Loaded, np.ndarray | str]]) -> None:
        """Write embedded files of ``modality``: rows and vectors in one transaction (see
        search/index.py). A file given a reason instead of vectors is reported skipped."""
        self.stale_before(modality)
        done = []
        for pending, loaded, vectors in items:
            if isinstance(vectors, str):
                self.report.skip(pending.path, vectors)
            else:
                done.append((pending, loaded, vectors))
        if not done:
            return
        written = self.index.add_contents(
            [
                NewContent(
                    pending.sha256, modality, pending.size,
                    [SegmentIn(**s) for s in loaded.segments], pending.files,
                    loaded.width, loaded.height, loaded.duration_s,
                )
                for pending, loaded, _ in done
            ],
            np.concatenate([vectors for _, _, vectors in done]),
        )
        if self.report.first_batch is None:
            n = sum(len(v) for _, _, v in done)
            self.report.first_batch = (time.perf_counter() - self.started, n)
        for (pending, loaded, _), (_, seg_ids) in zip(done, written):
            self._count(modality, pending, len(seg_ids))
            self.report.add_ocr(*loaded.ocr)
            if loaded.note:
                self.report.partial.append(Skipped(pending.path, loaded.note))
        self.dirty = True
        if time.monotonic() - self.last_checkpoint >= self.checkpoint_every_s:
            self.checkpoint()

    def _count(self, modality: str, pending: Pending, n_vectors: int) -> None:
        first, *others = [path for path, _, _ in pending.files]
        if pending.refresh:
            self.report.count(modality, "refreshed", len(pending.files))
            self.report.count(modality, "vectors", n_vectors)
            return
        self.report.count(modality, "updated" if first in pending.known else "added")
        for path in others:
            self.report.count(modality, "updated" if path in pending.known else "linked")
        self.report.count(modality, "vectors", n_vectors)

    def checkpoint(self) -> None:
        self.index.checkpoint()
        self.dirty = False
        self.last_checkpoint = time.monotonic()


def index_paths(
    paths: Sequence[str | Path],
    index: Index,
    encoder: Encoder,
    settings: Settings,
    *,
    progress: bool = True,
    executor: RayExecutor | None = None,
) -> IndexReport:
    """Bring ``index`` up to date with the files under ``paths`` (files or folders).

    Bad files are skipped with a reason in the report; nothing here raises for bad input.

    Raises:
        NotFound: a path does not exist (nothing is changed then).
        EncoderMismatch: ``index`` was built with another encoder.
        DiskFull: a write ran out of space; ``index`` is back at its last checkpoint.
        ServiceUnavailable: ``executor``'s Ray cannot be started or reached, or failed mid-run
            (what was written before is kept).

    ``executor``: embed on Ray (``indexer.ray_embed``) rather than in this process.
    """
    t0 = time.perf_counter()
    index.require_encoder(encoder.id)
    roots = resolve_roots(paths)
    report = IndexReport(roots=roots, workers=max(0, settings.workers))
    config = LoaderConfig(
        preprocess_image=encoder.preprocess_image,
        max_image_pixels=settings.max_image_pixels,
        max_text_chars=settings.max_text_chars,
        max_document_s=settings.max_document_s,
        passage_words=settings.passage_words,
        passage_overlap=settings.passage_overlap,
        audio_window_s=settings.audio_window_s,
        audio_hop_s=settings.audio_hop_s,
        ocr=settings.ocr,
        video_min_frame_s=settings.video_min_frame_s,
        video_max_frame_s=settings.video_max_frame_s,
        real_roots=None if settings.follow_links else tuple(os.path.realpath(r) for r in roots),
    )
    stale_before = _stale_before(index, encoder)
    writer = _Writer(
        index, encoder, max(1, settings.batch_size), report, settings.checkpoint_every_s,
        stale_before, audio_ok=lambda: audio_supported(encoder),
    )
    try:
        # before any file: the server checks every read against these (search.access)
        record_roots(index.catalog, roots, settings.follow_links)
        with Workers(settings.workers, config) as workers:
            pending, changed = scan(
                roots, index, settings, workers, report,
                audio_ok=lambda: audio_supported(encoder), progress=_bar if progress else None,
                stale_before=stale_before,
            )
            writer.dirty = changed
            report.scan_seconds = time.perf_counter() - t0
            bar = _bar(len(pending), "indexing") if progress and pending else None
            if executor is None:
                _embed_all(pending, workers, writer, bar)
            else:
                _embed_on_ray(pending, executor, encoder.id, settings, config, workers, writer, bar)
            if bar is not None:
                bar.close()
        # also when nothing changed: a new --store rebuilds the vector index here
        index.finish()
        if writer.dirty:
            _calibrate(index, encoder)
    except DiskFull:
        raise  # from Index.checkpoint, which has rolled back already
    except BaseException as exc:
        if is_disk_full(exc):  # a batch's commit or the vector index file: nothing else is lost
            index.rollback()
            raise DiskFull.writing(index.root) from exc
        raise  # Ctrl-C or a bug: every batch written so far is already committed
    finally:
        report.seconds = time.perf_counter() - t0
    return report


def _embed_all(pending: list[Pending], workers: Workers, writer: _Writer, bar: object) -> None:
    """Decode in the pool, a bounded window ahead, and flush full batches to the writer.

    A worker that dies (a decoder crashing on a file) breaks the pool and every job in flight
    with it: those files are then retried one at a time on a fresh pool, so the file that
    kills a worker alone is found and skipped, and the others are indexed.
    """
    batches: dict[str, _Batch] = {}
    todo: deque[Pending] = deque(pending)
    suspects: deque[Pending] = deque()  # in flight when the pool broke: retried alone
    # enough decoded work queued to fill the next batch while the model runs this one
    window = max(2 * writer.batch_size, 4 * max(1, workers.n))
    inflight: deque[tuple[Pending, bool, Future]] = deque()  # (item, running alone, job)

    def fill() -> None:
        if suspects:
            if not inflight:
                item = suspects.popleft()
                inflight.append((item, True, workers.submit(load, item.path, item.modality)))
            return
        while todo and len(inflight) < window:
            item = todo.popleft()
            inflight.append((item, False, workers.submit(load, item.path, item.modality)))

    fill()
    while inflight:
        item, alone, future = inflight.popleft()
        try:
            result = future.result()
        except BrokenProcessPool:
            log.warning("a decoding worker died; restarting the pool")
            workers.restart()
            if alone:
                _skip_all(writer.report, item, "the decoder crashed on this file")
                _tick(bar)
            else:
                suspects.extend([item, *(p for p, _, _ in inflight)])
                inflight.clear()
            fill()
            continue
        fill()  # keep the workers busy while the model runs below
        if isinstance(result, Skip):
            _skip_all(writer.report, item, result.reason)
        elif result.sha256 is not None and result.sha256 != item.sha256:
            _skip_all(writer.report, item, CHANGED)
        else:
            batch = batches.setdefault(item.modality, _Batch())
            batch.add(item, result)
            if batch.n_inputs >= writer.batch_size:
                writer.flush(item.modality, batch)
        _tick(bar)
    for modality, batch in batches.items():
        writer.flush(modality, batch)


def _embed_on_ray(pending: list[Pending], executor: RayExecutor, encoder_id: str, settings: Settings,
                  config: LoaderConfig, workers: Workers, writer: _Writer, bar: object) -> None:
    """Decode and embed on Ray; write here as the results come back. Files Ray gave up on
    (a batch that failed past its retries) are embedded here after, by ``_embed_all``."""
    if not pending:
        return
    with ray_session(executor) as ray:
        run = RayRun(ray, pending, executor, encoder_id, settings.cache_dir, writer.batch_size, config)
        writer.report.workers = run.slots()
        for batch in run:
            by_modality: dict[str, list[tuple[Pending, Loaded, np.ndarray | str]]] = {}
            for done in batch:
                writer.report.encode_seconds += done.encode_s
                if isinstance(done.result, Skip):
                    _skip_all(writer.report, done.item, done.result.reason)
                else:
                    assert done.vectors is not None  # a decoded file comes back embedded
                    by_modality.setdefault(done.item.modality, []).append(
                        (done.item, done.result, done.vectors)
                    )
                _tick(bar)
            for modality, items in by_modality.items():
                writer.write(modality, items)
        missing = run.missing
    if missing:
        log.warning("Ray gave up on %d file(s); embedding them in this process", len(missing))
        _embed_all(missing, workers, writer, bar)


def _skip_all(report: IndexReport, item: Pending, reason: str) -> None:
    for path, _, _ in item.files:
        report.skip(path, reason)


def _tick(bar: object) -> None:
    if bar is not None:
        bar.update(1)  # type: ignore[attr-defined]


def _bar(total: int, desc: str) -> tqdm:
    return tqdm(
        total=total, desc=desc, unit="file", file=sys.stderr, dynamic_ncols=True,
        leave=desc == "indexing",  # the hashing bar gives way to the indexing one
    )


def _calibrate(index: Index, encoder: Encoder) -> None:
    """Relevance calibration for the new state, computed here rather than on a user's first
    query (``search.calibration`` reuses it while the index stays within its tolerance).
    Small indexes calibrate in milliseconds at query time and are left to it."""
    from search.calibration import REUSE_MIN, load_or_compute

    if index.store.count() >= REUSE_MIN:
        load_or_compute(index.store, index.catalog, encoder.id, encoder.encode_text)


def _stale_before(index: Index, encoder: Encoder) -> Callable[[str], float]:
    """Per modality, asked once and only when a known file of it is met (image and text runs
    never load the audio model): contents embedded before this time were made by a model
    that has since been replaced."""
    cache: dict[str, float] = {}

    def since(modality: str) -> float:
        if modality not in cache:
            usable = modality not in ("audio", "video") or audio_supported(encoder)
            fingerprint = encoder.fingerprint(modality) if usable else None
            cache[modality] = 0.0 if fingerprint is None else index.stale_before(modality, fingerprint)
        return cache[modality]

    return since
