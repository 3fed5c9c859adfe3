"""Work done in worker processes: probing files (hash + sniff) and decoding them into what the
encoder takes. Every failure becomes a ``Skip`` with a reason; nothing here raises for bad input.

Workers get their configuration once, from ``init_worker`` (see ``indexer.workers``); the image
preprocessing callable is inherited through ``fork``, so heavy encoder objects are never pickled.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

import numpy as np
from PIL import Image as PILImage

import indexer.ocr as ocr
import indexer.video as video
from indexer.discover import LEAVES
from indexer.documents import DocumentError, document_kind, read_document
from indexer.sniff import DOCUMENT_EXTS, HEAD_BYTES, classify
from search.access import NOT_REGULAR, NotRegular, inside, open_regular, reopen_path
from search.audio import audio_duration, iter_windows
from search.errors import PayloadTooLarge, UnsupportedMedia
from search.media import open_image  # imported before the fork so workers start warm
from search.text import decode_text, split_passages

if TYPE_CHECKING:
    from PIL.Image import Image

    from search.audio import AudioWindow

_CHUNK = 1 << 20
_EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class LoaderConfig:
    """What decoding needs: the encoder's image preprocessing and the settings' limits."""

    preprocess_image: Callable[[Image], np.ndarray]
    max_image_pixels: int = 64_000_000
    # JPEGs decode at a reduced DCT scale keeping the short side >= this: enough for encoders
    # whose input is up to ~448 px, and 4-8x faster than full decoding on camera photos
    image_draft_px: int = 448
    max_text_chars: int = 5_000_000
    max_document_s: float = 300.0  # see Settings.max_document_s
    passage_words: int = 120
    passage_overlap: int = 30
    audio_window_s: float = 5.0
    audio_hop_s: float = 2.5
    # windows kept per recording (1440 = the first hour at a 2.5 s hop)
    max_audio_windows: int = 1440
    # a recording with more windows than this is not decoded here: the writer streams it
    # window batch by window batch, so memory stays bounded however long it is (~0.3 MB a window)
    stream_audio_after: int = 24
    # text inside images, video frames and scanned PDF pages: "auto" | "on" | "off"
    ocr: str = "off"
    video_min_frame_s: float = 1.0
    video_max_frame_s: float = 10.0
    # the real paths of the roots: a file whose opened descriptor leads elsewhere (swapped for
    # a link after the walk) is not read. None: anywhere (--follow-links)
    real_roots: tuple[str, ...] | None = None


_config: LoaderConfig | None = None


def set_config(config: LoaderConfig) -> None:
    global _config
    _config = config
    video.set_preprocess(config.preprocess_image)


@dataclass(frozen=True)
class Skip:
    path: str
    reason: str


@dataclass(frozen=True)
class Probe:
    """A file's sha256 and what its content says it is."""

    path: str
    sha256: str
    modality: str | None
    kind: str
    reason: str | None = None


@dataclass
class Loaded:
    """A decoded file: the encoder's inputs, one per segment, and the segments' metadata."""

    path: str
    modality: str
    sha256: str | None  # of the bytes decoded (None for audio: streamed from the file)
    inputs: list = field(default_factory=list)  # image arrays, passage texts or audio windows
    segments: list[dict] = field(default_factory=list)  # SegmentIn fields per input
    width: int | None = None
    height: int | None = None
    duration_s: float | None = None
    note: str | None = None  # indexed, but only in part (why)
    streamed: Streamed | None = None  # a long recording or video the writer decodes itself
    # the encoder each input goes through when not all are of ``modality`` (text read off an
    # image, a video's frames and sound)
    kinds: list[str] | None = None
    # OCR done decoding this file: (images checked for text, images read, seconds)
    ocr: tuple[int, int, float] = (0, 0, 0.0)

    def input_kinds(self) -> list[str]:
        return self.kinds if self.kinds is not None else [self.modality] * len(self.inputs)


class Streamed(Protocol):
    """A long file the writer decodes and embeds a batch at a time."""

    def inputs(self) -> Iterator[tuple[str, Any, dict]]:
        """(encoder kind, encoder input, the segment's fields) in order."""
        ...

    def note(self) -> str | None:
        """Why the file is indexed only in part, where that is known once ``inputs`` ran."""
        ...


