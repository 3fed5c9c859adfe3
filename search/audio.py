"""Audio decoding, preprocessing and windowing, shared by the indexer, the engine and training.

Every waveform crossfind handles is float32, 16 kHz, mono. Files are decoded with soundfile
(wav, flac, ogg, and mp3 with libsndfile >= 1.1); other containers (m4a ...) go through
audioread when it has a backend (ffmpeg, GStreamer), else they are refused with
``UnsupportedMedia`` naming the fix.

Preprocessing, in this order:

* downmix to mono and resample to 16 kHz (soxr, streamed block by block for files);
* trim leading/trailing silence: 32 ms frames more than ``TRIM_TOP_DB`` below the loudest
  frame (the rule of ``librosa.effects.trim``, in numpy, streamed for files); window times stay
  in the original file's timeline;
* loudness normalisation, per window, to ``TARGET_RMS_DB`` (gain capped at ``MAX_GAIN_DB``) —
  done inside the audio head (``search.encoders.audio.normalize_loudness``) so every caller gets it, and only where
  the checkpoint was trained that way: the shipped one keeps recorded levels (its training copy
  is 8-bit, and gain on quiet clips made quantisation noise a cue).

Silent input (peak below ``SILENCE_PEAK``) and zero-length input are refused with
``UnsupportedMedia`` ("nothing to index"): a vector of silence would only add noise to every
search, and the indexer records the reason as a skip.
"""

from __future__ import annotations

import io
import math
import os
import tempfile
from collections.abc import Generator, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from search.deadline import NO_DEADLINE, Deadline
from search.encoders.base import AUDIO_SAMPLE_RATE, l2_normalize
from search.errors import UnsupportedMedia
from search.native_output import native_stderr_to_log

if TYPE_CHECKING:
    from search.encoders.base import Encoder

SR = AUDIO_SAMPLE_RATE
TRIM_TOP_DB = 60.0
SILENCE_PEAK = 1e-4  # -80 dBFS: below this the whole input counts as silent
BLOCK_FRAMES = 1 << 16  # frames per decoded block when streaming a file
MAX_CHANNELS = 1024  # libsndfile's own limit; audioread's readers take any header's word
_TRIM_FRAME_S = 0.032
_SOUNDFILE_EXT = {".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff", ".au", ".w64", ".opus"}


@dataclass(frozen=True)
class AudioWindow:
    """One window of a recording: times in the original file, 16 kHz mono samples."""

    start_s: float
    end_s: float
    samples: np.ndarray


# -- whole-clip decoding ----------------------------------------------------------------------
def decode_audio_bytes(data: bytes, max_s: float | None = None) -> np.ndarray:
    """Encoded audio bytes -> float32 16 kHz mono (untrimmed); only the first ``max_s``
    seconds when given (see ``decode_audio_prefix``).

    Raises:
        UnsupportedMedia: empty, corrupt or undecodable data.
    """
    return decode_audio_prefix(data, max_s)[0]


def decode_audio_prefix(
    data: bytes, max_s: float | None, deadline: Deadline = NO_DEADLINE
) -> tuple[np.ndarray, bool]:
    """(float32 16 kHz mono of at most the first ``max_s`` seconds, True if there was more).

    Decoding stops at the cap: a one-hour file costs what its first ``max_s`` seconds cost,
    whichever decoder reads it (libsndfile frame by frame, audioread's ffmpeg process closed
    as soon as enough blocks came). ``deadline`` is checked between blocks.

    Raises:
        UnsupportedMedia: empty, corrupt or undecodable data.
        RequestTimeout: the deadline passed.
    """
    if not data:
        raise UnsupportedMedia("the audio is empty (0 bytes)")
    import soundfile as sf

    try:
        # libmpg123 prints to fd 2 on opening a truncated MP3 and on its bad frames
        with native_stderr_to_log(), sf.SoundFile(io.BytesIO(data)) as fh:
            blocks = fh.blocks(blocksize=BLOCK_FRAMES, dtype="float32", always_2d=True)
            samples, more = _read_prefix(blocks, fh.samplerate, max_s, deadline)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        samples, more = _audioread_bytes(data, exc, max_s, deadline)
    return _finish(samples, SR), more


