"""Milvus backend: one collection of (segment id, vector, filter fields) through ``pymilvus``.

``milvus:<file>.db`` runs Milvus Lite embedded (the ``milvus-lite`` package: a pure-Python
engine serving gRPC on a thread of this process, one process per file); ``milvus:http://host:
19530`` talks to a Milvus standalone or cluster. Both go through the same ``MilvusClient``.

Besides the vector each entity holds what filters test (``Fields``), so a filter reaches Milvus
as a boolean expression (``search.filters.allowed_for``) instead of a list of ids. The file-level
fields (extension, mtime, size) are those of the content's only file; ``nfiles`` says how many
files the content had when written, and contents with several files are filtered by id.

The index type follows the collection's size like ``faiss:auto`` (``index_type_for``): FLAT
(exact) up to ``StoreOptions.exact_max`` vectors, then HNSW while the raw vectors fit the
memory budget, then IVF_SQ8. Milvus Lite builds FLAT, HNSW, HNSW_SQ, IVF_FLAT and IVF_SQ8
(not IVF_PQ, DISKANN or SCANN), so auto picks only types both engines build.
"""

from __future__ import annotations

import fcntl
import logging
import math
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from search.errors import BadRequest, DamagedStore, ServiceUnavailable
from search.store.ann import prepare_queries
from search.store.base import StoreFilter, VectorStore
from search.store.layered import _top as top_k
from search.store.milvus_spec import is_server, split_spec
from search.store.spec import StoreOptions

log = logging.getLogger(__name__)

DEFAULT_COLLECTION = "crossfind"
# Milvus answers at most this many hits per query (its topk limit)
MAX_TOPK = 16384
# rows per insert call (gRPC messages stay well under Milvus's 64 MB default)
INSERT_BATCH = 2000
# below this many allowed ids a filtered query is answered exactly from the durable vectors
EXACT_FILTER_MAX = 2048
HNSW_EF = 128
CONNECT_TIMEOUT_S = 15.0

Source = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # ids -> (ids found, vectors)


@dataclass(frozen=True)
class Fields:
    """The filter fields of one entity (one segment); file-level ones come from the content's
    first file, ``nfiles`` counts its files when written."""

    modality: str = ""
    ext: str = ""
    mtime_ns: int = 0
    size: int = 0
    duration_s: float | None = None
    nfiles: int = 0

    @classmethod
    def of(cls, modality: str, duration_s: float | None,
           files: Sequence[tuple[str, int, int]]) -> Fields:
        """From a content's modality, duration and files ``(path, size, mtime_ns)``."""
        if not files:
            return cls(modality, duration_s=duration_s)
        path, size, mtime_ns = files[0]
        return cls(modality, extension(path), int(mtime_ns), int(size), duration_s, len(files))


EXT_MAX = 64  # longer extensions are cut; filters on them go as id lists


def extension(path: str) -> str:
    """What follows the name's last dot, lower-case (``a/b.JPG`` -> ``jpg``, ``.bashrc`` ->
    ``bashrc``, none -> ""): a path ends in ``.<ext>`` exactly when this is ``ext`` (for an
    ext without dots), as the catalog's ``lower(path) LIKE '%.<ext>'`` tests."""
    name = os.path.basename(path)
    return name.rsplit(".", 1)[1].lower()[:EXT_MAX] if "." in name else ""


# what a collection has when it has no vector index (Milvus Lite then searches it exactly)
NO_INDEX = "none"


def index_type_for(n: int, dim: int, options: StoreOptions) -> tuple[str, dict[str, int]]:
    """(index type, build params) for ``n`` vectors, as ``faiss:auto`` sizes FAISS's."""
    if n <= options.exact_max:
        return "FLAT", {}
    if n * dim * 4 * 1.2 <= options.memory_mb * 2**20:  # HNSW keeps raw vectors plus its graph
        return "HNSW", {"M": 32, "efConstruction": 200}
    nlist = 2 ** max(0, min(round(math.log2(2 * math.sqrt(n))), 16))
    return "IVF_SQ8", {"nlist": nlist}