@dataclass(frozen=True)
class StreamedAudio:
    """A long recording left for the writer to decode and embed a batch of windows at a time."""

    path: str
    window_s: float
    hop_s: float
    max_windows: int
    real_roots: tuple[str, ...] | None = None

    def windows(self) -> Iterator[AudioWindow]:
        """The recording's windows, decoded from the file checked on opening (see ``_open``).

        Raises:
            UnsupportedMedia: undecodable, or no longer a regular file inside the roots.
        """
        opened = _open(self.path, self.real_roots)
        if isinstance(opened, Skip):
            raise UnsupportedMedia(opened.reason)
        with opened as fh:
            windows = iter_windows(reopen_path(fh, self.path), self.window_s, self.hop_s)
            yield from itertools.islice(_named(windows, fh, self.path), self.max_windows)

    def inputs(self) -> Iterator[tuple[str, Any, dict]]:
        for w in self.windows():
            yield "audio", w.samples, {"start_s": w.start_s, "end_s": w.end_s}

    def note(self) -> None:
        return None  # known from the duration before decoding (``window_cap_note``)


def _named(windows: Iterator[AudioWindow], fh: BinaryIO, path: str) -> Iterator[AudioWindow]:
    """``windows`` with errors naming the file rather than the descriptor path it was read by."""
    try:
        yield from windows
    except UnsupportedMedia as exc:
        by_fd = reopen_path(fh, path)
        message = exc.message.replace(by_fd, path)
        if message.startswith(f"{fh.fileno()}: "):  # the descriptor path's "name"
            message = os.path.basename(path) + message[len(str(fh.fileno())) :]
        exc.message = message
        raise


def _open(path: str, real_roots: tuple[str, ...] | None) -> BinaryIO | Skip:
    """``path`` opened for reading if it is still a regular file inside ``real_roots`` (any
    file when None). The walk checked the names; this checks the file actually opened, so a
    file or folder swapped for a link (or a FIFO, or a device) after the walk is never read."""
    try:
        fh, real = open_regular(path)
    except NotRegular:
        return Skip(path, NOT_REGULAR)
    except OSError as exc:
        return Skip(path, f"unreadable: {exc.strerror or exc}")
    if real_roots is not None and not any(inside(real, r) for r in real_roots):
        fh.close()
        return Skip(path, LEAVES)
    return fh


def _roots() -> tuple[str, ...] | None:
    return _config.real_roots if _config is not None else None


@contextmanager
def checked_path(path: str) -> Iterator[str]:
    """A path by which to decode ``path`` (its open descriptor's), checked on opening as
    ``_open`` does, for decoders that want a path (PyAV).

    Raises:
        UnsupportedMedia: no longer a regular file inside the roots, or unreadable.
    """
    opened = _open(path, _roots())
    if isinstance(opened, Skip):
        raise UnsupportedMedia(opened.reason)
    with opened as fh:
        yield reopen_path(fh, path)


def probe(path: str) -> Probe | Skip:
    """Read a file once: its sha256 and the kind of its first bytes."""
    digest = hashlib.sha256()
    head = b""
    opened = _open(path, _roots())
    if isinstance(opened, Skip):
        return opened
    try:
        with opened as fh:
            left = os.fstat(fh.fileno()).st_size
            while chunk := fh.read(_CHUNK):
                if not head:
                    head = chunk[:HEAD_BYTES]
                digest.update(chunk)
                left -= len(chunk)
                if left < 0:  # growing as we read (appended to): never chase it
                    return Skip(path, CHANGED)
    except OSError as exc:
        return Skip(path, f"unreadable: {exc.strerror or exc}")
    verdict = classify(path, head)
    return Probe(path, digest.hexdigest(), verdict.modality, verdict.kind, verdict.reason)


def probe_many(paths: list[str]) -> list[Probe | Skip]:
    return [probe(p) for p in paths]


def load(path: str, modality: str) -> Loaded | Skip:
    """Decode one file of ``modality`` into encoder inputs; any failure is a ``Skip``."""
    assert _config is not None, "set_config() first"
    before = (ocr.stats.checked, ocr.stats.read, ocr.stats.seconds)
    try:
        result = _load(path, modality, _config)
        if isinstance(result, Loaded):
            now = (ocr.stats.checked, ocr.stats.read, ocr.stats.seconds)
            result.ocr = (now[0] - before[0], now[1] - before[1], now[2] - before[2])
        return result
    except MemoryError:
        return Skip(path, "out of memory while decoding")
    except Exception as exc:  # a decoder bug on one file must not stop the run
        return Skip(path, f"failed to decode: {type(exc).__name__}: {exc}")