def _read_prefix(
    blocks: Generator[np.ndarray, None, None], sr: int, max_s: float | None, deadline: Deadline
) -> tuple[np.ndarray, bool]:
    """Up to ``max_s`` seconds of the blocks as 16 kHz mono; (samples, whether the source had
    more). Each block is downmixed and resampled as it comes (soxr's stream gives the same
    samples as resampling the whole): memory holds the output, not the source, which a tiny
    FLAC of many channels at a high rate can make hundreds of MB (README, "Query limits")."""
    import soxr

    limit = None if max_s is None else max(1, int(round(max_s * sr)))
    resampler = soxr.ResampleStream(sr, SR, 1, dtype="float32") if sr != SR else None
    parts: list[np.ndarray] = []
    total = 0
    more = False

    def take(block: np.ndarray) -> None:
        mono = _to_mono(block)
        parts.append(resampler.resample_chunk(mono) if resampler else mono)

    with closing(blocks):  # closes the decoder (e.g. audioread's ffmpeg) when cut short
        for block in blocks:
            deadline.check()
            if limit is not None and total + len(block) > limit:
                take(block[: limit - total])
                more = True
                break
            take(block)
            total += len(block)
            if limit is not None and total == limit:
                more = next(blocks, None) is not None
                break
    if resampler:
        parts.append(resampler.resample_chunk(np.zeros(0, np.float32), last=True))
    samples = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    return samples, more


def load_audio(path: str | Path) -> np.ndarray:
    """An audio file -> float32 16 kHz mono (untrimmed). Raises ``UnsupportedMedia``."""
    sr, channels, blocks = _open_blocks(Path(path))
    parts = list(blocks)
    samples = np.concatenate(parts) if parts else np.zeros((0, channels), np.float32)
    return _finish(samples, sr)


def audio_duration(path: str | Path) -> float:
    """Duration in seconds, from the header where soundfile reads it, else by decoding."""
    import soundfile as sf

    try:
        with native_stderr_to_log():
            info = sf.info(str(path))
        if info.frames > 0 or info.duration:
            return float(info.frames / info.samplerate)
    except (sf.LibsndfileError, RuntimeError, TypeError):
        pass
    return len(load_audio(path)) / SR


def _finish(samples: np.ndarray, sr: int) -> np.ndarray:
    mono = _to_mono(samples)
    if mono.size == 0:
        raise UnsupportedMedia("the audio has no samples (zero length)")
    return _resample(mono, sr)


def _to_mono(samples: np.ndarray) -> np.ndarray:
    samples = np.asarray(samples, dtype=np.float32)
    mono = samples.mean(axis=1) if samples.ndim == 2 else samples
    # NaN/inf from a broken float file would poison every later step
    return np.nan_to_num(mono, nan=0.0, posinf=1.0, neginf=-1.0).astype(np.float32, copy=False)


def _resample(mono: np.ndarray, sr: int) -> np.ndarray:
    if sr == SR:
        return np.ascontiguousarray(mono, dtype=np.float32)
    import soxr

    return soxr.resample(mono, sr, SR).astype(np.float32, copy=False)


def _audioread_bytes(
    data: bytes, first_error: Exception, max_s: float | None, deadline: Deadline
) -> tuple[np.ndarray, bool]:
    with tempfile.NamedTemporaryFile(suffix=".audio", delete=False) as fh:
        fh.write(data)
        tmp = Path(fh.name)
    try:
        sr, _, blocks = _audioread_blocks(tmp, first_error)
        samples, more = _read_prefix(blocks, sr, max_s, deadline)
    except UnsupportedMedia:
        raise UnsupportedMedia(f"not decodable audio ({first_error}); send wav, flac, ogg or mp3") from None
    finally:
        tmp.unlink(missing_ok=True)
    return samples, more


# -- streaming --------------------------------------------------------------------------------
def _open_blocks(path: Path) -> tuple[int, int, Generator[np.ndarray, None, None]]:
    """(sample rate, channels, iterator of float32[n, channels] blocks) for a file."""
    import soundfile as sf

    if not path.is_file():
        raise UnsupportedMedia(f"no such audio file: {path}")
    if os.path.getsize(path) == 0:
        raise UnsupportedMedia(f"{path.name} is empty (0 bytes)")
    try:
        with native_stderr_to_log():
            info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        return _audioread_blocks(path, exc)

    def blocks() -> Generator[np.ndarray, None, None]:
        try:
            reader = sf.blocks(str(path), blocksize=BLOCK_FRAMES, dtype="float32", always_2d=True)
            try:
                while True:
                    with native_stderr_to_log():  # around each block only: the caller may print
                        block = next(reader, None)
                    if block is None:
                        return
                    yield block
            finally:
                reader.close()
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise UnsupportedMedia(f"{path.name}: corrupt audio data ({exc})") from None

    return info.samplerate, info.channels, blocks()