# -- Milvus Lite: one embedded server per file, shared by the stores of this process ----------
_LITE_LOCK = threading.Lock()
_LITE_USERS: dict[str, int] = {}


def _open_lite(path: str) -> None:
    """Check that no other process holds the Lite file (pymilvus only says "Open local milvus
    failed"), count this user of it."""
    folder = Path(path)
    if not folder.parent.is_dir():
        raise BadRequest(f"the folder of the Milvus Lite file {path} does not exist; create it or "
                         "pick another --store milvus:<file>.db")
    with _LITE_LOCK:
        if _LITE_USERS.get(path, 0) == 0 and (folder / "LOCK").exists():
            try:
                fd = os.open(folder / "LOCK", os.O_RDWR)
            except OSError as exc:  # e.g. a read-only mount: Lite writes even to search
                raise ServiceUnavailable(
                    f"cannot open the Milvus Lite file {path} for writing ({exc.strerror}); Milvus "
                    "Lite needs its folder writable even to search: make it writable, or copy the "
                    "index folder to a writable place"
                ) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(fd, fcntl.LOCK_UN)
            except BlockingIOError:
                raise ServiceUnavailable(
                    f"the Milvus Lite file {path} is open in another process (an indexing run or "
                    "a server?); Milvus Lite serves one process at a time: wait for it, or run "
                    f"`milvus-lite server --data-dir {path} --port 19530` and use "
                    "--store milvus:http://127.0.0.1:19530 to share it"
                ) from None
            finally:
                os.close(fd)
        _LITE_USERS[path] = _LITE_USERS.get(path, 0) + 1
    # pymilvus asks for a timestamp after creating an index, which Lite's server does not
    # implement: it logs a traceback per call (the client carries on without one)
    logging.getLogger("grpc._server").setLevel(logging.CRITICAL)


def _close_lite(path: str) -> None:
    with _LITE_LOCK:
        left = _LITE_USERS.get(path, 0) - 1
        if left > 0:
            _LITE_USERS[path] = left
            return
        _LITE_USERS.pop(path, None)
    try:
        from milvus_lite.server_manager import server_manager_instance
    except ImportError:
        return
    server_manager_instance.release_server(path)  # releases the file lock for other processes


def _client(uri: str, timeout: float) -> Any:
    # gRPC's fork handlers only log that they are skipped when the indexer forks its decoding
    # workers (which never touch gRPC); quiet them before gRPC loads
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    try:
        from pymilvus import MilvusClient
    except ImportError:
        raise ServiceUnavailable(
            "--store milvus needs the pymilvus package (and milvus-lite for a .db file): "
            "pip install pymilvus milvus-lite"
        ) from None
    try:
        return MilvusClient(uri=uri, timeout=timeout)
    except Exception as exc:
        what = "start Milvus Lite on" if not is_server(uri) else "reach the Milvus server at"
        fix = ("pip install milvus-lite, check the file is not open elsewhere and its folder is "
               "writable" if not is_server(uri) else "start the server, or check the URI")
        raise ServiceUnavailable(
            f"cannot {what} {uri} ({_first_line(exc)}); {fix}"
        ) from None


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "message", "") or exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


