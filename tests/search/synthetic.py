"""Small real indexes (SQLite or PostgreSQL catalog + FAISS) over hand-made vectors, for known answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from search.catalog import SegmentIn
from search.encoders.base import l2_normalize
from search.engine import Engine
from search.index import Index
from tests.fakes import FakeEncoder


def add_item(
    index: Index,
    vector: np.ndarray,
    path: str,
    modality: str = "image",
    *,
    text: str | None = None,
    size: int = 100,
    mtime_ns: int = 1,
    duration_s: float | None = None,
) -> int:
    """One content with one segment and one file; returns the segment id."""
    _, ids = index.catalog.add_content(
        f"sha-{path}",
        modality,
        size,
        [SegmentIn(text=text, char_start=0 if text else None, char_end=len(text) if text else None)],
        [(path, size, mtime_ns)],
        duration_s=duration_s,
    )
    index.add_vectors(ids, l2_normalize(vector))
    return ids[0]


def basis(dim: int, i: int) -> np.ndarray:
    v = np.zeros(dim, dtype=np.float32)
    v[i] = 1.0
    return v


def engine_over(tmp_path: Path, dim: int = 32, catalog_url: str | None = None,
                store: str | None = None) -> tuple[Engine, Index, FakeEncoder]:
    """A writable index (SQLite catalog, or PostgreSQL at ``catalog_url``) and its engine.
    ``store``: a ``--store`` spec (default faiss:auto); ``"milvus"`` is a Milvus Lite file in
    ``tmp_path``."""
    enc = FakeEncoder(dim=dim)
    if store == "milvus":
        store = f"milvus:{tmp_path / 'vectors.db'}"
    index = Index.open_for_write(tmp_path, enc.id, enc.dim, store=store, catalog_url=catalog_url)
    return Engine(index, enc), index, enc