def _load(path: str, modality: str, cfg: LoaderConfig) -> Loaded | Skip:
    if modality == "image":
        return _load_image(path, cfg)
    if modality == "text":
        return _load_text(path, cfg)
    if modality == "audio":
        return _load_audio(path, cfg)
    if modality == "video":
        return _load_video(path, cfg)
    return Skip(path, f"no loader for {modality}")


CHANGED = "the file changed while being indexed; run again"


def _read(path: str, max_bytes: int | None = None) -> bytes | Skip:
    """The bytes of ``path`` (checked on opening, see ``_open``); a Skip over ``max_bytes``."""
    opened = _open(path, _roots())
    if isinstance(opened, Skip):
        return opened
    try:
        with opened as fh:
            if max_bytes is not None and os.fstat(fh.fileno()).st_size > max_bytes:
                return Skip(path, f"text over the cap of {max_bytes // 4:,} characters")
            return fh.read()
    except OSError as exc:
        return Skip(path, f"unreadable: {exc.strerror or exc}")


def _load_image(path: str, cfg: LoaderConfig) -> Loaded | Skip:
    data = _read(path)
    if isinstance(data, Skip):
        return data
    try:
        image = open_image(
            data, cfg.max_image_pixels, cfg.image_draft_px, reduce_above=2 * ocr.READ_SIDE
        )
    except PayloadTooLarge as exc:
        why = exc.message.removeprefix("image refused as a decompression bomb: ")
        return Skip(path, f"decompression bomb refused: {why}")
    except UnsupportedMedia as exc:
        why = exc.message.removeprefix("not a decodable image: ")
        return Skip(path, f"corrupt or truncated image: {why}")
    array = np.ascontiguousarray(cfg.preprocess_image(image), dtype=np.float32)
    loaded = Loaded(
        path, "image", hashlib.sha256(data).hexdigest(), [array], [{}],
        *_stored_size(data, image),
    )
    add_ocr_passages(loaded, np.asarray(image), cfg)
    return loaded


def add_ocr_passages(loaded: Loaded, pixels: np.ndarray, cfg: LoaderConfig) -> None:
    """Passages of the text read off an image (``--ocr``), as text inputs of ``loaded``."""
    segments = ocr.passage_segments(pixels, cfg.ocr, cfg.passage_words, cfg.passage_overlap)
    if not segments:
        return
    kinds = loaded.input_kinds()
    for seg in segments:
        loaded.inputs.append(seg["text"])
        loaded.segments.append(seg)
        kinds.append("text")
    loaded.kinds = kinds


def _stored_size(data: bytes, decoded: Image) -> tuple[int, int]:
    """The photo's full size as shown (EXIF-rotated), though it was decoded at a reduced scale."""
    try:
        with PILImage.open(io.BytesIO(data)) as header:
            w, h = header.size
            if header.getexif().get(_EXIF_ORIENTATION, 1) in (5, 6, 7, 8):  # quarter turns
                w, h = h, w
            return w, h
    except Exception:  # the pixels decoded; a quirky header only costs the stored size
        return decoded.width, decoded.height


def _load_text(path: str, cfg: LoaderConfig) -> Loaded | Skip:
    # UTF-8 spends at most 4 bytes a character: a larger text file is surely over
    ext = os.path.splitext(path)[1].lower()
    data = _read(path, None if ext in DOCUMENT_EXTS else 4 * cfg.max_text_chars)
    if isinstance(data, Skip):
        return data
    kind = document_kind(path, data[:HEAD_BYTES])
    if kind is not None:
        try:
            segments, note = read_document(
                kind, data, cfg.max_text_chars, cfg.passage_words, cfg.passage_overlap,
                ocr_pages=ocr.page_reader(cfg.ocr), max_seconds=cfg.max_document_s,
            )
        except DocumentError as exc:
            return Skip(path, str(exc))
        return Loaded(
            path, "text", hashlib.sha256(data).hexdigest(), [s["text"] for s in segments],
            segments, note=note,
        )
    try:
        text = decode_text(data)
    except UnicodeDecodeError:
        return Skip(path, "not UTF-8 text")
    if len(text) > cfg.max_text_chars:
        return Skip(path, f"text over the cap of {cfg.max_text_chars:,} characters")
    passages = [p for p in split_passages(text, cfg.passage_words, cfg.passage_overlap) if p.text]
    if not passages:
        return Skip(path, "no words in the text")
    return Loaded(
        path, "text", hashlib.sha256(data).hexdigest(),
        [p.text for p in passages],
        [{"text": p.text, "char_start": p.char_start, "char_end": p.char_end} for p in passages],
    )


