"""Vector stores behind one interface, chosen by ``create_store``.

``FaissStore`` is one FAISS index under ids; ``LayeredStore`` (what a FAISS index serves from)
is a sealed ANN base plus an exact tail over the catalog's durable vectors; ``MilvusStore`` a
Milvus collection (Lite or server); ``StoreSpec`` parses ``--store backend:spec``.
"""

from __future__ import annotations

from pathlib import Path

from search.store.base import StoreFilter, VectorStore
from search.store.faiss_store import FaissStore
from search.store.spec import BACKENDS, StoreOptions, StoreSpec

_BACKENDS = set(BACKENDS)


def create_store(dim: int, backend: str = "faiss", factory: str = "Flat") -> VectorStore:
    """A new store. ``factory`` is the backend's description: a FAISS factory string, or for
    Milvus its ``uri[#collection]`` (an existing collection is opened as it is)."""
    if backend == "faiss":
        return FaissStore(dim, factory=factory)
    if backend == "milvus":
        from search.store.milvus_spec import split_spec
        from search.store.milvus_store import MilvusStore

        uri, collection = split_spec(factory)
        return MilvusStore(uri, dim, collection)
    raise ValueError(f"unknown vector store backend {backend!r}; known: {sorted(_BACKENDS)}")


def load_store(path: Path, backend: str = "faiss") -> VectorStore:
    if backend == "faiss":
        return FaissStore.load(path)
    if backend == "milvus":  # ``path``: the ``uri[#collection]``
        from search.store.milvus_store import MilvusStore

        return MilvusStore.load(path)
    raise ValueError(f"unknown vector store backend {backend!r}; known: {sorted(_BACKENDS)}")


__all__ = ["StoreFilter", "StoreOptions", "StoreSpec", "VectorStore", "create_store", "load_store"]
