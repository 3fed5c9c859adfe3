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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image as PILImage

from indexer.sniff import HEAD_BYTES, classify
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
    passage_words: int = 120
    passage_overlap: int = 30
    audio_window_s: float = 5.0
    audio_hop_s: float = 2.5
    # windows kept per recording (1440 = the first hour at a 2.5 s hop)
    max_audio_windows: int = 1440
    # a recording with more windows than this is not decoded here: the writer streams it
    # window batch by window batch, so memory stays bounded however long it is (~0.3 MB a window)
    stream_audio_after: int = 24


_config: LoaderConfig | None = None


def set_config(config: LoaderConfig) -> None:
    global _config
    _config = config


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
    streamed: StreamedAudio | None = None  # a long recording the writer decodes itself


@dataclass(frozen=True)
class StreamedAudio:
    """A long recording left for the writer to decode and embed a batch of windows at a time."""

    path: str
    window_s: float
    hop_s: float
    max_windows: int

    def windows(self) -> Iterator[AudioWindow]:
        return itertools.islice(iter_windows(self.path, self.window_s, self.hop_s), self.max_windows)


def probe(path: str) -> Probe | Skip:
    """Read a file once: its sha256 and the kind of its first bytes."""
    digest = hashlib.sha256()
    head = b""
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                if not head:
                    head = chunk[:HEAD_BYTES]
                digest.update(chunk)
    except OSError as exc:
        return Skip(path, f"unreadable: {exc.strerror or exc}")
    verdict = classify(path, head)
    return Probe(path, digest.hexdigest(), verdict.modality, verdict.kind, verdict.reason)


def probe_many(paths: list[str]) -> list[Probe | Skip]:
    return [probe(p) for p in paths]


def load(path: str, modality: str) -> Loaded | Skip:
    """Decode one file of ``modality`` into encoder inputs; any failure is a ``Skip``."""
    assert _config is not None, "set_config() first"
    try:
        if modality == "image":
            return _load_image(path, _config)
        if modality == "text":
            return _load_text(path, _config)
        if modality == "audio":
            return _load_audio(path, _config)
        return Skip(path, f"no loader for {modality}")
    except MemoryError:
        return Skip(path, "out of memory while decoding")
    except Exception as exc:  # a decoder bug on one file must not stop the run
        return Skip(path, f"failed to decode: {type(exc).__name__}: {exc}")


def _read(path: str) -> bytes | Skip:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        return Skip(path, f"unreadable: {exc.strerror or exc}")


def _load_image(path: str, cfg: LoaderConfig) -> Loaded | Skip:
    data = _read(path)
    if isinstance(data, Skip):
        return data
    try:
        image = open_image(data, cfg.max_image_pixels, cfg.image_draft_px)
    except PayloadTooLarge as exc:
        why = exc.message.removeprefix("image refused as a decompression bomb: ")
        return Skip(path, f"decompression bomb refused: {why}")
    except UnsupportedMedia as exc:
        why = exc.message.removeprefix("not a decodable image: ")
        return Skip(path, f"corrupt or truncated image: {why}")
    array = np.ascontiguousarray(cfg.preprocess_image(image), dtype=np.float32)
    return Loaded(
        path, "image", hashlib.sha256(data).hexdigest(), [array], [{}],
        *_stored_size(data, image),
    )


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
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        return Skip(path, f"unreadable: {exc.strerror or exc}")
    if size > 4 * cfg.max_text_chars:  # UTF-8 spends at most 4 bytes a character: surely over
        return Skip(path, f"text over the cap of {cfg.max_text_chars:,} characters")
    data = _read(path)
    if isinstance(data, Skip):
        return data
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
    stream = StreamedAudio(path, cfg.audio_window_s, cfg.audio_hop_s, cfg.max_audio_windows)
    try:
        windows = list(itertools.islice(stream.windows(), cfg.stream_audio_after + 1))  # capped
    except UnsupportedMedia as exc:
        return Skip(path, f"undecodable audio: {exc.message}")
    except OSError as exc:
        return Skip(path, f"unreadable: {exc.strerror or exc}")
    if not windows:
        return Skip(path, "no audio to index (silent or empty)")
    duration = _duration(path, windows[-1].end_s)
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


def window_cap_note(stream: StreamedAudio, duration_s: float) -> str | None:
    """Why a recording is indexed only in part (its windows pass the cap), or None."""
    covered = stream.hop_s * (stream.max_windows - 1) + stream.window_s
    if duration_s <= covered:
        return None
    kept = f"{covered:.0f} s" if covered < 120 else f"{covered / 60:.0f} min"
    return f"only the first {kept} of the recording are indexed (window cap)"


def _duration(path: str, seen_end_s: float) -> float:
    try:
        return audio_duration(path)
    except Exception:  # the header is unreadable but the samples decoded: use what we saw
        return seen_end_s
