"""A small real index (real files, SQLite, FAISS) embedded with the fake encoder, and the app
over it."""

from __future__ import annotations

import hashlib
import io
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw

from search.catalog import SegmentIn
from search.engine import Engine
from search.index import Index
from search.settings import Settings
from tests.fakes import FakeEncoder
from web.app import create_app

API_KEY = "test-key-123"

TEXTS = {
    "apples.txt": "Fresh red apples in a wicker basket on the kitchen table, ready for a pie.",
    "ocean.txt": "The blue ocean meets the sky; waves roll over the sand at sunset.",
    "forest.txt": "A green forest trail winds between tall pines and mossy rocks.",
    "notes.txt": "<script>alert('x')</script> meeting notes about apples and budgets",
}
COLOURS = {"red.png": (220, 30, 30), "green.png": (30, 200, 40), "blue.jpg": (30, 40, 220)}
TONES = {"low.wav": 120.0, "high.wav": 5000.0}


def png_bytes(
    colour: tuple[int, int, int], size: tuple[int, int] = (64, 48), fmt: str = "PNG"
) -> bytes:
    image = Image.new("RGB", size, colour)
    ImageDraw.Draw(image).ellipse(
        (8, 8, size[0] - 8, size[1] - 8), outline=(255, 255, 255), width=3
    )
    buf = io.BytesIO()
    image.save(buf, fmt)
    return buf.getvalue()


def wav_bytes(freq: float, seconds: float = 6.0, sr: int = 16000) -> bytes:
    t = np.arange(int(seconds * sr)) / sr
    pcm = (0.5 * np.sin(2 * np.pi * freq * t) * 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


@dataclass
class Corpus:
    files: Path
    db: Path
    ids: dict[str, int]  # file name -> first segment id


def _add(
    index: Index,
    enc: FakeEncoder,
    path: Path,
    modality: str,
    segs: list[SegmentIn],
    vectors: np.ndarray,
    **extra: object,
) -> int:
    data = path.read_bytes()
    st = path.stat()
    _, ids = index.catalog.add_content(
        hashlib.sha256(data).hexdigest(),
        modality,
        len(data),
        segs,
        [(str(path), st.st_size, st.st_mtime_ns)],
        **extra,
    )
    index.add_vectors(ids, vectors)
    return ids[0]


def build_corpus(root: Path) -> Corpus:
    """Write the files and index them the way the indexer does (rows, then vectors, then a
    checkpoint)."""
    files, db = root / "files", root / "db"
    files.mkdir(parents=True)
    enc = FakeEncoder()
    ids: dict[str, int] = {}
    index = Index.open_for_write(db, enc.id, enc.dim)
    for name, text in TEXTS.items():
        (files / name).write_text(text)
        seg = SegmentIn(text=text, char_start=0, char_end=len(text))
        ids[name] = _add(index, enc, files / name, "text", [seg], enc.encode_text([text]))
    for name, colour in COLOURS.items():
        (files / name).write_bytes(
            png_bytes(colour, fmt="JPEG" if name.endswith(".jpg") else "PNG")
        )
        image = Image.open(files / name).convert("RGB")
        ids[name] = _add(
            index,
            enc,
            files / name,
            "image",
            [SegmentIn()],
            enc.encode_image([image]),
            width=image.width,
            height=image.height,
        )
    for name, freq in TONES.items():
        (files / name).write_bytes(wav_bytes(freq))
        segs = [SegmentIn(start_s=0.0, end_s=5.0), SegmentIn(start_s=2.5, end_s=6.0)]
        wave_ = np.sin(2 * np.pi * freq * np.arange(16000) / 16000).astype(np.float32)
        vec = enc.encode_audio([wave_, wave_])
        ids[name] = _add(index, enc, files / name, "audio", segs, vec, duration_s=6.0)
    index.checkpoint()
    index.close()
    return Corpus(files, db, ids)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    return build_corpus(tmp_path_factory.mktemp("web-corpus"))


def make_client(db: Path, **settings: object) -> TestClient:
    enc = FakeEncoder()
    engine = Engine(Index.open(db), enc)
    app = create_app(Settings(db=db, **settings), engine=engine)
    return TestClient(app)


@pytest.fixture()
def client(corpus: Corpus):
    with make_client(corpus.db, api_key=API_KEY) as c:
        yield c


def full_disk_for_new_files(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every file made through ``tempfile.mkstemp`` from now on writes to /dev/full (ENOSPC
    from the kernel on every write), as on a full disk."""
    import os
    import tempfile

    real_mkstemp = tempfile.mkstemp

    def full_mkstemp(*args: Any, **kwargs: Any) -> tuple[int, str]:
        fd, path = real_mkstemp(*args, **kwargs)
        os.close(fd)
        return os.open("/dev/full", os.O_WRONLY), path

    monkeypatch.setattr(tempfile, "mkstemp", full_mkstemp)
