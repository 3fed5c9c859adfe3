"""Vector stores behind one interface, chosen by ``create_store``.

``FaissStore`` is one FAISS index under ids; ``LayeredStore`` (what an index serves from) is a
sealed ANN base plus an exact tail over the catalog's durable vectors; ``StoreSpec`` parses
``--store backend:spec``.
"""

from __future__ import annotations

from pathlib import Path

from search.store.base import VectorStore
from search.store.faiss_store import FaissStore
from search.store.spec import BACKENDS, StoreOptions, StoreSpec

_BACKENDS = set(BACKENDS)


def create_store(dim: int, backend: str = "faiss", factory: str = "Flat") -> VectorStore:
    """A new empty store. ``factory`` is the backend's index description (FAISS factory string)."""
    if backend == "faiss":
        return FaissStore(dim, factory=factory)
    raise ValueError(f"unknown vector store backend {backend!r}; known: {sorted(_BACKENDS)}")


def load_store(path: Path, backend: str = "faiss") -> VectorStore:
    if backend == "faiss":
        return FaissStore.load(path)
    raise ValueError(f"unknown vector store backend {backend!r}; known: {sorted(_BACKENDS)}")


__all__ = ["StoreOptions", "StoreSpec", "VectorStore", "create_store", "load_store"]
