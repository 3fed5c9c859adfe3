"""Video: frames chosen by scene change and the sound track in windows, from one pass of PyAV.

One demuxing pass decodes both streams. Video frames are looked at a few times a second on a
tiny copy; a frame is kept a moment after each scene cut, and at least every
``max_frame_s`` (never closer than ``min_frame_s``). Each kept frame is embedded by the image
encoder and stands for the span until the next kept frame (``start_s``/``end_s``). The sound
track is resampled to 16 kHz mono and cut into the same windows as audio files (silent windows
are left out), embedded by the audio encoder. A file with only one of the streams indexes that
one. Memory is bounded: only the current window of samples and one frame are held, and long
videos stream through the model in the writer (``VideoStream``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

import indexer.ocr as ocr
from search.audio import SILENCE_PEAK, SR

# frames are compared this often (seconds) on a tiny colour copy
ANALYSE_EVERY_S = 0.25
# mean absolute difference (0..1) between two looks that counts as a scene cut
CUT_THRESHOLD = 0.12
# a frame is kept this long after a cut (past fades and motion blur of the cut)
SETTLE_S = 0.5
# frames are decoded to this short side before the encoder's own preprocessing
FRAME_SIDE = 448

_preprocess: Callable[[Any], np.ndarray] | None = None


def set_preprocess(preprocess: Callable[[Any], np.ndarray]) -> None:
    """The encoder's image preprocessing (set with the loader config in every process)."""
    global _preprocess
    _preprocess = preprocess


class VideoError(Exception):
    """A video that cannot be decoded; the message is the reason recorded for it."""


@dataclass(frozen=True)
class VideoParams:
    """What decoding a video needs (plain values: it travels to and from the workers), taken
    from the loader's configuration (``indexer.loaders.LoaderConfig``), where the defaults live."""

    path: str
    min_frame_s: float
    max_frame_s: float
    window_s: float
    hop_s: float
    max_frames: int
    max_windows: int
    ocr: str
    passage_words: int
    passage_overlap: int
    # frames larger than images may be (CROSSFIND_MAX_IMAGE_PIXELS) are not decoded: the sound
    # track alone is indexed, or the file is skipped when it has none
    max_frame_pixels: int


@dataclass(frozen=True)
class VideoInfo:
    width: int | None
    height: int | None
    duration_s: float | None
    has_video: bool
    has_audio: bool


def probe_video(path: str) -> VideoInfo:
    """The streams and size of a video, from its header.

    Raises:
        VideoError: not a decodable container, or neither a video nor an audio stream.
    """
    import av  # optional heavy dependency (bundles FFmpeg), loaded on use

    try:
        with av.open(path) as container:
            v = container.streams.video[0] if container.streams.video else None
            a = container.streams.audio[0] if container.streams.audio else None
            duration = container.duration / av.time_base if container.duration else None
            if v is None and a is None:
                raise VideoError("no video or audio stream in the file")
            return VideoInfo(
                v.codec_context.width if v else None, v.codec_context.height if v else None,
                duration, v is not None, a is not None,
            )
    except av.FFmpegError as exc:
        raise VideoError(f"corrupt or truncated video: {exc}") from None


@dataclass(frozen=True)
class VideoStream:
    """A long video the writer decodes and embeds a batch at a time (``Streamed``).

    ``opener``: gives the path to decode, checked on opening (a module-level function, so the
    stream travels from a worker to the writer by pickling)."""

    params: VideoParams
    opener: Callable[[str], AbstractContextManager[str]]
    notes: list[str] = field(default_factory=list, compare=False)  # of the last pass

    def inputs(self) -> Iterator[tuple[str, Any, dict]]:
        self.notes.clear()
        with self.opener(self.params.path) as readable:
            yield from iter_inputs(replace(self.params, path=readable), self.notes)

    def note(self) -> str | None:
        return "; ".join(self.notes) or None


