"""The vector store interface: add / remove / search / save / load / count.

A store maps int64 ids to L2-normalised vectors and answers inner-product (cosine) queries.
Callers never touch the backend; a second backend plugs in through ``search.store.create_store``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class StoreFilter:
    """A filter the store evaluates itself (a Milvus boolean expression), passed to ``search``
    as ``allowed`` in place of an id list by stores whose ``pushdown`` is true."""

    expr: str


class VectorStore(ABC):
    dim: int
    pushdown = False  # whether ``search`` takes a ``StoreFilter`` (see ``search.filters``)

    @abstractmethod
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors under the given int64 ids (ids must be new)."""

    def _batch(self, ids: np.ndarray, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``add``'s arguments as contiguous int64 / float32[n, dim], or ValueError."""
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ValueError(f"vectors must be [n, {self.dim}], got {vectors.shape}")
        return ids, vectors

    @abstractmethod
    def remove(self, ids: np.ndarray) -> int:
        """Remove ids that exist; returns how many were removed."""

    @abstractmethod
    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None, *, rerank: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by inner product: (scores float32[nq, k], ids int64[nq, k]); missing = -1.

        ``allowed`` restricts the search to those ids (a filter), returning up to k of them.
        ``rerank=False``: a store with lossy codes may skip re-scoring them exactly (a cheap
        candidate probe); others ignore it.
        """

    @abstractmethod
    def ids(self) -> np.ndarray:
        """All ids held, int64."""

    @abstractmethod
    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of ``ids`` (float32[n, dim])."""

    def vectors(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(the ids held, their vectors) in the order asked; ids not held are left out, so a
        caller holding ids from a newer or older catalog state never fails on them."""
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        held = ids[np.isin(ids, self.ids())]
        return held, self.reconstruct(held)

    @abstractmethod
    def count(self) -> int:
        """Number of vectors held."""

    @abstractmethod
    def save(self, path: Path) -> None:
        """Write atomically: a crash leaves either the old or the new file, never half of one."""

    @classmethod
    @abstractmethod
    def load(cls, path: Path) -> VectorStore:
        """Read a file written by ``save``."""
