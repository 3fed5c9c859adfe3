"""An index directory: the catalog (rows *and* vectors: the SQLite file here, or a PostgreSQL
database its manifest names), a manifest, and a derived vector index.

Crash-consistent by construction: a segment's vector is committed in the same SQLite
transaction as its row (``Catalog.add_contents(items, vectors)``), and deleting a row deletes
its vector and leaves a tombstone (triggers). Whatever a reader sees — after a ``kill -9``
anywhere, mid-write, on a full disk — every visible row has its vector.

The FAISS index is derived: a sealed base file (``ann-<gen>.faiss`` + ids, named in the
catalog's ``ann`` meta row with the id and tombstone it was built at) plus an exact tail read
from the catalog, with deleted ids masked (``search.store.layered``). Checkpoints therefore
write only what changed (the rows' own transactions); ``compact`` folds the tail into the base
when it grows past a fraction of it, and rebuilds the base when deletes pile up or ``faiss:auto``
moves to a bigger index. Readers catch up from the catalog on open and on ``refresh``.

Indexes made before vectors moved into the catalog (``vectors.faiss``, schema 1) are migrated
on first open.

With ``--store milvus:<uri>`` the derived index is a Milvus collection instead, kept in step
with the catalog by ``search.store.milvus_sync`` (on open, at checkpoints).

A full disk is a write that fails, not a crash: SQLite rolls the batch's transaction back, a
vector index file is written under a temp name that is removed, and ``rollback`` reloads the
writer's in-memory store from what is durable. Nothing committed before is lost.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import select

from search import dialect
from search.atomic import temp_path, write_atomically
from search.catalog import Catalog, NewContent, Vector
from search.errors import (
    BadRequest,
    Conflict,
    DamagedStore,
    DiskFull,
    EncoderMismatch,
    IndexLocked,
    NotFound,
    is_disk_full,
)
from search.store import ann, milvus_sync
from search.store.layered import LayeredStore
from search.store.milvus_store import MilvusStore
from search.store.spec import DEFAULT_SPEC, StoreOptions, StoreSpec, auto_factory, min_train

log = logging.getLogger(__name__)

MANIFEST = "index.json"
VECTORS = "vectors.faiss"  # schema 1's store file; migrated into the catalog on open
CATALOG = "catalog.sqlite3"
LOCK = "write.lock"
ANN_META = "ann"


@dataclass
class Manifest:
    encoder: str
    dim: int
    backend: str = "faiss"
    factory: str = "Flat"  # the store spec: "auto", "Flat" or a FAISS factory string
    created_at: float = 0.0
    # a PostgreSQL catalog's URL without its password; "": the SQLite file in the folder
    catalog: str = ""

    @classmethod
    def read(cls, path: Path) -> Manifest:
        """Raises Conflict (naming the fix) when the file is damaged or not a manifest."""
        try:
            manifest = cls(**json.loads(path.read_text()))
        except (ValueError, TypeError) as exc:  # JSON, UTF-8 and field errors alike
            raise Conflict(
                f"the index at {path.parent} has an unreadable {path.name} ({str(exc)[:200]}); "
                "restore it, or rebuild the index with --reindex"
            ) from None
        return manifest

    def write(self, path: Path) -> None:
        write_atomically(path, lambda fh: fh.write(json.dumps(self.__dict__, indent=2).encode()))

    @property
    def spec(self) -> StoreSpec:
        return StoreSpec(self.backend, self.factory)


@dataclass
class _Loaded:
    """A reader's position in the catalog's history."""

    ann_raw: str | None
    seq: int
    version: int


class Index:
    """Open with ``Index.open`` (readers) or ``Index.open_for_write`` (one writer at a time)."""

    def __init__(self, root: Path, manifest: Manifest, catalog: Catalog,
                 options: StoreOptions | None = None) -> None:
        self.root = root
        self.manifest = manifest
        self.catalog = catalog
        if options is None:
            from search.settings import get_settings

            options = StoreOptions.from_settings(get_settings())
        self.options = options
        self._lock_fd: int | None = None
        self._repaired = {"orphan_vectors": 0, "rows_without_vectors": 0}
        self.store: LayeredStore | MilvusStore
        if manifest.backend == "milvus":
            self.store = milvus_sync.open_store(root, manifest.factory, manifest.dim, catalog, options)
            self._state = _Loaded(None, 0, catalog.version())
        else:
            self.store, self._state = self._load_store()
        self._refresh_lock = threading.Lock()

    # -- opening ------------------------------------------------------------------------------
    @classmethod
    def exists(cls, root: Path) -> bool:
        return (Path(root) / MANIFEST).exists()

    @classmethod
    def open(cls, root: Path, encoder: str | None = None, catalog_url: str | None = None) -> Index:
        """Open an existing index for reading. ``encoder``, when given, must match;
        ``catalog_url``, when given, must name the index's own catalog (it may add the
        password the folder does not record)."""
        root = Path(root)
        if not cls.exists(root):
            raise NotFound(f"no crossfind index at {root}; build one with `crossfind index PATH --db {root}`")
        manifest = Manifest.read(root / MANIFEST)
        _check_encoder(root, manifest, encoder)
        catalog = Catalog(dialect.resolve(root / CATALOG, manifest.catalog, catalog_url, exists=True))
        try:
            if catalog.schema_version < 2:
                _migrate_locked(root, manifest, catalog)
            index = cls(root, manifest, catalog)
        except BaseException:
            catalog.close()
            raise
        if isinstance(index.store, MilvusStore):
            _or_close(index, index._milvus_repair_if_unwritten)
        return index

    @classmethod
    def open_for_write(
        cls,
        root: Path,
        encoder: str,
        dim: int,
        *,
        reindex: bool = False,
        store: str | StoreSpec | None = None,
        options: StoreOptions | None = None,
        catalog_url: str | None = None,
    ) -> Index:
        """Open or create an index for writing: takes the write lock, migrates and reconciles.

        ``store`` (``backend:spec``, e.g. ``faiss:auto``) sets the vector index of a new index,
        or switches an existing one (its derived index is rebuilt from the stored vectors by the
        next ``compact``); None keeps the index's own (``faiss:auto`` for a new one).
        ``catalog_url`` (``postgresql://...``) puts a new index's catalog (or, with
        ``reindex``, a rebuilt one's) in that database; for an existing index it must name
        its own. One writer per catalog: a PostgreSQL catalog also takes an advisory lock.

        Raises:
            EncoderMismatch: the index was built with another encoder and ``reindex`` is off.
            IndexLocked: another process is writing.
            BadRequest: ``store`` is not a valid spec.
            DiskFull: no room for the manifest or the catalog.
        """
        root = Path(root)
        spec = StoreSpec.parse(store) if isinstance(store, str) else store
        root.mkdir(parents=True, exist_ok=True)
        lock_fd = _take_lock(root)
        try:
            recorded = _recorded_catalog(root, reindex) if cls.exists(root) else ""
            if reindex and catalog_url:  # rebuilt wherever asked
                target = dialect.resolve(root / CATALOG, "", catalog_url, exists=False)
            else:
                target = dialect.resolve(root / CATALOG, recorded, catalog_url, exists=cls.exists(root))
            if reindex and target.postgres:
                _reset_postgres(root, target)
            if reindex:
                # the manifest goes last: a crash midway leaves the old manifest over an empty
                # or partial index (reconcile repairs it), never a new manifest over old vectors
                for path in _derived_files(root):
                    path.unlink(missing_ok=True)
                for name in (VECTORS, CATALOG, CATALOG + "-wal", CATALOG + "-shm", MANIFEST):
                    (root / name).unlink(missing_ok=True)
                shutil.rmtree(root / "thumbnails", ignore_errors=True)
            switched_from = None
            if cls.exists(root):
                manifest = Manifest.read(root / MANIFEST)
                _check_encoder(root, manifest, encoder)
                spec = _recorded(spec, root, manifest.spec) if spec is not None else None
                if spec is not None and spec != manifest.spec:
                    if spec.backend != manifest.backend:
                        switched_from = manifest.backend
                    manifest.backend, manifest.factory = spec.backend, spec.spec
                    manifest.write(root / MANIFEST)
            else:
                spec = _recorded(spec or StoreSpec.parse(DEFAULT_SPEC), root, None)
                manifest = Manifest(encoder, dim, spec.backend, spec.spec, time.time(),
                                    target.public if target.postgres else "")
                manifest.write(root / MANIFEST)
            catalog = Catalog(target)
            try:
                if not catalog.lock_writer():
                    raise _locked_by_another(target)
                if catalog.schema_version < 2:
                    _migrate(root, manifest, catalog)
                repaired = _reconcile_rows(catalog)
                if switched_from is not None:
                    _leave_store(root, catalog, switched_from)
                try:
                    index = cls(root, manifest, catalog, options)
                except DamagedStore as exc:
                    # derived from the stored vectors: set aside, and filled again from them
                    log.warning("%s; rebuilding it from the stored vectors", exc.why)
                    _discard_damaged(root, catalog, manifest.backend, Path(str(exc.path)))
                    index = cls(root, manifest, catalog, options)
            except BaseException:
                catalog.close()
                raise
        except BaseException as exc:
            os.close(lock_fd)
            if is_disk_full(exc):
                _remove_temps(root)
                raise DiskFull.writing(root) from exc
            raise
        index._lock_fd = lock_fd
        index._repaired = repaired
        if isinstance(index.store, MilvusStore):
            _or_close(index, index._milvus_catch_up)
        return index

    def close(self) -> None:
        if isinstance(self.store, MilvusStore):
            self.store.close()
        self.catalog.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the derived vector index -------------------------------------------------------------
    def _load_store(self) -> tuple[LayeredStore, _Loaded]:
        """The base named by the ``ann`` meta row plus every vector and tombstone after it,
        read in one snapshot (retried if a compaction lands in between)."""
        dim = self.manifest.dim

        def source(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return self.catalog.get_vectors(ids, dim)

        for _ in range(20):
            raw = self.catalog.get_meta(ANN_META)
            meta = json.loads(raw) if raw else None
            base = None
            if meta is not None:
                path = self.root / meta["file"]
                try:
                    base = ann.AnnBase.load(path, meta["factory"], meta["params"])
                except FileNotFoundError:
                    if self.catalog.get_meta(ANN_META) != raw:
                        continue  # replaced by a newer one since the meta row was read
                    raise _damaged(path, "it is missing") from None
                except (RuntimeError, ValueError, EOFError) as exc:
                    raise _damaged(path, str(exc).splitlines()[0][:200]) from None
                if base.index.d != dim:
                    raise _damaged(path, f"it holds {base.index.d}-d vectors but {self.root / MANIFEST} says {dim}-d")
            upto = int(meta["upto_id"]) if meta else 0
            changes = self.catalog.vector_changes(dim, upto, int(meta["tomb_seq"]) if meta else 0)
            if changes.ann != raw:
                continue
            store = LayeredStore(dim, base, source, rerank=bool(meta.get("rerank", True)) if meta else True)
            store.add(changes.ids, changes.vectors)
            store.remove(changes.deleted)
            return store, _Loaded(raw, changes.last_seq, changes.version)
        raise Conflict(f"the index at {self.root} kept changing while being opened; try again")

    def refresh(self) -> bool:
        """Catch up with a writer's commits (readers only). True if anything changed."""
        if self._lock_fd is not None:
            return False
        if self.catalog.version() == self._state.version:
            return False
        if isinstance(self.store, MilvusStore):  # Milvus is shared: only the id list moves
            version = self.catalog.version()
            self.store.adopt_ids(self.catalog.ids_where(select(Vector.id)))
            self._state = _Loaded(None, 0, version)
            return True
        # concurrent searches (the server) go on over the current store while one thread
        # catches a copy up and swaps it in; the others wait for that copy
        with self._refresh_lock:
            if self.catalog.version() == self._state.version:
                return False
            changes = self.catalog.vector_changes(self.manifest.dim, self.store.max_id, self._state.seq)
            if changes.ann != self._state.ann_raw:  # a new base was written: load it
                self.store, self._state = self._load_store()
                return True
            store = self.store.clone()
            store.add(changes.ids, changes.vectors)
            store.remove(changes.deleted)
            self.store, self._state = store, _Loaded(changes.ann, changes.last_seq, changes.version)
            return True

    def compact(self, *, force: bool = False) -> str | None:
        """Fold the exact tail into the base, or rebuild the base, when the policy says so
        (see the module docstring); ``force``: whenever anything is pending. Writers only.
        Returns what was done ("rebuilt" / "folded") or None.

        Raises:
            DiskFull: (from ``checkpoint``) no room for the new file; the last one stays.
        """
        if self._lock_fd is None:
            raise Conflict("only the writer compacts the index")
        if isinstance(self.store, MilvusStore):
            self._milvus_catch_up(opening=False)
            return "rebuilt" if self.store.ensure_index() else None
        store, options = self.store, self.options
        n = store.count()
        target = self._target_factory(n)
        if target is None:
            return None
        base = store.base
        masked_in_base = len(store.masked) if base is not None else 0
        tail = len(store.tail_ids)
        folding_limit = 0 if force else max(options.compact_min, options.compact_fraction * (base.n if base else 0))
        if base is None:
            full = target != "Flat" or tail > folding_limit
        else:
            full = base.factory != target or masked_in_base > options.compact_fraction * base.n or (
                force and masked_in_base > 0)
        if full:
            self._rebuild(target)
            return "rebuilt"
        if base is not None and tail > folding_limit and tail:
            base.add(store.tail_ids, store.tail_vectors)
            self._publish(base, tomb_seq=json.loads(self._state.ann_raw or "{}").get("tomb_seq", 0))
            return "folded"
        return None

    def _target_factory(self, n: int) -> str | None:
        spec = self.manifest.spec
        if spec.backend != "faiss":
            raise BadRequest(f"vector store backend {spec.backend!r} is not available here")
        factory = auto_factory(n, self.manifest.dim, self.options) if spec.auto else spec.spec
        if n < max(1, min_train(factory)):
            return None  # not enough vectors to train it well: the exact tail serves meanwhile
        return factory

    def _layered(self) -> LayeredStore:
        """The store of a FAISS index (the paths that build and publish FAISS bases)."""
        assert isinstance(self.store, LayeredStore)
        return self.store

    def _rebuild(self, factory: str) -> None:
        top = self._layered().max_id
        seq = self.catalog.vector_changes(self.manifest.dim, top, 0).last_seq
        ids, vectors = ann.chunks_to_arrays(
            self.catalog.iter_vectors(self.manifest.dim, 0, top), self.manifest.dim
        )
        try:
            base = ann.build(factory, self.manifest.dim, ids, vectors, self.options)
        except RuntimeError as exc:
            raise BadRequest(
                f"FAISS cannot build {factory!r} over {len(ids)} {self.manifest.dim}-d vectors "
                f"({str(exc).strip().splitlines()[-1][:160]}); pick another --store"
            ) from None
        del vectors
        self._publish(base, tomb_seq=seq)
        self.catalog.prune_tombstones(seq)

    def _publish(self, base: ann.AnnBase, tomb_seq: int) -> None:
        """Write ``base`` under a new generation, point the catalog at it, drop old files."""
        old = json.loads(self._state.ann_raw) if self._state.ann_raw else None
        gen = (old["gen"] + 1) if old else 1
        name = f"ann-{gen:06d}.faiss"
        base.save(self.root / name)
        store = self._layered()
        # every vector up to here is in the base or was deleted (masked by tombstones)
        upto = max(store.max_id, int(base.ids[-1]) if base.n else 0)
        meta = {
            "gen": gen, "file": name, "factory": base.factory, "params": base.params,
            "upto_id": upto,
            "tomb_seq": int(tomb_seq), "count": base.n, "rerank": self.options.rerank,
            "built_at": time.time(),
        }
        raw = json.dumps(meta, sort_keys=True)
        self.catalog.set_meta_and_bump(ANN_META, raw)
        store.rerank = self.options.rerank
        store.replace_base(base, keep_tail_after=upto)
        self._state = _Loaded(raw, self._state.seq, self._state.version)
        for path in _derived_files(self.root):
            if path.name not in (name, ann.ids_file(self.root / name).name):
                path.unlink(missing_ok=True)

    def checkpoint(self) -> None:
        """Rows and vectors are durable at each commit already; this folds the exact tail into
        the base when it has grown past ``compact_fraction`` of it (writes proportional to
        the change in between)."""
        if self._lock_fd is None:
            return
        try:
            self.compact()
        except Exception as exc:
            if not is_disk_full(exc):
                raise
            self.rollback()
            raise DiskFull.writing(self.root) from exc

    def finish(self) -> None:
        """End of a writing run: compact by the same policy (readers then open fast)."""
        self.checkpoint()
        self.catalog.refresh_statistics()
        if isinstance(self.store, MilvusStore) and self._lock_fd is not None:
            self.store.flush()  # sealed segments get their index (the memtable is searched raw)

    # -- Milvus -------------------------------------------------------------------------------
    def _milvus_catch_up(self, opening: bool = True) -> None:
        assert isinstance(self.store, MilvusStore)
        done = milvus_sync.catch_up(self.store, self.catalog, self.manifest.dim, self.manifest.factory,
                                    opening=opening)
        if any(done.values()):
            log.info("milvus caught up with the catalog at %s: %s", self.root, done)

    def _milvus_repair_if_unwritten(self) -> None:
        """A reader after a crash: if no writer holds the index, bring Milvus up to the
        catalog (idempotent); while one writes, it does that itself."""
        try:
            fd = _take_lock(self.root)
        except (IndexLocked, OSError):  # a writer is busy, or a read-only folder
            assert isinstance(self.store, MilvusStore)
            self.store.adopt_ids(self.catalog.ids_where(select(Vector.id)))  # not a scan of Milvus
            return
        try:
            self._milvus_catch_up()
        finally:
            os.close(fd)

    def rollback(self) -> None:
        """After a write failed for lack of space (writers only): drop temp files and reload
        the in-memory store from what is durable (the failed batch's transaction was rolled
        back by SQLite; a half-folded base is discarded). Nothing committed before is lost."""
        _remove_temps(self.root)
        if isinstance(self.store, MilvusStore):  # the failed batch never reached Milvus
            self.store.adopt_ids(self.catalog.ids_where(select(Vector.id)))
            return
        self.store, self._state = self._load_store()

    # -- writes -------------------------------------------------------------------------------
    def add_contents(self, items: list[NewContent], vectors: np.ndarray) -> list[tuple[int, list[int]]]:
        """Rows and their vectors in one transaction, then into the in-memory store."""
        written = self.catalog.add_contents(items, vectors)
        ids = np.asarray([i for _, seg_ids in written for i in seg_ids], dtype=np.int64)
        if isinstance(self.store, MilvusStore):
            self.store.add(ids, vectors, milvus_sync.content_fields(items))
        else:
            self.store.add(ids, vectors)
        return written

    def add_vectors(self, segment_ids: list[int], vectors: np.ndarray) -> None:
        """Vectors of segments already in the catalog (durable at once)."""
        ids = np.asarray(segment_ids, dtype=np.int64)
        if isinstance(self.store, MilvusStore):
            if np.isin(ids, self.store.ids()).any():
                raise ValueError("vector ids must be new and distinct")
            self.catalog.put_vectors(ids.tolist(), vectors)
            self.store.add(ids, vectors, milvus_sync.segment_fields(self.catalog, ids))
            return
        if len(ids) and int(ids.min()) <= self.store.max_id:
            raise ValueError("vector ids must be new and distinct")
        self.catalog.put_vectors(ids.tolist(), vectors)
        self.store.add(ids, vectors)

    def remove_segments(self, segment_ids: list[int]) -> None:
        """Mask the vectors of segments whose rows were deleted (the catalog dropped the
        durable vectors with the rows)."""
        if segment_ids:
            self.store.remove(np.asarray(segment_ids, dtype=np.int64))

    def reconcile(self) -> dict[str, int]:
        """What opening for write repaired (rows without vectors, vectors without rows)."""
        return dict(self._repaired)

    # -- readers ------------------------------------------------------------------------------
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
        if isinstance(self.store, MilvusStore):
            return self._info(counts, f"milvus:{self.store.index_type}", {
                "factory": self.store.index_type, **self.store.index_params,
                "uri": self.store.uri, "collection": self.store.collection,
                "indexed": self.store.count(),
            })
        base = self.store.base
        in_use = base.factory if base is not None else "Flat"
        return self._info(counts, f"{self.manifest.backend}:{in_use}", {
            "factory": in_use,
            **(base.params if base is not None else {}),
            "indexed": base.n if base is not None else 0,
            "exact_tail": len(self.store.tail_ids),
            "deleted_masked": len(self.store.masked),
            "rerank": bool(base is not None and base.lossy and self.store.rerank),
        })

    def _info(self, counts: dict[str, object], store: str, params: dict[str, object]) -> dict[str, object]:
        return {
            "items": counts["items"],
            "vectors": self.store.count(),
            "encoder": self.manifest.encoder,
            "dim": self.manifest.dim,
            "by_modality": counts["by_modality"],
            "contents": counts["contents"],
            # the index serving searches now (what "store" always meant); the spec it follows
            "store": store,
            "store_spec": str(self.manifest.spec),
            "store_params": params,
            "models": self.models(),
            "path": str(self.root),
            # "sqlite", or the PostgreSQL catalog's URL without its password
            "catalog": self.manifest.catalog or "sqlite",
        }


def _recorded_catalog(root: Path, reindex: bool) -> str:
    """The catalog URL the manifest records; with ``reindex`` a damaged manifest records none
    (it is rebuilt: into the SQLite file, or wherever --catalog says)."""
    try:
        return Manifest.read(root / MANIFEST).catalog
    except Conflict:
        if not reindex:
            raise
        return ""


def _check_encoder(root: Path, manifest: Manifest, encoder: str | None) -> None:
    if encoder is not None and encoder != manifest.encoder:
        raise EncoderMismatch(
            f"the index at {root} was built with encoder {manifest.encoder!r}, not {encoder!r}; "
            f"pass --model {manifest.encoder} to use it, or --reindex to rebuild it with {encoder!r}"
        )


def _or_close(index: Index, step: Callable[[], object]) -> None:
    """One more step of opening ``index``; if it fails, the index is closed before the error
    goes on (no lock, connection or Milvus Lite file is left held)."""
    try:
        step()
    except BaseException:
        index.close()
        raise


def _recorded(spec: StoreSpec, root: Path, current: StoreSpec | None) -> StoreSpec:
    """``spec`` as the manifest records it: a Milvus Lite file inside the index folder relative
    to it; a server without ``#collection`` keeps the current one, or gets a new unique name
    (several indexes may share one server)."""
    if spec.backend != "milvus":
        return spec
    from search.store.milvus_spec import is_server, record_spec, resolve_spec, split_spec

    uri, name = split_spec(spec.spec)
    if (name is None and current is not None and current.backend == "milvus"
            and split_spec(resolve_spec(current.spec, root))[0] == uri):
        return current
    if name is None and is_server(uri):
        import uuid

        name = f"crossfind_{uuid.uuid4().hex[:12]}"
    return StoreSpec("milvus", record_spec(uri + (f"#{name}" if name else ""), root))


def _leave_store(root: Path, catalog: Catalog, backend: str) -> None:
    """After a switch of store: what the old backend derived is stale (deletes since are not
    in it), so its files go and its meta row is cleared; the new one is filled from the catalog."""
    if backend == "milvus":
        milvus_sync.forget(catalog)
    else:  # the meta row first: a reader never reads a name whose file is already gone
        if catalog.get_meta(ANN_META):
            catalog.set_meta(ANN_META, "")
        for path in _derived_files(root):
            path.unlink(missing_ok=True)


def _damaged(path: Path, why: str) -> DamagedStore:
    return DamagedStore(path, f"the vector index file {path} is unreadable ({why})")


def _discard_damaged(root: Path, catalog: Catalog, backend: str, path: Path) -> None:
    """A writer met a derived store it cannot read: FAISS base files go (the next compact builds
    one); a Milvus Lite folder is moved aside (kept, not deleted) and refilled from the catalog."""
    if backend == "milvus":
        path.rename(path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}"))
    _leave_store(root, catalog, backend)


def _derived_files(root: Path) -> list[Path]:
    return sorted(root.glob("ann-*.faiss*"))


def _reconcile_rows(catalog: Catalog) -> dict[str, int]:
    """Rows whose vector is missing (an older crossfind's crash, or a caller that wrote rows
    alone) are dropped with their whole content, so the next run embeds those files again;
    vectors without rows are deleted. Two anti-joins on primary keys: no scan of Python ids."""
    missing = catalog.rows_without_vectors()
    dropped = 0
    if len(missing):
        contents = {info.content_id for info in catalog.segments(missing.tolist()).values()}
        dropped = len(catalog.remove_contents(contents))
    orphans = catalog.vectors_without_rows()
    if len(orphans):
        catalog.delete_vectors(orphans.tolist())
    return {"orphan_vectors": len(orphans), "rows_without_vectors": dropped}


def _migrate_locked(root: Path, manifest: Manifest, catalog: Catalog) -> None:
    """A reader met a schema-1 index: migrate it under the write lock, or say why not."""
    try:
        fd = _take_lock(root)
    except IndexLocked:
        raise Conflict(
            f"the index at {root} predates stored vectors and is being written by another "
            "process; open it again when that finishes, or rebuild it with --reindex"
        ) from None
    try:
        if catalog.schema_version < 2:
            _migrate(root, manifest, catalog)
    finally:
        os.close(fd)


def _migrate(root: Path, manifest: Manifest, catalog: Catalog) -> None:
    """Schema 1 -> 2: copy the vectors of ``vectors.faiss`` into the catalog (rows that had
    none are then dropped by reconcile, as schema 1's own repair did), then retire the file.

    Raises:
        Conflict: the old file is unreadable or holds vectors FAISS cannot give back (names
            --reindex).
    """
    from search.store.faiss_store import FaissStore

    legacy = root / VECTORS
    if legacy.exists():
        try:
            old = FaissStore.load(legacy)
        except RuntimeError as exc:
            raise Conflict(
                f"the vector file {legacy} is unreadable ({str(exc).splitlines()[0][:200]}); "
                "rebuild the index with --reindex"
            ) from None
        if old.dim != manifest.dim:
            raise Conflict(
                f"the vector file {legacy} holds {old.dim}-d vectors but {root / MANIFEST} says "
                f"{manifest.dim}-d; rebuild the index with --reindex"
            )
        rows = set(catalog.segment_ids().tolist())
        ids = np.array(sorted(set(old.ids().tolist()) & rows), dtype=np.int64)
        have = catalog.get_vectors(ids, manifest.dim)[0]
        ids = np.setdiff1d(ids, have)
        try:
            for start in range(0, len(ids), 50_000):
                chunk = ids[start : start + 50_000]
                catalog.put_vectors(chunk.tolist(), old.reconstruct(chunk))
        except (KeyError, RuntimeError):
            raise Conflict(
                f"the vectors in {legacy} cannot be read back ({old.factory}); rebuild the index "
                "with --reindex"
            ) from None
    _reconcile_rows(catalog)  # rows schema 1 left without vectors (its crash state)
    catalog.set_meta("schema_version", "2")
    legacy.unlink(missing_ok=True)
    log.info("migrated %s to stored vectors", root)


def _remove_temps(root: Path) -> None:
    """The temp files of atomic writes that failed (a full disk leaves them partial)."""
    temp_path(root / MANIFEST).unlink(missing_ok=True)
    for path in root.glob("ann-*.tmp"):
        path.unlink(missing_ok=True)


def _locked_by_another(target: dialect.CatalogTarget) -> IndexLocked:
    return IndexLocked(
        f"another crossfind process is writing to the catalog {target.public}; wait for it to finish"
    )


def _reset_postgres(root: Path, target: dialect.CatalogTarget) -> None:
    """``--reindex`` of a PostgreSQL catalog: its tables go (under its writer lock)."""
    old = Catalog(target)
    try:
        if not old.lock_writer():
            raise _locked_by_another(target)
        dialect.drop_postgres_catalog(target)
    finally:
        old.close()


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
