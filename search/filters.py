"""Query filters -> the segment ids allowed, from one SQL query over contents and files.

A content passes when its modality/duration pass and at least one of its files passes the
file-level filters (path prefix/glob, extension, modified date, size). The engine hands the
allowed ids to the vector store (a FAISS ID selector), so k results come back whenever k
matching items exist, however selective the filter.
"""

from __future__ import annotations

import fnmatch
from datetime import datetime, timezone

import numpy as np
from sqlalchemy import ColumnElement, exists, func, or_, select

from search.catalog import Catalog, Content, File, Segment
from search.query import Filters


def _ns(moment: datetime) -> int:
    """A datetime as Unix nanoseconds; naive datetimes are taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1e9)


def _normalise_ext(ext: str) -> str:
    return ext.lower().lstrip(".")


def _file_conditions(filters: Filters) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = []
    if filters.path_prefix:
        # a plain string prefix: "/photos/" is a folder, "/photos/IMG_" a name prefix
        prefix = filters.path_prefix
        conds.append(func.substr(File.path, 1, len(prefix)) == prefix)
    if filters.path_glob:
        conds.append(File.path.op("GLOB")(filters.path_glob))
    if filters.ext:
        exts = [_normalise_ext(e) for e in filters.ext if e.strip(". ")]
        if exts:
            conds.append(or_(*(func.lower(File.path).like(f"%.{e}") for e in exts)))
    if filters.modified_after is not None:
        conds.append(File.mtime_ns >= _ns(filters.modified_after))
    if filters.modified_before is not None:
        conds.append(File.mtime_ns < _ns(filters.modified_before))
    if filters.min_size is not None:
        conds.append(File.size >= filters.min_size)
    if filters.max_size is not None:
        conds.append(File.size <= filters.max_size)
    return conds


def allowed_segment_ids(catalog: Catalog, filters: Filters) -> np.ndarray | None:
    """Sorted int64 segment ids passing ``filters``; None when nothing is filtered."""
    if filters.is_empty():
        return None
    q = select(Segment.id).join(Content, Content.id == Segment.content_id)
    if filters.modality:
        q = q.where(Content.modality.in_(list(filters.modality)))
    if filters.min_duration_s is not None:
        q = q.where(Content.duration_s >= filters.min_duration_s)
    if filters.max_duration_s is not None:
        q = q.where(Content.duration_s <= filters.max_duration_s)
    file_conds = _file_conditions(filters)
    if file_conds:
        q = q.where(exists().where(File.content_id == Content.id, *file_conds))
    with catalog.session() as s:
        ids = np.fromiter(s.scalars(q.order_by(Segment.id)), dtype=np.int64)
    return ids


def path_matches(path: str, filters: Filters) -> bool:
    """Whether one path passes the path filters (to show the matching path of a hit first)."""
    if filters.path_prefix and not path.startswith(filters.path_prefix):
        return False
    if filters.path_glob and not fnmatch.fnmatchcase(path, filters.path_glob):
        return False
    if filters.ext and not any(path.lower().endswith("." + _normalise_ext(e)) for e in filters.ext):
        return False
    return True
