"""Decoded files -> vectors: the one embedding step, run by the writer (local executor) or by
a Ray encoder actor (``indexer.ray_embed``), so both make the same vectors the same way."""

from __future__ import annotations

import importlib.util
import logging
import time
from collections.abc import Callable, Sequence

import numpy as np

from indexer.loaders import Loaded
from search.encoders.base import Encoder

log = logging.getLogger(__name__)


class Embedder:
    """Runs ``encoder`` on decoded files ``batch_size`` inputs at a time; ``seconds`` adds up
    the time spent inside encoder calls."""

    def __init__(self, encoder: Encoder, batch_size: int, audio_ok: Callable[[], bool]) -> None:
        self.encoder, self.batch_size = encoder, max(1, batch_size)
        # without an audio model a video indexes its frames only
        self.audio_ok = audio_ok
        self.seconds = 0.0

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
        self.seconds += time.perf_counter() - t0
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
        loaded.note = loaded.note or loaded.streamed.note()
        return np.concatenate(parts) if parts else self.none()

    def none(self) -> np.ndarray:
        return np.zeros((0, self.encoder.dim), np.float32)

    def embed(self, files: Sequence[Loaded]) -> list[np.ndarray | str]:
        """Per decoded file, its vectors (one per segment) or why it cannot be indexed. Short
        files share the encoder's batches; long ones stream through it on their own."""
        out: list[np.ndarray | str] = [""] * len(files)
        for n, loaded in enumerate(files):
            if loaded.streamed is None:
                continue
            try:
                out[n] = self.stream(loaded)
            except Exception as exc:  # e.g. the file went bad between decode and embedding
                reason = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
                out[n] = f"undecodable {loaded.modality}: {reason}"
            else:
                if not loaded.segments:
                    out[n] = f"no {loaded.modality} to index (silent or empty)"
        batched = [n for n, loaded in enumerate(files) if loaded.streamed is None]
        for n in batched:
            loaded = files[n]
            if loaded.modality == "video" and not self.audio_ok():
                drop_sound(loaded)
        inputs = [x for n in batched for x in files[n].inputs]
        kinds = [k for n in batched for k in files[n].input_kinds()]
        shared = self.encode_mixed(inputs, kinds) if inputs else None
        start = 0
        for n in batched:
            size = len(files[n].inputs)
            out[n] = shared[start : start + size] if shared is not None else self.none()
            start += size
        return out


def drop_sound(loaded: Loaded) -> None:
    """Leave a video's sound windows out (the encoder has no audio model)."""
    kinds = loaded.input_kinds()
    keep = [i for i, kind in enumerate(kinds) if kind != "audio"]
    loaded.inputs = [loaded.inputs[i] for i in keep]
    loaded.segments = [loaded.segments[i] for i in keep]
    loaded.kinds = [kinds[i] for i in keep]


def audio_supported(encoder: Encoder) -> bool:
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