def _load_audio(path: str, cfg: LoaderConfig) -> Loaded | Skip:
    stream = StreamedAudio(
        path, cfg.audio_window_s, cfg.audio_hop_s, cfg.max_audio_windows, cfg.real_roots
    )
    opened = _open(path, cfg.real_roots)  # held while decoding: the duration reads it too
    if isinstance(opened, Skip):
        return opened
    with opened as fh:
        try:
            windows = list(itertools.islice(stream.windows(), cfg.stream_audio_after + 1))
        except UnsupportedMedia as exc:
            if exc.message in (LEAVES, NOT_REGULAR):  # swapped since it was opened above
                return Skip(path, exc.message)
            return Skip(path, f"undecodable audio: {exc.message}")
        except OSError as exc:
            return Skip(path, f"unreadable: {exc.strerror or exc}")
        if not windows:
            return Skip(path, "no audio to index (silent or empty)")
        duration = _duration(reopen_path(fh, path), windows[-1].end_s)
    note = window_cap_note(stream, duration)
    if len(windows) > cfg.stream_audio_after:  # long: the writer streams it
        return Loaded(path, "audio", None, duration_s=duration, streamed=stream, note=note)
    return Loaded(
        path, "audio", None,
        [w.samples for w in windows],
        [{"start_s": w.start_s, "end_s": w.end_s} for w in windows],
        duration_s=duration,
        note=note,
    )


def _load_video(path: str, cfg: LoaderConfig) -> Loaded | Skip:
    """A short video's inputs decoded here; a long one is left to the writer to stream."""
    params = video.VideoParams(
        path=path,
        min_frame_s=cfg.video_min_frame_s,
        max_frame_s=cfg.video_max_frame_s,
        window_s=cfg.audio_window_s,
        hop_s=cfg.audio_hop_s,
        max_frames=cfg.max_audio_windows,
        max_windows=cfg.max_audio_windows,
        ocr=cfg.ocr,
        passage_words=cfg.passage_words,
        passage_overlap=cfg.passage_overlap,
        max_frame_pixels=cfg.max_image_pixels,
    )
    try:
        with checked_path(path) as readable:
            info = video.probe_video(readable)
            opened = replace(params, path=readable)
            notes: list[str] = []
            items = list(itertools.islice(video.iter_inputs(opened, notes), cfg.stream_audio_after + 1))
    except video.VideoError as exc:
        return Skip(path, str(exc))
    except UnsupportedMedia as exc:
        return Skip(path, exc.message)
    loaded = Loaded(
        path, "video", None, width=info.width, height=info.height, duration_s=info.duration_s,
        note="; ".join(notes) or None,
    )
    if len(items) > cfg.stream_audio_after:  # long: the writer streams it
        loaded.streamed = video.VideoStream(params, checked_path)
        return loaded
    if not items:
        return Skip(path, "no video to index (no frames, silent sound)")
    loaded.kinds = [kind for kind, _, _ in items]
    loaded.inputs = [value for _, value, _ in items]
    loaded.segments = [segment for _, _, segment in items]
    return loaded


def window_cap_note(stream: StreamedAudio, duration_s: float) -> str | None:
    """Why a recording is indexed only in part (its windows pass the cap), or None."""
    covered = stream.hop_s * (stream.max_windows - 1) + stream.window_s
    if duration_s <= covered:
        return None
    return f"only the first {video.span(covered)} of the recording are indexed (window cap)"


def _duration(path: str, seen_end_s: float) -> float:
    try:
        return audio_duration(path)
    except Exception:  # the header is unreadable but the samples decoded: use what we saw
        return seen_end_s