def iter_inputs(p: VideoParams, notes: list[str] | None = None) -> Iterator[tuple[str, Any, dict]]:
    """(encoder kind, input, segment fields) for the kept frames (and the text read off
    them), and the sound windows, in decoding order. Decoding stops once every stream is past
    its cap (``max_frames``, ``max_windows``); ``notes`` gets why the video was indexed only
    in part.

    Raises:
        VideoError: the file cannot be decoded (at open or part way).
    """
    import av

    try:
        container = av.open(p.path)
    except av.FFmpegError as exc:
        raise VideoError(f"corrupt or truncated video: {exc}") from None
    with container:
        streams: list[Any] = [*_video_within_cap(container, p), *container.streams.audio[:1]]
        if not streams:
            raise VideoError("no video or audio stream in the file")
        for s in streams:
            s.thread_type = "AUTO"
        frames = _FramePicker(p)
        sound = _SoundWindows(p)
        has_video = any(isinstance(s, av.VideoStream) for s in streams)
        has_sound = any(isinstance(s, av.AudioStream) for s in streams)
        over = None  # frames past the pixel cap met part way (the header gave a smaller size)
        try:
            for frame in container.decode(*streams):
                if isinstance(frame, av.VideoFrame):
                    if frame.width * frame.height > p.max_frame_pixels:
                        over = _over_cap(frame.width, frame.height, p) + f" from {frame.time or 0:.0f} s"
                        break
                    yield from frames.push(frame)
                else:
                    yield from sound.push(frame)
                if (frames.capped_at is not None or not has_video) and (
                    sound.capped_at is not None or not has_sound
                ):
                    break  # nothing more would be kept: a long video is not decoded to its end
        except av.FFmpegError as exc:
            if not frames.kept and not sound.emitted:
                raise VideoError(f"corrupt or truncated video: {exc}") from None
            # a truncated tail: what decoded before it is indexed
        if over is not None and not frames.kept and not sound.emitted:
            raise VideoError(over)
        yield from frames.finish()
        yield from sound.finish()
        if notes is not None:
            if over is not None:
                notes.append(f"{over}: the rest is not indexed")
            notes.extend(_cap_note(what, at, cap) for what, at, cap in (
                ("frames", frames.capped_at, p.max_frames),
                ("sound", sound.capped_at, p.max_windows),
            ) if at is not None)


def _cap_note(what: str, at_s: float, cap: int) -> str:
    return f"only the first {span(at_s)} of the {what} are indexed (cap of {cap:,} per video)"


def span(seconds: float) -> str:
    """A length as a note says it: "40 s", "48 min"."""
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def _video_within_cap(container: Any, p: VideoParams) -> list[Any]:
    """The first video stream, unless its frames are over the pixel cap (then none; a file
    with no other stream is refused, naming the cap)."""
    if not container.streams.video:
        return []
    v = container.streams.video[0]
    w, h = v.codec_context.width or 0, v.codec_context.height or 0
    if w * h <= p.max_frame_pixels:
        return [v]
    if not container.streams.audio:
        raise VideoError(_over_cap(w, h, p))
    return []


def _over_cap(w: int, h: int, p: VideoParams) -> str:
    return f"video frames of {w}x{h} are over the cap of {p.max_frame_pixels:,} pixels (CROSSFIND_MAX_IMAGE_PIXELS)"


class _FramePicker:
    """Keeps a frame per scene (see the module docstring) and closes each frame's span."""

    def __init__(self, p: VideoParams) -> None:
        self.p = p
        self.last_look: float | None = None
        self.last_tiny: np.ndarray | None = None
        self.scene_start = 0.0
        self.scene_kept = False
        self.last_kept = -1e9
        self.kept = 0
        self.open: list[dict] = []  # segments of the last kept frame, until the next one
        self.last_frame: Any = None
        self.end_s = 0.0
        self.capped_at: float | None = None  # where the last kept frame's span ends, once capped

    def push(self, frame: Any) -> Iterator[tuple[str, Any, dict]]:
        t = float(frame.time or 0.0)
        if self.capped_at is not None:
            return
        self.end_s = max(self.end_s, t)
        if self.last_look is not None and t - self.last_look < ANALYSE_EVERY_S:
            return
        self.last_look = t
        tiny = frame.to_ndarray(width=32, height=18, format="rgb24").astype(np.float32) / 255.0
        if self.last_tiny is None:
            self.scene_start = t
        elif float(np.abs(tiny - self.last_tiny).mean()) > CUT_THRESHOLD:
            self.scene_start, self.scene_kept = t, False
        self.last_tiny = tiny
        self.last_frame = frame
        since = t - self.last_kept
        new_scene = not self.scene_kept and t - self.scene_start >= SETTLE_S
        if (new_scene and since >= self.p.min_frame_s) or since >= self.p.max_frame_s:
            start = self.scene_start if new_scene else t
            if self.kept >= self.p.max_frames:  # the last kept frame's span ends here
                self.capped_at = self.end_s = start
                return
            yield from self._keep(frame, max(start, self.last_kept if self.kept else 0.0), t)

    def _keep(self, frame: Any, start: float, t: float) -> Iterator[tuple[str, Any, dict]]:
        for seg in self.open:
            seg["end_s"] = start
        self.scene_kept, self.last_kept = True, t
        self.kept += 1
        image = _frame_image(frame)
        assert _preprocess is not None, "set_preprocess() first"
        segment = {"stream": "frame", "start_s": round(start, 3), "end_s": None}
        self.open = [segment]
        yield "image", np.ascontiguousarray(_preprocess(image), dtype=np.float32), segment
        for seg in ocr.passage_segments(
            np.asarray(image), self.p.ocr, self.p.passage_words, self.p.passage_overlap,
            stream="frame", start_s=round(start, 3), end_s=None,
        ):
            self.open.append(seg)
            yield "text", seg["text"], seg

    def finish(self) -> Iterator[tuple[str, Any, dict]]:
        if not self.kept and self.last_frame is not None:  # shorter than the settling time
            yield from self._keep(self.last_frame, 0.0, self.end_s)
        for seg in self.open:
            seg["end_s"] = round(max(self.end_s, seg["start_s"]), 3)