class MilvusStore(VectorStore):
    """Vectors in a Milvus collection. ``source`` (the catalog's durable vectors), when given,
    answers ``reconstruct`` and small filtered searches without a round trip."""

    pushdown = True  # filters reach it as expressions (``StoreFilter``)

    def __init__(self, uri: str, dim: int, collection: str | None = None, *,
                 source: Source | None = None, options: StoreOptions | None = None,
                 timeout: float = CONNECT_TIMEOUT_S) -> None:
        self.dim = dim
        self.uri = uri
        self.collection = collection or DEFAULT_COLLECTION
        self.source = source
        self.options = options or StoreOptions()
        self.lite = not is_server(uri)
        if self.lite:
            self.uri = os.path.abspath(uri)
            _open_lite(self.uri)
        try:
            self.client = _client(self.uri, timeout)
            self._ensure_collection()
        except BaseException as exc:
            if self.lite:
                _close_lite(self.uri)
                if type(exc).__name__ == "MilvusException":  # its files are damaged
                    raise DamagedStore(Path(self.uri), f"the Milvus Lite file {self.uri} is unreadable "
                                       f"({_first_line(exc)})") from None
            raise
        self._ids: np.ndarray | None = None
        self._irregular: np.ndarray | None = None
        self.index_type, self.index_params = self._current_index()

    @property
    def spec(self) -> str:
        return f"{self.uri}#{self.collection}"

    # -- collection ---------------------------------------------------------------------------
    def _ensure_collection(self) -> None:
        from pymilvus import DataType

        c, name = self.client, self.collection
        if c.has_collection(name):
            dims = [f.get("params", {}).get("dim") for f in c.describe_collection(name)["fields"]
                    if f["name"] == "vec"]
            if dims and int(dims[0]) != self.dim:
                raise BadRequest(
                    f"the Milvus collection {name!r} at {self.uri} holds {dims[0]}-d vectors, this "
                    f"index {self.dim}-d; rebuild with --reindex or pick another milvus:<uri>#collection"
                )
            c.load_collection(name)
            return
        schema = c.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vec", DataType.FLOAT_VECTOR, dim=self.dim)
        schema.add_field("modality", DataType.VARCHAR, max_length=16)
        schema.add_field("ext", DataType.VARCHAR, max_length=EXT_MAX)
        schema.add_field("mtime_ns", DataType.INT64)
        schema.add_field("size", DataType.INT64)
        schema.add_field("duration_s", DataType.DOUBLE, nullable=True)
        schema.add_field("nfiles", DataType.INT64)
        params = c.prepare_index_params()
        params.add_index("vec", index_type="FLAT", metric_type="IP")
        c.create_collection(name, schema=schema, index_params=params, consistency_level="Strong")

    def _current_index(self) -> tuple[str, dict[str, int]]:
        try:
            desc = self.client.describe_index(self.collection, "vec")
        except Exception:  # no index yet (a collection made elsewhere)
            return "FLAT", {}
        if not desc:  # none: a writer killed between dropping one index and making the next
            return NO_INDEX, {}
        params = {k: int(v) for k, v in desc.items() if k in ("M", "efConstruction", "nlist")}
        return str(desc.get("index_type", "FLAT")), params

    def ensure_index(self, n: int | None = None) -> bool:
        """Switch the vector index to the type ``index_type_for`` gives for ``n`` vectors (the
        count held by default). True when it changed (Milvus rebuilds it from the stored data)."""
        kind, params = index_type_for(self.count() if n is None else n, self.dim, self.options)
        if kind == self.index_type:
            return False
        c = self.client
        c.release_collection(self.collection)
        if self.index_type != NO_INDEX:
            c.drop_index(self.collection, "vec")
        index = c.prepare_index_params()
        index.add_index("vec", index_type=kind, metric_type="IP", params=params)
        c.create_index(self.collection, index)
        c.load_collection(self.collection)
        self.index_type, self.index_params = kind, params
        log.info("milvus collection %s now uses %s %s", self.collection, kind, params)
        return True

    def drop(self) -> None:
        """Empty the collection (drop and create it again)."""
        self.client.drop_collection(self.collection)
        self._ensure_collection()
        self._changed()
        self.index_type, self.index_params = "FLAT", {}

    def flush(self) -> None:
        """Seal what was inserted into segments (Milvus then indexes them)."""
        self.client.flush(self.collection)

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            if self.lite:
                _close_lite(self.uri)

    # -- writes -------------------------------------------------------------------------------
    def add(self, ids: np.ndarray, vectors: np.ndarray, fields: Sequence[Fields] | None = None) -> None:
        ids, vectors = self._batch(ids, vectors)
        if len(ids) == 0:
            return
        if len(np.unique(ids)) != len(ids) or np.isin(ids, self.ids()).any():
            raise ValueError("vector ids must be new and distinct")
        self._write(ids, vectors, fields, upsert=False)

    def upsert(self, ids: np.ndarray, vectors: np.ndarray, fields: Sequence[Fields] | None = None) -> None:
        """Insert or replace (idempotent: what a crash recovery replays)."""
        ids, vectors = self._batch(ids, vectors)
        if len(ids):
            self._write(ids, vectors, fields, upsert=True)

    def _write(self, ids: np.ndarray, vectors: np.ndarray, fields: Sequence[Fields] | None,
               upsert: bool) -> None:
        if fields is not None and len(fields) != len(ids):
            raise ValueError(f"{len(fields)} field rows for {len(ids)} ids")
        blank = Fields()
        call = self.client.upsert if upsert else self.client.insert
        for start in range(0, len(ids), INSERT_BATCH):
            rows = [
                _row(int(i), vectors[start + j], fields[start + j] if fields is not None else blank)
                for j, i in enumerate(ids[start : start + INSERT_BATCH].tolist())
            ]
            call(self.collection, rows)
        self._changed(added=ids)

    def remove(self, ids: np.ndarray) -> int:
        ids = np.unique(np.ascontiguousarray(ids, dtype=np.int64).reshape(-1))
        held = ids[np.isin(ids, self.ids())]
        for chunk in _chunks(ids.tolist(), 10_000):  # also ids this process never saw
            self.client.delete(self.collection, ids=chunk)
        if len(ids):
            self._changed(removed=ids)
        return int(len(held))

    def _changed(self, added: np.ndarray | None = None, removed: np.ndarray | None = None) -> None:
        self._irregular = None
        if self._ids is None:
            return
        ids = self._ids
        if removed is not None:
            ids = ids[~np.isin(ids, removed)]
        if added is not None:
            ids = np.union1d(ids, added)
        if added is None and removed is None:
            self._ids = None
            return
        ids.flags.writeable = False
        self._ids = ids

    # -- reads --------------------------------------------------------------------------------
    def ids(self) -> np.ndarray:
        """All ids held, ascending, read-only (listed once, then kept up to date by this
        process's writes; ``adopt_ids`` or ``invalidate`` after others' writes)."""
        if self._ids is None:
            ids = np.sort(np.fromiter(self._scan_ids(), dtype=np.int64))
            ids.flags.writeable = False
            self._ids = ids
        return self._ids

    def adopt_ids(self, ids: np.ndarray) -> None:
        """Take ``ids`` as what the collection holds (the catalog's, after reconciling)."""
        held = np.unique(np.asarray(ids, dtype=np.int64))
        held.flags.writeable = False
        self._ids = held
        self._irregular = None

    def invalidate(self) -> None:
        self._ids = None
        self._irregular = None

    def _scan_ids(self, expr: str = "") -> Iterable[int]:
        if self.lite:  # one query answers all (Lite has no result cap, nor the iterator's clock)
            rows = self.client.query(self.collection, filter=expr, output_fields=["id"])
            yield from (int(row["id"]) for row in rows)
            return
        it = self.client.query_iterator(self.collection, batch_size=16384, filter=expr,
                                        output_fields=["id"])
        try:
            while True:
                batch = it.next()
                if not batch:
                    return
                yield from (int(row["id"]) for row in batch)
        finally:
            it.close()

    def ids_where(self, expr: str) -> np.ndarray:
        """Ids of the entities matching a Milvus boolean expression, ascending."""
        return np.sort(np.fromiter(self._scan_ids(expr), dtype=np.int64))

    def irregular_ids(self) -> np.ndarray:
        """Ids written for contents with other than one file (filtered by id, not by field)."""
        if self._irregular is None:
            self._irregular = self.ids_where("nfiles != 1")
        return self._irregular

    def count(self, where: StoreFilter | None = None) -> int:
        if where is None and self._ids is not None:
            return len(self._ids)
        return self.stored_count(where.expr if where else "")

    def stored_count(self, expr: str = "") -> int:
        """What the collection itself holds (never the id list this process keeps)."""
        res = self.client.query(self.collection, filter=expr, output_fields=["count(*)"])
        return int(res[0]["count(*)"])

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        found, vectors = self.vectors(ids)
        if len(found) != len(ids):
            missing = np.setdiff1d(ids, found)
            raise KeyError(f"no stored vector for ids {missing[:10].tolist()}")
        return vectors

    def vectors(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        held = ids[np.isin(ids, self.ids())]
        if self.source is not None:
            return self.source(held)
        got: dict[int, np.ndarray] = {}
        for chunk in _chunks(np.unique(held).tolist(), 1000):
            for row in self.client.get(self.collection, ids=chunk, output_fields=["vec"]):
                got[int(row["id"])] = np.asarray(row["vec"], dtype=np.float32)
        have = np.array([i for i in held.tolist() if i in got], dtype=np.int64)
        if not len(have):
            return have, np.zeros((0, self.dim), dtype=np.float32)
        return have, np.stack([got[i] for i in have.tolist()])

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | StoreFilter | None = None, *,
        rerank: bool = True,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by inner product; ``allowed`` is an id list or a ``StoreFilter`` expression."""
        queries, k = prepare_queries(queries, k)
        out_s = np.full((len(queries), k), -np.inf, dtype=np.float32)
        out_i = np.full((len(queries), k), -1, dtype=np.int64)
        expr = ""
        if isinstance(allowed, StoreFilter):
            expr = allowed.expr
        elif allowed is not None:
            allowed = np.unique(np.asarray(allowed, dtype=np.int64))
            allowed = allowed[np.isin(allowed, self.ids())]
            if len(allowed) == 0:
                return out_s, out_i
            if len(allowed) <= EXACT_FILTER_MAX:
                return self._exact(queries, k, allowed)
            expr = f"id in {allowed.tolist()}"
        if len(self.ids()) == 0:
            return out_s, out_i
        limit = min(k, MAX_TOPK)
        params: dict[str, Any] = {"metric_type": "IP", "params": self._search_params(limit)}
        res = self.client.search(self.collection, data=[q for q in queries], limit=limit,
                                 filter=expr, output_fields=["id"], search_params=params)
        for qi, hits in enumerate(res):
            n = min(len(hits), limit)
            if n:
                out_i[qi, :n] = [int(h["id"]) for h in hits[:n]]
                out_s[qi, :n] = [float(h["distance"]) for h in hits[:n]]
        return out_s, out_i

    def _search_params(self, k: int) -> dict[str, int]:
        if self.index_type.startswith("HNSW"):
            return {"ef": max(HNSW_EF, k)}
        if self.index_type.startswith("IVF"):
            nlist = self.index_params.get("nlist", 1024)
            return {"nprobe": max(16, nlist // 16)}
        return {}

    def _exact(self, queries: np.ndarray, k: int, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        have, vectors = self.vectors(allowed)
        return top_k(queries @ vectors.T, have, k)

    # -- files: Milvus persists itself; these exist for the interface -------------------------
    def save(self, path: Path | None = None) -> None:
        """Flush (Milvus makes its data durable itself; ``path`` is not used)."""
        self.flush()

    @classmethod
    def load(cls, path: Path) -> MilvusStore:
        """Open the store of a spec (``uri[#collection]``); the dimension is read from it."""
        uri, name = split_spec(str(path))
        probe = MilvusStore.__new__(MilvusStore)
        probe.uri = os.path.abspath(uri) if not is_server(uri) else uri
        if not is_server(uri):
            _open_lite(probe.uri)
        try:
            client = _client(probe.uri, CONNECT_TIMEOUT_S)
            fields = client.describe_collection(name or DEFAULT_COLLECTION)["fields"]
            dim = int(next(f for f in fields if f["name"] == "vec")["params"]["dim"])
        finally:
            if not is_server(uri):
                _close_lite(probe.uri)
        return cls(uri, dim, name)


def _row(i: int, vector: np.ndarray, f: Fields) -> dict[str, Any]:
    return {"id": i, "vec": vector, "modality": f.modality, "ext": f.ext[:EXT_MAX],
            "mtime_ns": int(f.mtime_ns), "size": int(f.size), "duration_s": f.duration_s,
            "nfiles": int(f.nfiles)}


def _chunks(seq: list[int], n: int) -> Iterable[list[int]]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]
