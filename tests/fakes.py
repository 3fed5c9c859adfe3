"""A deterministic fake encoder for engine and indexer logic (the edge we fake)."""

from __future__ import annotations

import functools
import hashlib
import os
import re
import time
from collections.abc import Sequence

import numpy as np

from search.encoders.base import Encoder, l2_normalize


@functools.lru_cache(maxsize=65536)  # pure: cached so that big test corpora embed fast
def word_vector(word: str, dim: int) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(word.lower().encode()).digest()[:8], "little")
    vector = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    vector.flags.writeable = False  # shared by the cache
    return vector


class FakeEncoder(Encoder):
    """Bag-of-words text vectors; images by their mean colour mapped onto colour words;
    audio by its loudest frequency band mapped onto band words."""

    def __init__(self, dim: int = 32, id: str = "fake") -> None:
        self.dim = dim
        self.id = id

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in re.findall(r"\w+", t):
                out[i] += word_vector(w, self.dim)
        return l2_normalize(out)

    def preprocess_image(self, image) -> np.ndarray:
        return np.asarray(image.resize((8, 8)), dtype=np.float32).mean(axis=(0, 1)) / 255.0

    def encode_image_arrays(self, arrays: np.ndarray) -> np.ndarray:
        names = ("red", "green", "blue")
        return l2_normalize(
            np.stack([word_vector(names[int(np.argmax(a))], self.dim) for a in arrays])
        )

    def audio_head(self) -> FakeAudioHead:
        return FakeAudioHead(self.dim)


class FakeAudioHead:
    id = "fake-audio"

    def __init__(self, dim: int) -> None:
        self.dim = dim

    def encode(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        out = []
        for w in waveforms:
            spec = np.abs(np.fft.rfft(w[:16000] if len(w) else np.zeros(16)))
            band = "low" if np.argmax(spec) < len(spec) / 8 else "high"
            out.append(word_vector(band, self.dim))
        return l2_normalize(np.stack(out)) if out else np.zeros((0, self.dim), np.float32)


class SlowFakeEncoder(FakeEncoder):
    """A FakeEncoder whose model calls take ``delay_s``: gives crash tests time to kill a run."""

    def __init__(self, delay_s: float = 0.0) -> None:
        super().__init__()
        self.delay_s = delay_s

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        time.sleep(self.delay_s)
        return super().encode_text(texts)

    def encode_image_arrays(self, arrays: np.ndarray) -> np.ndarray:
        time.sleep(self.delay_s)
        return super().encode_image_arrays(arrays)


class DyingFakeEncoder(FakeEncoder):
    """A FakeEncoder whose process dies (``os._exit``) on its first image batch, once: the
    first to create ``marker`` dies, every later one (a restarted Ray actor) works."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = marker

    def encode_image_arrays(self, arrays: np.ndarray) -> np.ndarray:
        try:
            os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return super().encode_image_arrays(arrays)
        os._exit(1)


def register() -> None:
    """Register the ``fake`` encoder family (``fake``, ``fake:delay_ms=N`` or
    ``fake:die_once=MARKER``) so the real CLI, or a Ray worker, can run on it in another
    process: ``CROSSFIND_EXTRA_ENCODERS=tests.fakes:register``."""
    from search.encoders import register_encoder

    def factory(spec: str, _cache_dir: object) -> FakeEncoder:
        if spec.startswith("die_once="):
            return DyingFakeEncoder(spec.removeprefix("die_once="))
        _, _, delay_ms = spec.partition("delay_ms=")
        return SlowFakeEncoder(float(delay_ms or 0) / 1000)

    register_encoder("fake", factory, "tests only: deterministic bag-of-words/colour vectors")



def register_bundled_torch() -> None:
    """Register ``bundled-torch``: the real bundled encoder with its text model loaded through
    sentence-transformers every time (as where the ONNX export is unavailable), so a CLI run
    in a subprocess meets that loader's output."""
    from search.encoders import register_encoder
    from search.encoders.bundled import BundledEncoder

    def factory(_spec: str, cache_dir: object) -> BundledEncoder:
        return BundledEncoder(cache_dir=cache_dir, text_backend="torch")

    register_encoder("bundled-torch", factory, "tests only: bundled, text model on torch")
