"""Query filters -> the segment ids allowed, from one SQL query over contents and files.

A content passes when its modality/duration pass and at least one of its files passes the
file-level filters (path prefix/glob, extension, modified date, size). The engine hands the
allowed ids to the vector store (a FAISS ID selector), so k results come back whenever k
matching items exist, however selective the filter. A store that filters itself (Milvus) gets
an expression over its own fields instead (``allowed_for``).
"""

from __future__ import annotations

import fnmatch
from collections import OrderedDict
from datetime import datetime, timezone

import numpy as np
from sqlalchemy import ColumnElement, exists, func, or_, select

from search.catalog import Catalog, Content, File, Segment
from search.dialect import glob_regex
from search.paths import to_db
from search.query import Filters
from search.store.base import StoreFilter, VectorStore


def _ns(moment: datetime) -> int:
    """A datetime as Unix nanoseconds; naive datetimes are taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1e9)


def _normalise_ext(ext: str) -> str:
    return ext.lower().lstrip(".")


def _like_literal(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _file_conditions(filters: Filters, postgres: bool = False) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = []
    if filters.path_prefix:
        # a plain string prefix: "/photos/" is a folder, "/photos/IMG_" a name prefix; as a
        # range on the path index (UTF-8 byte order is code point order), not a table scan
        prefix = to_db(filters.path_prefix)
        upper = _next_prefix(prefix)
        if upper is None:
            conds.append(func.substr(File.path, 1, len(prefix)) == prefix)
        else:
            conds.append((File.path >= prefix) & (File.path < upper))
    if filters.path_glob:
        if postgres:  # no GLOB there: the same pattern as an anchored regular expression
            conds.append(File.path.op("~")(glob_regex(to_db(filters.path_glob))))
        else:
            conds.append(File.path.op("GLOB")(to_db(filters.path_glob)))
    if filters.ext:
        # stored form (an undecodable name's bytes are escaped there), LIKE's wildcards literal
        exts = [_like_literal(to_db(_normalise_ext(e))) for e in filters.ext if e.strip(". ")]
        if exts:
            conds.append(or_(*(func.lower(File.path).like(f"%.{e}", escape="\\") for e in exts)))
    if filters.modified_after is not None:
        conds.append(File.mtime_ns >= _ns(filters.modified_after))
    if filters.modified_before is not None:
        conds.append(File.mtime_ns < _ns(filters.modified_before))
    if filters.min_size is not None:
        conds.append(File.size >= filters.min_size)
    if filters.max_size is not None:
        conds.append(File.size <= filters.max_size)
    return conds


# recent allowed sets: paging and repeated filters skip the SQL while the catalog is unchanged
_CACHE: OrderedDict[tuple[str, str, tuple[int, ...]], np.ndarray] = OrderedDict()
_CACHE_SIZE = 16


def _catalog_version(catalog: Catalog) -> tuple[int, ...]:
    """The catalog's change counter (triggers move it on every insert, delete or re-point of
    files and segments): one row read, where two count(*) took 12 ms at 1M."""
    return (catalog.version(),)


def _next_prefix(prefix: str) -> str | None:
    """The smallest string above every string starting with ``prefix`` (None: no such)."""
    for i in range(len(prefix) - 1, -1, -1):
        code = ord(prefix[i]) + 1
        if code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF:
            return prefix[:i] + chr(code)
    return None


def allowed_segment_ids(catalog: Catalog, filters: Filters) -> np.ndarray | None:
    """Sorted int64 segment ids passing ``filters``; None when nothing is filtered."""
    if filters.is_empty():
        return None
    # repr, not JSON: a path filter may hold lone surrogates (an undecodable name)
    key = (catalog.target.public, repr(filters), _catalog_version(catalog))
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    ids = _query_ids(catalog, filters)
    _CACHE[key] = ids
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return ids


def filter_ids(catalog: Catalog, filters: Filters, candidates: np.ndarray) -> np.ndarray:
    """The ``candidates`` (segment ids) that pass ``filters``, sorted."""
    return _query_ids(catalog, filters, candidates)


def _content_filtered(filters: Filters) -> bool:
    return bool(filters.modality) or filters.min_duration_s is not None or filters.max_duration_s is not None


def _query_ids(catalog: Catalog, filters: Filters, within: np.ndarray | None = None) -> np.ndarray:
    q = select(Segment.id).join(Content, Content.id == Segment.content_id)
    if within is not None:
        q = q.where(Segment.id.in_([int(i) for i in within.tolist()]))
    if filters.modality:
        q = q.where(Content.modality.in_(list(filters.modality)))
    if filters.min_duration_s is not None:
        q = q.where(Content.duration_s >= filters.min_duration_s)
    if filters.max_duration_s is not None:
        q = q.where(Content.duration_s <= filters.max_duration_s)
    file_conds = _file_conditions(filters, catalog.postgres)
    if file_conds and within is not None:
        # a few candidates: each looks its files up by content id, no list of every file
        # passing the filter (that list took ~1 s under a broad size range)
        q = q.where(exists().where(File.content_id == Content.id, *file_conds))
    elif file_conds and catalog.postgres and not _content_filtered(filters):
        # PostgreSQL: the files' segments by their content_id index, no pass over contents
        # (1.2 ms for 1% of 100k segments where the join took 6 ms)
        q = select(Segment.id).where(Segment.content_id.in_(select(File.content_id).where(*file_conds)))
    elif file_conds:
        # one pass over the files table (IN subquery), not a correlated lookup per segment
        q = q.where(Content.id.in_(select(File.content_id).where(*file_conds)))
    return np.sort(catalog.ids_where(q))


def path_matches(path: str, filters: Filters) -> bool:
    """Whether one path passes the path filters (to show the matching path of a hit first)."""
    if filters.path_prefix and not path.startswith(filters.path_prefix):
        return False
    if filters.path_glob and not fnmatch.fnmatchcase(path, filters.path_glob):
        return False
    return not filters.ext or any(path.lower().endswith("." + _normalise_ext(e)) for e in filters.ext)


def allowed_for(catalog: Catalog, filters: Filters, store: VectorStore) -> np.ndarray | StoreFilter | None:
    """What ``store.search`` takes as ``allowed`` for ``filters``: None (no filter), the ids
    passing them, or, for a store that filters itself, a boolean expression over its fields.

    The expression is exact: content-level fields (modality, duration) never change; the
    file-level ones (extension, mtime, size) are those of a content's only file when it was
    written, so contents with other than one file now, or then, or a file re-pointed or touched
    since (``indexed_at`` after the content's ``created_at``), are decided by the catalog and
    named by id. Path prefixes and globs are not in the store: those filters go as id lists.
    """
    if filters.is_empty():
        return None
    exts = [_normalise_ext(e) for e in filters.ext or [] if e.strip(". ")]
    if (not store.pushdown or filters.path_prefix or filters.path_glob
            or any(not (e.isascii() and e.isalnum() and len(e) < 64) for e in exts)):
        return allowed_segment_ids(catalog, filters)
    content: list[str] = []
    if filters.modality:
        content.append(f"modality in {list(filters.modality)!r}")
    if filters.min_duration_s is not None:
        content.append(f"duration_s >= {float(filters.min_duration_s)!r}")
    if filters.max_duration_s is not None:
        content.append(f"duration_s <= {float(filters.max_duration_s)!r}")
    files: list[str] = []
    if exts:
        files.append(f"ext in {exts!r}")
    if filters.modified_after is not None:
        files.append(f"mtime_ns >= {_ns(filters.modified_after)}")
    if filters.modified_before is not None:
        files.append(f"mtime_ns < {_ns(filters.modified_before)}")
    if filters.min_size is not None:
        files.append(f"size >= {int(filters.min_size)}")
    if filters.max_size is not None:
        files.append(f"size <= {int(filters.max_size)}")
    if files:
        irregular = _irregular_segments(catalog)
        by_field = " and ".join(["nfiles == 1", *files])
        if len(irregular):
            by_field += f" and id not in {irregular.tolist()}"
        named = np.union1d(irregular, store.irregular_ids())  # type: ignore[attr-defined]
        passing = filter_ids(catalog, filters, named) if len(named) else named
        either = f"({by_field})" + (f" or id in {passing.tolist()}" if len(passing) else "")
        content.append(f"({either})")
    return StoreFilter(" and ".join(content))


def _irregular_segments(catalog: Catalog) -> np.ndarray:
    """Segments of contents with other than one file, or whose file changed after the content
    was written (a duplicate linked, a touched file re-pointed): cached per catalog version."""
    key = (str(catalog.path), "irregular", _catalog_version(catalog))
    if key not in _CACHE:
        contents = (
            select(File.content_id).join(Content, Content.id == File.content_id)
            .group_by(File.content_id)
            .having(or_(func.count(File.id) != 1, func.max(File.indexed_at) > func.max(Content.created_at)))
        )
        _CACHE[key] = np.sort(catalog.ids_where(select(Segment.id).where(Segment.content_id.in_(contents))))
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return _CACHE[key]
