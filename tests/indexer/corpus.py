"""Small generated files for indexer tests: real images, texts, sounds and hostile files."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from tests.fakes import FakeEncoder

COLOURS = {"red": (220, 20, 30), "green": (30, 200, 40), "blue": (20, 40, 230)}


def image(path: Path, colour: str = "red", size: tuple[int, int] = (64, 48), seed: int = 0) -> Path:
    """A photo-like image of a dominant colour (noise so that each seed gives other bytes)."""
    rng = np.random.default_rng(seed)
    base = np.array(COLOURS[colour], dtype=np.float32)
    pixels = np.clip(base + rng.normal(0, 12, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".txt": "PNG", ".gif": "GIF",
           ".webp": "WEBP", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF"}[path.suffix.lower()]
    Image.fromarray(pixels).save(path, fmt)
    return path


def text(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body, encoding="utf-8")
    return path


def wav(path: Path, freq: float = 440.0, seconds: float = 1.0, sr: int = 16_000) -> Path:
    import soundfile as sf

    t = np.arange(int(seconds * sr)) / sr
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), sr)
    return path


def truncated_mp3(path: Path, seconds: float = 10.0, sr: int = 16_000) -> Path:
    """The first half of an MP3 whose Xing header still counts the whole stream (libmpg123
    warns on it). Skips the test where libsndfile cannot write MP3 (it can from 1.1)."""
    import pytest
    import soundfile as sf

    if "MP3" not in sf.available_formats():
        pytest.skip(f"libsndfile {sf.__libsndfile_version__} cannot write MP3 (needs >= 1.1)")
    t = np.arange(int(seconds * sr)) / sr
    buf = io.BytesIO()
    sf.write(buf, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), sr, format="MP3")
    data = buf.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data[: len(data) // 2])
    return path


def png_bomb(path: Path, side: int = 20_000) -> Path:
    """A 1-bit ``side`` x ``side`` PNG of zeros: a few tens of KB on disk, 400 Mpx decoded.
    Written by hand, streaming, so building it never holds the pixels in memory."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte + packed bits
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1-bit greyscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


class CountingEncoder(FakeEncoder):
    """FakeEncoder that counts what it embeds, per modality (inputs, not calls)."""

    def __init__(self, audio: bool = True) -> None:
        super().__init__()
        self.audio = audio
        self.embedded = {"text": 0, "image": 0, "audio": 0}

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        self.embedded["text"] += len(texts)
        return super().encode_text(texts)

    def encode_image_arrays(self, arrays: np.ndarray) -> np.ndarray:
        self.embedded["image"] += len(arrays)
        return super().encode_image_arrays(arrays)

    def encode_audio(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        self.embedded["audio"] += len(waveforms)
        return super().encode_audio(waveforms)

    def audio_head(self):
        return super().audio_head() if self.audio else None