def _audioread_blocks(path: Path, first_error: Exception) -> tuple[int, int, Generator[np.ndarray, None, None]]:
    """Fallback decoder for containers libsndfile lacks (m4a, aac, wma ...)."""
    try:
        import audioread

        reader = audioread.audio_open(str(path))
    except Exception as exc:
        suffix = path.suffix.lower()
        if suffix in _SOUNDFILE_EXT or suffix in (".audio", ""):  # "": /proc/self/fd/N
            reason = f"corrupt or undecodable audio ({first_error})"
        else:
            reason = (
                f"no decoder for {suffix or 'this format'} ({exc.__class__.__name__}); install "
                "ffmpeg (used through audioread) or convert the file to wav/flac/ogg/mp3"
            )
        raise UnsupportedMedia(f"{path.name}: {reason}") from None
    sr, channels = int(reader.samplerate), int(reader.channels)
    if sr <= 0 or not 0 < channels <= MAX_CHANNELS:  # a header no recording has
        reader.close()
        raise UnsupportedMedia(f"{path.name}: corrupt audio header ({channels} channels at {sr} Hz)")

    def blocks() -> Generator[np.ndarray, None, None]:
        with reader:
            try:
                for buf in reader:
                    pcm = np.frombuffer(buf, dtype="<i2").astype(np.float32) / 32768.0
                    yield pcm.reshape(-1, channels)
            except Exception as exc:  # the stdlib readers behind audioread fail in many ways
                raise UnsupportedMedia(f"{path.name}: corrupt audio data ({exc})") from None

    return sr, channels, blocks()


def _trim_bounds(path: Path) -> tuple[float, float, float]:
    """First pass over a file: (start_s, end_s, duration_s) of its non-silent part, by the rule
    of ``librosa.effects.trim`` (frames within ``TRIM_TOP_DB`` of the loudest frame)."""
    sr, _, blocks = _open_blocks(path)
    frame = max(1, int(sr * _TRIM_FRAME_S))
    rms: list[np.ndarray] = []
    carry = np.zeros(0, np.float32)
    peak = 0.0
    total = 0
    for block in blocks:
        mono = np.concatenate([carry, _to_mono(block)])
        total += len(block)
        if len(block):
            peak = max(peak, float(np.abs(mono).max()))
        n = len(mono) // frame
        if n:
            rms.append(_frame_rms(mono[: n * frame], frame))
        carry = mono[n * frame :]
    if len(carry):
        rms.append(_frame_rms(carry, frame))
    if total == 0:
        raise UnsupportedMedia(f"{path.name} has no samples (zero length)")
    if peak < SILENCE_PEAK:
        raise UnsupportedMedia(f"{path.name} is silent (peak below -80 dBFS); nothing to index")
    first, last = _loud_span(np.concatenate(rms))
    duration = total / sr
    return first * frame / sr, min(duration, last * frame / sr), duration


def _frame_rms(x: np.ndarray, frame: int) -> np.ndarray:
    """RMS of consecutive ``frame``-sample frames (the last one may be shorter)."""
    n = len(x) // frame
    levels = np.sqrt(np.mean(x[: n * frame].reshape(n, frame).astype(np.float64) ** 2, axis=1))
    if len(x) > n * frame:
        levels = np.append(levels, np.sqrt(np.mean(x[n * frame :].astype(np.float64) ** 2)))
    return levels


def _loud_span(levels: np.ndarray) -> tuple[int, int]:
    """[first, last) frame within ``TRIM_TOP_DB`` of the loudest one (librosa's trim rule)."""
    loud = np.flatnonzero(levels >= levels.max() * 10 ** (-TRIM_TOP_DB / 20))
    return int(loud[0]), int(loud[-1]) + 1


def window_spans(start_s: float, end_s: float, window_s: float, hop_s: float) -> list[tuple[float, float]]:
    """Window (start, end) times covering [start_s, end_s]: hop-spaced full windows, plus one
    window flush with the end when the hops leave a tail; one short window for a short clip."""
    if end_s - start_s <= window_s:
        return [(start_s, end_s)]
    n = int(math.floor((end_s - start_s - window_s) / hop_s + 1e-9)) + 1
    spans = [(start_s + i * hop_s, start_s + i * hop_s + window_s) for i in range(n)]
    if spans[-1][1] < end_s - 1e-6:
        spans.append((end_s - window_s, end_s))
    return spans


