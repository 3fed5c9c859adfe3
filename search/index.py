"""An index directory: the vector store file, the SQLite catalog and a manifest.

Write order keeps the two halves recoverable after a crash at any moment:

* adding: catalog rows commit first, vectors go to the in-memory store, and ``checkpoint``
  writes the store file atomically (temp file + rename);
* removing: catalog rows are deleted first, then the vectors.

``reconcile`` (run by every writer on open) then repairs whatever a crash left: vectors whose
rows are gone are removed; rows whose vectors never reached the store file are deleted, so the
next indexing run embeds those files again. Afterwards store ids == catalog segment ids exactly.

A full disk is a write that fails, not a crash: ``rollback`` returns the index to its last
checkpoint at once (so readers never meet rows without vectors), using the room a writer keeps
in reserve (``RESERVE``) for the catalog deletes that takes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from search.atomic import temp_path, write_atomically
from search.catalog import Catalog
from search.errors import Conflict, DiskFull, EncoderMismatch, IndexLocked, NotFound, is_disk_full
from search.store import VectorStore, create_store, load_store

MANIFEST = "index.json"
VECTORS = "vectors.faiss"
CATALOG = "catalog.sqlite3"
LOCK = "write.lock"
# room a writer holds so that undoing a batch on a full disk can still write to SQLite
RESERVE = "space.reserve"
RESERVE_BYTES = 256 * 1024


@dataclass
class Manifest:
    encoder: str
    dim: int
    backend: str = "faiss"
    factory: str = "Flat"
    created_at: float = 0.0

    @classmethod
    def read(cls, path: Path) -> Manifest:
        return cls(**json.loads(path.read_text()))

    def write(self, path: Path) -> None:
        write_atomically(path, lambda fh: fh.write(json.dumps(self.__dict__, indent=2).encode()))


class Index:
    """Open with ``Index.open`` (readers) or ``Index.open_for_write`` (one writer at a time)."""

    def __init__(self, root: Path, manifest: Manifest, store: VectorStore, catalog: Catalog):
        self.root = root
        self.manifest = manifest
        self.store = store
        self.catalog = catalog
        self._lock_fd: int | None = None
        self._store_stamp = self._vectors_stamp()
        self._refresh_lock = threading.Lock()

    # -- opening ------------------------------------------------------------------------------
    @classmethod
    def exists(cls, root: Path) -> bool:
        return (Path(root) / MANIFEST).exists()

    @classmethod
    def open(cls, root: Path, encoder: str | None = None) -> Index:
        """Open an existing index for reading. ``encoder``, when given, must match."""
        root = Path(root)
        if not cls.exists(root):
            raise NotFound(f"no crossfind index at {root}; build one with `crossfind index PATH --db {root}`")
        manifest = Manifest.read(root / MANIFEST)
        _check_encoder(root, manifest, encoder)
        return cls(root, manifest, _load_or_create_store(root, manifest), Catalog(root / CATALOG))

    @classmethod
    def open_for_write(
        cls,
        root: Path,
        encoder: str,
        dim: int,
        *,
        reindex: bool = False,
        backend: str = "faiss",
        factory: str = "Flat",
    ) -> Index:
        """Open or create an index for writing: takes the write lock and reconciles.

        Raises:
            EncoderMismatch: the index was built with another encoder and ``reindex`` is off.
            IndexLocked: another process is writing.
            DiskFull: no room for the manifest, the catalog or the reserve.
        """
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        lock_fd = _take_lock(root)
        try:
            _make_reserve(root)
            if reindex:
                # the manifest goes last: a crash midway leaves the old manifest over an empty
                # or partial index (reconcile repairs it), never a new manifest over old vectors
                for name in (VECTORS, CATALOG, CATALOG + "-wal", CATALOG + "-shm", MANIFEST):
                    (root / name).unlink(missing_ok=True)
                shutil.rmtree(root / "thumbnails", ignore_errors=True)
            if cls.exists(root):
                manifest = Manifest.read(root / MANIFEST)
                _check_encoder(root, manifest, encoder)
            else:
                manifest = Manifest(encoder, dim, backend, factory, time.time())
                manifest.write(root / MANIFEST)
            index = cls(root, manifest, _load_or_create_store(root, manifest), Catalog(root / CATALOG))
        except BaseException as exc:
            os.close(lock_fd)
            if is_disk_full(exc):
                _remove_temps(root)
                raise DiskFull.writing(root) from exc
            raise
        index._lock_fd = lock_fd
        try:
            index.reconcile()
        except BaseException:
            index.close()
            raise
        return index

    def close(self) -> None:
        self.catalog.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- consistency --------------------------------------------------------------------------
    def reconcile(self) -> dict[str, int]:
        """Make store ids and catalog segment ids agree exactly (see module docstring)."""
        store_ids = self.store.ids()
        row_ids = self.catalog.segment_ids()
        orphan_vectors = np.setdiff1d(store_ids, row_ids, assume_unique=True)
        missing = np.setdiff1d(row_ids, store_ids, assume_unique=True)
        dropped_rows = 0
        if len(missing):
            contents = {info.content_id for info in self.catalog.segments(missing.tolist()).values()}
            dropped = self.catalog.remove_contents(contents)
            dropped_rows = len(dropped)
            # segments of those contents that did reach the store leave it too
            orphan_vectors = np.union1d(orphan_vectors, np.intersect1d(store_ids, dropped))
        if len(orphan_vectors):
            self.store.remove(orphan_vectors)
        if len(orphan_vectors) or dropped_rows:
            self.checkpoint()
        return {"orphan_vectors": int(len(orphan_vectors)), "rows_without_vectors": dropped_rows}

    def checkpoint(self) -> None:
        """Write the store file atomically.

        Raises:
            DiskFull: no room for it; its temp file is removed and the last file stays.
        """
        try:
            self.store.save(self.root / VECTORS)
        except Exception as exc:
            if not is_disk_full(exc):
                raise
            _remove_temps(self.root)
            raise DiskFull.writing(self.root) from exc
        self._store_stamp = self._vectors_stamp()

    def rollback(self) -> dict[str, int]:
        """Return to the last checkpoint after a write failed for lack of space (writers only).

        The store is reloaded from its file and the catalog rows whose vectors it lacks are
        deleted (the next run embeds those files again), in room freed from the reserve. Rows
        deleted since the checkpoint may leave their vectors in the file: readers never return
        a vector without its row, and the next writer's ``reconcile`` drops them.

        Raises:
            DiskFull: not even the reserve made room for the deletes.
        """
        (self.root / RESERVE).unlink(missing_ok=True)
        _remove_temps(self.root)
        self.store = _load_or_create_store(self.root, self.manifest)
        self._store_stamp = self._vectors_stamp()
        try:
            missing = np.setdiff1d(self.catalog.segment_ids(), self.store.ids())
            dropped = 0
            if len(missing):
                contents = {i.content_id for i in self.catalog.segments(missing.tolist()).values()}
                dropped = len(self.catalog.remove_contents(contents))
        except Exception as exc:
            if is_disk_full(exc):
                raise DiskFull.writing(self.root) from exc
            raise
        with contextlib.suppress(OSError):  # still full: the next writer asks for the reserve when it opens
            _make_reserve(self.root)
        return {"rows_without_vectors": dropped}

    # -- writes -------------------------------------------------------------------------------
    def add_vectors(self, segment_ids: list[int], vectors: np.ndarray) -> None:
        self.store.add(np.asarray(segment_ids, dtype=np.int64), vectors)

    def remove_segments(self, segment_ids: list[int]) -> None:
        if segment_ids:
            self.store.remove(np.asarray(segment_ids, dtype=np.int64))

    # -- readers ------------------------------------------------------------------------------
    def refresh(self) -> bool:
        """Reload the store if a writer saved a newer file (readers only). True if reloaded."""
        if self._lock_fd is not None:
            return False
        if self._vectors_stamp() == self._store_stamp:
            return False
        # concurrent searches all see the new file at once: one loads it, the others wait for
        # that copy instead of each reading the whole file again
        with self._refresh_lock:
            stamp = self._vectors_stamp()
            if stamp == self._store_stamp:
                return False
            self.store = _load_or_create_store(self.root, self.manifest)
            self._store_stamp = stamp
            return True

    def _vectors_stamp(self) -> tuple[int, int, int]:
        """Identity of the store file. Each save renames a new file into place, so the inode
        changes even when two saves land within one coarse mtime tick."""
        try:
            st = (self.root / VECTORS).stat()
        except FileNotFoundError:
            return (0, 0, 0)
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def stale_before(self, modality: str, fingerprint: str) -> float:
        """Contents of ``modality`` created before the returned time were embedded by another
        model than ``fingerprint`` (0.0: none). A new fingerprint is recorded with the time it
        took over; indexes from before fingerprints count as made by another model."""
        key = f"model:{modality}"
        raw = self.catalog.get_meta(key)
        stored = json.loads(raw) if raw else {}
        if stored.get("fingerprint") != fingerprint:
            since = time.time() if self.catalog.has_modality(modality) else 0.0
            stored = {"fingerprint": fingerprint, "since": since}
            self.catalog.set_meta(key, json.dumps(stored))
        return float(stored["since"])

    def models(self) -> dict[str, str]:
        """modality -> fingerprint of the model that embeds it (recorded where it matters)."""
        out = {}
        for modality in ("text", "image", "audio"):
            raw = self.catalog.get_meta(f"model:{modality}")
            if raw:
                out[modality] = json.loads(raw)["fingerprint"]
        return out

    def require_encoder(self, encoder: str) -> None:
        """Raise EncoderMismatch (naming --model and --reindex) unless built with ``encoder``."""
        _check_encoder(self.root, self.manifest, encoder)

    def info(self) -> dict[str, object]:
        counts = self.catalog.counts()
        return {
            "items": counts["items"],
            "vectors": self.store.count(),
            "encoder": self.manifest.encoder,
            "dim": self.manifest.dim,
            "by_modality": counts["by_modality"],
            "contents": counts["contents"],
            "store": f"{self.manifest.backend}:{self.manifest.factory}",
            "models": self.models(),
            "path": str(self.root),
        }


def _check_encoder(root: Path, manifest: Manifest, encoder: str | None) -> None:
    if encoder is not None and encoder != manifest.encoder:
        raise EncoderMismatch(
            f"the index at {root} was built with encoder {manifest.encoder!r}, not {encoder!r}; "
            f"pass --model {manifest.encoder} to use it, or --reindex to rebuild it with {encoder!r}"
        )


def _load_or_create_store(root: Path, manifest: Manifest) -> VectorStore:
    path = root / VECTORS
    if not path.exists():
        return create_store(manifest.dim, manifest.backend, manifest.factory)
    try:
        store = load_store(path, manifest.backend)
    except RuntimeError as exc:  # FAISS cannot parse the file
        raise Conflict(
            f"the vector file {path} is unreadable ({str(exc).splitlines()[0][:200]}); rebuild "
            "the index with --reindex"
        ) from None
    if store.dim != manifest.dim:
        raise Conflict(
            f"the vector file {path} holds {store.dim}-d vectors but {root / MANIFEST} says "
            f"{manifest.dim}-d; rebuild the index with --reindex"
        )
    return store


def _remove_temps(root: Path) -> None:
    """The temp files of atomic writes that failed (a full disk leaves them partial)."""
    for name in (VECTORS, MANIFEST):
        temp_path(root / name).unlink(missing_ok=True)


def _make_reserve(root: Path) -> None:
    """Hold ``RESERVE_BYTES`` of the disk, written out (random bytes: a compressing file
    system keeps zeros in no space), so that ``rollback`` has room when the disk fills."""
    path = root / RESERVE
    try:
        if path.stat().st_size >= RESERVE_BYTES:
            return
    except FileNotFoundError:
        pass
    try:
        with open(path, "wb") as fh:
            fh.write(os.urandom(RESERVE_BYTES))
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def _take_lock(root: Path) -> int:
    fd = os.open(root / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise IndexLocked(
            f"another crossfind process is writing to {root}; wait for it to finish"
        ) from None
    return fd