def _frame_image(frame: Any) -> Any:
    """The frame as an RGB PIL image, its short side at most FRAME_SIDE."""
    w, h = frame.width, frame.height
    scale = min(1.0, FRAME_SIDE / max(1, min(w, h)))
    return frame.to_image(width=max(2, round(w * scale)), height=max(2, round(h * scale)))


class _SoundWindows:
    """The sound track resampled to 16 kHz mono, cut into windows as audio files are."""

    def __init__(self, p: VideoParams) -> None:
        import av

        self.p = p
        self.resampler = av.AudioResampler(format="flt", layout="mono", rate=SR)
        self.buf = np.zeros(0, np.float32)
        self.buf_start = 0  # sample index of buf[0] on the 16 kHz timeline
        self.origin: float | None = None  # time of the first sample
        self.next_start = 0  # sample index where the next window starts
        self.emitted = 0
        self.total = 0
        self.last_end = 0.0  # of the last window emitted
        self.capped_at: float | None = None  # set once a window is past max_windows

    def push(self, frame: Any) -> Iterator[tuple[str, Any, dict]]:
        if self.origin is None:
            self.origin = float(frame.time or 0.0)
        for out in self.resampler.resample(frame):
            yield from self._add(out.to_ndarray().reshape(-1).astype(np.float32, copy=False))

    def _add(self, samples: np.ndarray) -> Iterator[tuple[str, Any, dict]]:
        self.buf = np.concatenate([self.buf, samples])
        self.total += len(samples)
        win, hop = round(self.p.window_s * SR), round(self.p.hop_s * SR)
        while self.next_start + win <= self.buf_start + len(self.buf):
            yield from self._window(self.next_start, self.next_start + win)
            self.next_start += hop
            drop = self.next_start - self.buf_start
            if drop > 0:
                self.buf, self.buf_start = self.buf[drop:], self.buf_start + drop

    def _window(self, a: int, b: int) -> Iterator[tuple[str, Any, dict]]:
        if self.capped_at is not None:
            return
        samples = self.buf[a - self.buf_start : b - self.buf_start].copy()
        if samples.size == 0 or float(np.abs(samples).max()) < SILENCE_PEAK:
            return  # silence says nothing: no vector
        origin = self.origin or 0.0
        if self.emitted >= self.p.max_windows:  # the sound up to the last window's end is in
            self.capped_at = self.last_end
            return
        self.emitted += 1
        self.last_end = round(origin + b / SR, 3)
        yield "audio", samples, {"stream": "sound", "start_s": round(origin + a / SR, 3),
                                 "end_s": self.last_end}

    def finish(self) -> Iterator[tuple[str, Any, dict]]:
        if self.origin is None:
            return
        for out in self.resampler.resample(None):
            yield from self._add(out.to_ndarray().reshape(-1).astype(np.float32, copy=False))
        win = round(self.p.window_s * SR)
        end = self.total
        full = self.next_start > 0  # at least one full window was cut
        last_end = self.next_start - round(self.p.hop_s * SR) + win if full else 0
        if end > last_end + SR // 10:  # a tail (or a clip shorter than one window)
            yield from self._window(max(0, end - win, self.buf_start), end)