def iter_windows(path: str | Path, window_s: float = 5.0, hop_s: float = 2.5) -> Iterator[AudioWindow]:
    """Stream a file's windows (16 kHz mono), after trimming its silent ends.

    Two passes over the file (levels for the trim, then samples), each decoding one block at a
    time and resampling it with a streaming resampler, so memory holds about one window plus
    one block whatever the file's length.

    Raises:
        UnsupportedMedia: undecodable, zero-length or silent files.
    """
    import soxr

    path = Path(path)
    start_s, end_s, _ = _trim_bounds(path)
    spans = window_spans(start_s, end_s, window_s, hop_s)
    sr, _, blocks = _open_blocks(path)
    resampler = soxr.ResampleStream(sr, SR, 1, dtype="float32") if sr != SR else None
    buf = np.zeros(0, np.float32)
    buf_start = 0  # absolute 16 kHz sample index of buf[0]
    i = 0

    def emit(final: bool) -> Iterator[AudioWindow]:
        nonlocal buf, buf_start, i
        while i < len(spans):
            a, b = (round(t * SR) for t in spans[i])
            if b > buf_start + len(buf) and not final:
                break
            samples = buf[max(0, a - buf_start) : max(0, b - buf_start)].copy()
            yield AudioWindow(float(spans[i][0]), float(spans[i][1]), samples)
            i += 1
            if i < len(spans):  # drop what no later window needs
                keep_from = round(spans[i][0] * SR) - buf_start
                if keep_from > 0:
                    buf, buf_start = buf[keep_from:], buf_start + keep_from

    for block in blocks:
        mono = _to_mono(block)
        out = resampler.resample_chunk(mono) if resampler else mono
        buf = np.concatenate([buf, out])
        yield from emit(final=False)
        if i >= len(spans):
            return
    if resampler:
        buf = np.concatenate([buf, resampler.resample_chunk(np.zeros(0, np.float32), last=True)])
    yield from emit(final=True)


# -- in-memory clips --------------------------------------------------------------------------
def trim_silence(waveform: np.ndarray) -> tuple[np.ndarray, float]:
    """(trimmed waveform, offset of its first sample in seconds): the rule of
    ``librosa.effects.trim`` in numpy (librosa's first call costs seconds of JIT compiling).

    Raises:
        UnsupportedMedia: zero-length or silent input.
    """
    waveform = np.asarray(waveform, dtype=np.float32).reshape(-1)
    if waveform.size == 0:
        raise UnsupportedMedia("the audio has no samples (zero length)")
    if float(np.abs(waveform).max()) < SILENCE_PEAK:
        raise UnsupportedMedia("the audio is silent (peak below -80 dBFS)")
    frame = int(SR * _TRIM_FRAME_S)
    first, last = _loud_span(_frame_rms(waveform, frame))
    a, b = first * frame, min(len(waveform), last * frame)
    return waveform[a:b], a / SR


def windows_of(waveform: np.ndarray, window_s: float = 5.0, hop_s: float = 2.5) -> list[AudioWindow]:
    """An in-memory 16 kHz clip -> its windows after trimming (times relative to the clip)."""
    trimmed, offset = trim_silence(waveform)
    spans = window_spans(float(offset), float(offset) + len(trimmed) / SR, window_s, hop_s)
    return [
        AudioWindow(a, b, trimmed[round((a - offset) * SR) : round((b - offset) * SR)])
        for a, b in spans
    ]


def embed_clip(
    encoder: Encoder,
    waveform: np.ndarray,
    window_s: float = 5.0,
    hop_s: float = 2.5,
    deadline: Deadline = NO_DEADLINE,
    batch: int = 2,
) -> np.ndarray:
    """One vector for a whole clip (a query): window it, encode ``batch`` windows at a time
    (``deadline`` checked between batches), mean, renormalise.

    Raises:
        UnsupportedMedia: zero-length or silent clip.
        ModalityNotSupported: the encoder has no audio head.
        RequestTimeout: the deadline passed.
    """
    windows = [w.samples for w in windows_of(waveform, window_s, hop_s)]
    total = np.zeros(0, np.float32)
    for i in range(0, len(windows), batch):
        deadline.check()
        vectors = encoder.encode_audio(windows[i : i + batch])
        total = vectors.sum(axis=0) if i == 0 else total + vectors.sum(axis=0)
    return l2_normalize(total / len(windows))[0]
