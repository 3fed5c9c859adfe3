"""Keeping a Milvus collection in step with the catalog, which stays the source of truth.

Every write commits to the catalog first (rows and vectors in one transaction, deletes leaving
tombstones), then reaches Milvus. The catalog's ``milvus`` meta row records how far Milvus is
known to be complete: every vector with id <= ``upto_id`` is in it and every tombstone up to
``tomb_seq`` applied. ``catch_up`` brings Milvus forward from there (on open, at checkpoints):
vectors above ``upto_id`` that Milvus lacks are inserted, tombstones after ``tomb_seq``
deleted — both idempotent, so a ``kill -9`` between the two writes, or in the middle of either,
is repaired by the next open. A collection that the meta row does not describe (a new index,
``--reindex``, a switch of store) is emptied and filled from the catalog.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import select

from search.store.milvus_spec import resolve_spec, split_spec
from search.store.milvus_store import NO_INDEX, Fields, MilvusStore
from search.store.spec import StoreOptions

if TYPE_CHECKING:
    from search.catalog import Catalog, NewContent

log = logging.getLogger(__name__)

META = "milvus"
_CHUNK = 5000


def open_store(root: Path, spec: str, dim: int, catalog: Catalog, options: StoreOptions) -> MilvusStore:
    """The store a manifest's ``milvus:<spec>`` names (a relative Lite file is relative to
    ``root``), reading vectors back from the catalog."""
    uri, collection = split_spec(resolve_spec(spec, root))

    def source(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return catalog.get_vectors(ids, dim)

    return MilvusStore(uri, dim, collection, source=source, options=options)


def catch_up(store: MilvusStore, catalog: Catalog, dim: int, spec: str, *,
             opening: bool = True) -> dict[str, int]:
    """Apply what the catalog holds and Milvus may lack, then record it. Writers only (or a
    reader holding the write lock). ``spec``: the store as the manifest records it;
    ``opening``: the store's id list is then taken from the catalog (a writer's checkpoints keep
    theirs up to date). Returns {"inserted": n, "deleted": n}."""
    raw = catalog.get_meta(META)
    meta = json.loads(raw) if raw else None
    top_seq = _top_tombstone(catalog)
    if meta is None or meta.get("store") != spec:
        if store.count():
            store.drop()  # whatever it holds was not written for this catalog's state
        meta = {"store": spec, "upto_id": 0, "tomb_seq": top_seq}
    dead = catalog.deleted_since(int(meta["tomb_seq"]), 2**62)
    if len(dead):
        store.remove(dead)
    upto = int(meta["upto_id"])
    missing, extra = _fill(store, catalog, dim, upto)
    if opening:
        from search.catalog import Vector

        every = catalog.ids_where(select(Vector.id))
        stored = store.stored_count() if upto else len(every)
        if stored != len(every):
            # the collection lost what the meta row says it holds (a Lite folder removed or
            # rolled back to an older manifest): compared whole and mended, or searches would
            # miss those rows for good
            log.warning("the Milvus collection %s holds %d vectors, the catalog %d: mending it",
                        store.spec, stored, len(every))
            missing, extra = _fill(store, catalog, dim, 0)
        store.adopt_ids(every)
        if store.index_type == NO_INDEX:
            store.ensure_index()  # left without one by a crash mid-switch
    held = store.ids()
    meta.update(upto_id=int(held[-1]) if len(held) else upto, tomb_seq=max(top_seq, int(meta["tomb_seq"])))
    catalog.set_meta(META, json.dumps(meta, sort_keys=True))
    catalog.prune_tombstones(int(meta["tomb_seq"]))
    return {"inserted": int(len(missing)), "deleted": int(len(dead) + len(extra))}


def _fill(store: MilvusStore, catalog: Catalog, dim: int, upto: int) -> tuple[np.ndarray, np.ndarray]:
    """Insert the catalog's vectors above ``upto`` that Milvus lacks, remove those it holds there
    that the catalog does not (written, then deleted with no tombstone seen yet). Returns both."""
    from search.catalog import Vector

    want = catalog.ids_where(select(Vector.id).where(Vector.id > upto))
    have = store.ids_where(f"id > {upto}")
    missing = np.setdiff1d(want, have)
    extra = np.setdiff1d(have, want)
    if len(extra):
        store.remove(extra)
    for start in range(0, len(missing), _CHUNK):
        found, vectors = catalog.get_vectors(missing[start : start + _CHUNK], dim)
        store.upsert(found, vectors, segment_fields(catalog, found))
    return missing, extra


def forget(catalog: Catalog) -> None:
    """The index leaves Milvus (a switch of store): a later return refills the collection."""
    if catalog.get_meta(META):
        catalog.set_meta(META, "")


def _top_tombstone(catalog: Catalog) -> int:
    from sqlalchemy import func

    from search.catalog import Tombstone

    with catalog.session() as s:
        return int(s.scalar(select(func.max(Tombstone.seq))) or 0)


def segment_fields(catalog: Catalog, ids: np.ndarray) -> list[Fields]:
    """The filter fields of stored segments, read from the catalog."""
    infos = catalog.segments(np.asarray(ids, dtype=np.int64).tolist())
    out = []
    for i in np.asarray(ids).tolist():
        info = infos.get(int(i))
        if info is None:
            out.append(Fields())
            continue
        files = [(p, size, mtime) for p, (size, mtime) in zip(info.paths, info.stats)]
        out.append(Fields.of(info.modality, info.duration_s, files))
    return out


def content_fields(items: Sequence[NewContent]) -> list[Fields]:
    """The filter fields of each segment of new contents, in segment order."""
    out: list[Fields] = []
    for item in items:
        f = Fields.of(item.modality, item.duration_s, list(item.files))
        out.extend([f] * len(item.segments))
    return out
