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

import importlib.util
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
from indexer.loaders import CHANGED, Loaded, LoaderConfig, Skip, load
from indexer.plan import Pending, scan
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
    """Embeds batches and writes them in the crash-safe order; keeps time and counts."""

    def __init__(
        self, index: Index, encoder: Encoder, batch_size: int, report: IndexReport,
        checkpoint_every_s: float, stale_before: Callable[[str], float] = lambda modality: 0.0,
        audio_ok: Callable[[], bool] = lambda: True,
    ) -> None:
        # without an audio model a video indexes its frames only
        self.audio_ok = audio_ok
        self.index, self.encoder, self.batch_size, self.report = index, encoder, batch_size, report
        # asked before a modality's first write, so the index records the model that made it
        self.stale_before = stale_before
        self.checkpoint_every_s = checkpoint_every_s
        self.last_checkpoint = time.monotonic()
        self.dirty = False

    def encode(self, modality: str, inputs: list) -> np.ndarray:
        parts = []
        t0 = time.perf_counter()
        for i in range(0, len(inputs), self.batch_size):
            chunk = inputs[i : i + self.batch_size]
            if modality == "image":
                parts.append(self.encoder.encode_image_arrays(np.stack(chunk)))
            elif modality == "text":
                parts.append(self.encoder.encode_text(chunk))
            else:
                parts.append(self.encoder.encode_audio(chunk))
        self.report.encode_seconds += time.perf_counter() - t0
        return np.concatenate(parts).astype(np.float32, copy=False)

    def encode_mixed(self, inputs: list, kinds: list[str]) -> np.ndarray:
        """Embed inputs of several kinds (a video's frames and sound, an image and the text
        read off it): each kind through its own model, the vectors back in input order."""
        if len(set(kinds)) == 1:
            return self.encode(kinds[0], inputs)
        out = np.zeros((len(inputs), self.encoder.dim), np.float32)
        for kind in dict.fromkeys(kinds):
            rows = [i for i, k in enumerate(kinds) if k == kind]
            out[rows] = self.encode(kind, [inputs[i] for i in rows])
        return out

    def stream(self, loaded: Loaded) -> np.ndarray:
        """Embed a long recording or video a batch of inputs at a time; its segments are
        filled in as the inputs pass, so only one batch of samples or frames is ever held."""
        assert loaded.streamed is not None
        parts, chunk, kinds = [], [], []
        for kind, value, segment in loaded.streamed.inputs():
            if kind == "audio" and loaded.modality == "video" and not self.audio_ok():
                continue
            loaded.segments.append(segment)
            chunk.append(value)
            kinds.append(kind)
            if len(chunk) == self.batch_size:
                parts.append(self.encode_mixed(chunk, kinds))
                chunk, kinds = [], []
        if chunk:
            parts.append(self.encode_mixed(chunk, kinds))
        return np.concatenate(parts) if parts else np.zeros((0, self.encoder.dim), np.float32)

    def flush(self, modality: str, batch: _Batch) -> None:
        if not batch.items:
            return
        self.stale_before(modality)
        # long recordings and videos stream through the model on their own; the rest share batches
        streamed = {}
        for pending, loaded in list(batch.items):
            if loaded.streamed is None:
                continue
            try:
                streamed[id(loaded)] = self.stream(loaded)
            except Exception as exc:  # e.g. the file went bad between decode and embedding
                reason = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
                self.report.skip(pending.path, f"undecodable {modality}: {reason}")
                batch.items.remove((pending, loaded))
            else:
                if not loaded.segments:
                    self.report.skip(pending.path, f"no {modality} to index (silent or empty)")
                    batch.items.remove((pending, loaded))
        if not batch.items:
            return
        for _, loaded in batch.items:
            if loaded.modality == "video" and not loaded.streamed and not self.audio_ok():
                _drop_sound(loaded)
        unstreamed = [loaded for _, loaded in batch.items if not loaded.streamed]
        batched = [x for loaded in unstreamed for x in loaded.inputs]
        kinds = [k for loaded in unstreamed for k in loaded.input_kinds()]
        shared = self.encode_mixed(batched, kinds) if batched else None
        parts: list[np.ndarray] = []
        start = 0
        for _, loaded in batch.items:
            if loaded.streamed:
                parts.append(streamed[id(loaded)])
            else:
                assert shared is not None  # a non-streamed item was batched
                parts.append(shared[start : start + len(loaded.inputs)])
                start += len(loaded.inputs)
        vectors = np.concatenate(parts)
        # rows and vectors in one transaction: see search/index.py
        written = self.index.add_contents(
            [
                NewContent(
                    pending.sha256, modality, pending.size,
                    [SegmentIn(**s) for s in loaded.segments], pending.files,
                    loaded.width, loaded.height, loaded.duration_s,
                )
                for pending, loaded in batch.items
            ],
            vectors,
        )
        for (pending, loaded), (_, seg_ids) in zip(batch.items, written):
            self._count(modality, pending, len(seg_ids))
            self.report.add_ocr(*loaded.ocr)
            if loaded.note:
                self.report.partial.append(Skipped(pending.path, loaded.note))
        self.dirty = True
        batch.items.clear()
        batch.n_inputs = 0
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
) -> IndexReport:
    """Bring ``index`` up to date with the files under ``paths`` (files or folders).

    Bad files are skipped with a reason in the report; nothing here raises for bad input.

    Raises:
        NotFound: a path does not exist (nothing is changed then).
        EncoderMismatch: ``index`` was built with another encoder.
        DiskFull: a write ran out of space; ``index`` is back at its last checkpoint.
    """
    t0 = time.perf_counter()
    index.require_encoder(encoder.id)
    roots = resolve_roots(paths)
    report = IndexReport(roots=roots, workers=max(0, settings.workers))
    config = LoaderConfig(
        preprocess_image=encoder.preprocess_image,
        max_image_pixels=settings.max_image_pixels,
        max_text_chars=settings.max_text_chars,
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
        stale_before, audio_ok=lambda: _audio_supported(encoder),
    )
    try:
        # before any file: the server checks every read against these (search.access)
        record_roots(index.catalog, roots, settings.follow_links)
        with Workers(settings.workers, config) as workers:
            pending, changed = scan(
                roots, index, settings, workers, report,
                audio_ok=lambda: _audio_supported(encoder), progress=_bar if progress else None,
                stale_before=stale_before,
            )
            writer.dirty = changed
            report.scan_seconds = time.perf_counter() - t0
            bar = _bar(len(pending), "indexing") if progress and pending else None
            _embed_all(pending, workers, writer, bar)
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


def _drop_sound(loaded: Loaded) -> None:
    """Leave a video's sound windows out (the encoder has no audio model)."""
    kinds = loaded.input_kinds()
    keep = [i for i, kind in enumerate(kinds) if kind != "audio"]
    loaded.inputs = [loaded.inputs[i] for i in keep]
    loaded.segments = [loaded.segments[i] for i in keep]
    loaded.kinds = [kinds[i] for i in keep]


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
            usable = modality not in ("audio", "video") or _audio_supported(encoder)
            fingerprint = encoder.fingerprint(modality) if usable else None
            cache[modality] = 0.0 if fingerprint is None else index.stale_before(modality, fingerprint)
        return cache[modality]

    return since


def _audio_supported(encoder: Encoder) -> bool:
    """Audio is indexed only when the encoder has an audio model and search.audio exists.
    Asked per audio file (the encoder keeps its audio model once loaded), so image and text
    runs never load the audio model."""
    if importlib.util.find_spec("search.audio") is None:
        return False
    try:
        return encoder.supports("audio")
    except Exception as exc:  # a broken audio head must not stop image and text indexing
        log.warning("audio encoder unavailable, audio files will be skipped: %s", exc)
        return False

