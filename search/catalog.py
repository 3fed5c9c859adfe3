"""The catalog (SQLAlchemy 2.0; SQLite, or PostgreSQL by ``--catalog``): files, their
deduplicated contents, and segments.

A *content* is one distinct byte string (by sha256); every *file* path that holds it points to
it, so identical files are embedded and stored once. A content has one or more *segments* (the
whole image, a text passage, an audio window); a segment's id is its vector id in the store.
Segment ids come from AUTOINCREMENT (a sequence on PostgreSQL) and are never reused, so a stale
vector can never be taken for a new row. The schema is made and versioned by Alembic
(``search.migrate``); ``search.dialect`` holds what differs between the engines.

Concurrency: one writer per catalog (``lock_writer``: the index folder's lock file for SQLite,
an advisory lock on PostgreSQL) and any number of readers. Every batch is one transaction, so
a reader sees a batch whole or not at all; on PostgreSQL each write statement also locks the
version-counter row (a trigger) until commit, so write transactions commit in the order they
take ids and a reader catching up by "ids above the last one seen" misses none.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import (
    BigInteger,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    Select,
    String,
    Text,
    create_engine,
    delete,
    event,
    func,
    select,
    text,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DatabaseError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from search import migrate
from search.dialect import (
    PG_FTS_INSERT,
    POSTGRES_SQL,
    SQLITE_SQL,
    CatalogTarget,
    PgReader,
    connect_args,
    fts_words,
    pg_integrity_error,
    to_pyformat,
)
from search.errors import Conflict, ServiceUnavailable, is_catalog_unreachable, is_disk_full
from search.paths import ESC, from_db, shown, to_db

# 2: vectors live in the catalog (table ``vectors``, written in the rows' transaction), deletes
# leave tombstones, a version counter moves on every change, filter columns are indexed
SCHEMA_VERSION = 2
# 64-bit on PostgreSQL (sizes, nanosecond mtimes); INTEGER on SQLite (the rowid alias)
BigInt = BigInteger().with_variant(Integer(), "sqlite")
# paths compare by code point on both engines (prefix ranges, the hit lookup's order)
PathText = Text().with_variant(Text(collation="C"), "postgresql")


class Base(DeclarativeBase):
    pass


class Meta(Base):
    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String, primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Content(Base):
    __tablename__ = "contents"
    __table_args__ = {"sqlite_autoincrement": True}
    id: Mapped[int] = mapped_column(BigInt, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    modality: Mapped[str] = mapped_column(String(8), index=True)
    size: Mapped[int] = mapped_column(BigInt)
    width: Mapped[int | None] = mapped_column(BigInt, nullable=True)
    height: Mapped[int | None] = mapped_column(BigInt, nullable=True)
    duration_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[float] = mapped_column(Float, default=time.time)


class File(Base):
    __tablename__ = "files"
    __table_args__ = {"sqlite_autoincrement": True}
    id: Mapped[int] = mapped_column(BigInt, primary_key=True)
    path: Mapped[str] = mapped_column(PathText, unique=True, index=True)
    content_id: Mapped[int] = mapped_column(ForeignKey("contents.id", ondelete="CASCADE"), index=True)
    size: Mapped[int] = mapped_column(BigInt)
    mtime_ns: Mapped[int] = mapped_column(BigInt)
    indexed_at: Mapped[float] = mapped_column(Float, default=time.time)


class Segment(Base):
    __tablename__ = "segments"
    __table_args__ = {"sqlite_autoincrement": True}
    id: Mapped[int] = mapped_column(BigInt, primary_key=True)
    content_id: Mapped[int] = mapped_column(ForeignKey("contents.id", ondelete="CASCADE"), index=True)
    ordinal: Mapped[int] = mapped_column(BigInt, default=0)
    text: Mapped[str | None] = mapped_column(Text, nullable=True)
    char_start: Mapped[int | None] = mapped_column(BigInt, nullable=True)
    char_end: Mapped[int | None] = mapped_column(BigInt, nullable=True)
    start_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    end_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    # documents: the 1-based page; videos: "frame" or "sound"; text read off an image: ocr = 1
    page: Mapped[int | None] = mapped_column(BigInt, nullable=True)
    stream: Mapped[str | None] = mapped_column(String(8), nullable=True)
    ocr: Mapped[int | None] = mapped_column(BigInt, nullable=True)


class Vector(Base):
    """A segment's embedding (float32 bytes), committed in the same transaction as its row."""

    __tablename__ = "vectors"
    id: Mapped[int] = mapped_column(BigInt, primary_key=True)  # the segment id
    vec: Mapped[bytes] = mapped_column(LargeBinary)


class Tombstone(Base):
    """A deleted segment, so that readers holding a derived index can mask it."""

    __tablename__ = "tombstones"
    __table_args__ = {"sqlite_autoincrement": True}
    seq: Mapped[int] = mapped_column(BigInt, primary_key=True)
    segment_id: Mapped[int] = mapped_column(BigInt)


class Counter(Base):
    """``catalog``: moves on every insert/delete/re-point of files, segments and vectors."""

    __tablename__ = "counters"
    name: Mapped[str] = mapped_column(String, primary_key=True)
    value: Mapped[int] = mapped_column(BigInt)


# the triggers (search/migrations) move this counter on every change; a meta row that readers
# must see moves it by hand
_BUMP = "UPDATE counters SET value = value + 1 WHERE name = 'catalog'"
# pg_advisory_lock key of a PostgreSQL catalog's one writer (a database holds one catalog)
_WRITER_LOCK = 0x63660001


@dataclass
class SegmentIn:
    """A segment to store: text passages carry text + char offsets (and a document's page),
    audio windows times, video segments their stream, text read off an image ``ocr``."""

    text: str | None = None
    char_start: int | None = None
    char_end: int | None = None
    start_s: float | None = None
    end_s: float | None = None
    page: int | None = None
    stream: str | None = None
    ocr: bool = False


@dataclass
class NewContent:
    """One content for ``Catalog.add_contents`` (the arguments of ``add_content``)."""

    sha256: str
    modality: str
    size: int
    segments: Sequence[SegmentIn]
    files: Sequence[tuple[str, int, int]]  # (path, size, mtime_ns)
    width: int | None = None
    height: int | None = None
    duration_s: float | None = None


@dataclass
class SegmentInfo:
    """A stored segment joined with its content and file paths (what a hit shows)."""

    id: int
    content_id: int
    modality: str
    paths: list[str]
    text: str | None
    char_start: int | None
    char_end: int | None
    start_s: float | None
    end_s: float | None
    size: int
    width: int | None
    height: int | None
    duration_s: float | None
    mtime_ns: int
    stats: list[tuple[int, int]] = field(default_factory=list)  # (size, mtime_ns) per path
    sha256: str = ""  # of the content
    page: int | None = None
    stream: str | None = None
    ocr: bool = False

    @property
    def path(self) -> str:
        return self.paths[0] if self.paths else ""


@dataclass(frozen=True)
class FileState:
    """An indexed file as an incremental indexing run sees it."""

    path: str
    size: int
    mtime_ns: int
    content_id: int
    sha256: str
    modality: str
    created_at: float  # when its content was embedded


class Catalog:
    """All SQL of crossfind lives here."""

    def __init__(self, target: Path | CatalogTarget) -> None:
        """Open (and create or upgrade) the catalog: a SQLite file, or ``target``'s database.

        Raises:
            ServiceUnavailable: the PostgreSQL server cannot be reached or refuses the login.
            Conflict: the catalog was made by a newer crossfind.
        """
        if not isinstance(target, CatalogTarget):
            target = CatalogTarget(sqlite_path=Path(target))
        if target.sqlite_path is not None and _on_read_only_medium(target.sqlite_path):
            target = replace(target, immutable=True)
        self.target = target
        self.postgres = target.postgres
        # the SQLite file (PostgreSQL: the URL sans password, as ``target.public`` names it)
        self.path = target.sqlite_path if target.sqlite_path is not None else Path(target.public)
        self.engine = create_engine(target.sqlalchemy_url, **connect_args(target))
        if not self.postgres:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._q = to_pyformat if self.postgres else _same
        self._sql = POSTGRES_SQL if self.postgres else SQLITE_SQL
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._local = threading.local()
        self._readers: list[Any] = []
        self._readers_lock = threading.Lock()
        self._writer_lock: Any = None
        try:
            migrate.upgrade(self.engine)
        except OperationalError as exc:
            self.engine.dispose()
            if self.postgres:
                raise self._unreachable(exc) from None
            if is_disk_full(exc):  # the callers say so, naming the fix
                raise
            raise Conflict(
                f"cannot open the catalog {self.path} ({str(exc.orig).splitlines()[0][:200]}); check "
                "that its folder can be read (and, to index, written)"
            ) from None
        except DatabaseError as exc:  # SQLite: "file is not a database", "... malformed"
            self.engine.dispose()
            raise Conflict(
                f"the catalog {self.path} is damaged ({str(exc.orig).splitlines()[0][:200]}); restore "
                "it from a backup, or rebuild the index with --reindex (every file is embedded again)"
            ) from None
        self._check_schema()
        self._escape_paths()

    def _unreachable(self, exc: BaseException) -> ServiceUnavailable:
        first = str(getattr(exc, "orig", exc)).strip().splitlines()[0][:300]
        return ServiceUnavailable(
            f"cannot open the catalog {self.target.public}: {first}; check the server, or give the "
            "password in --catalog / CROSSFIND_CATALOG, PGPASSWORD or ~/.pgpass"
        )

    # -- meta ---------------------------------------------------------------------------------
    def _check_schema(self) -> None:
        version = self.get_meta("schema_version")
        if version is None:
            has_rows = self.has_segments()
            # a catalog with rows but no version predates versions: it is a v1 one
            self.set_meta("schema_version", "1" if has_rows else str(SCHEMA_VERSION))
        elif int(version) > SCHEMA_VERSION:
            raise Conflict(
                f"index schema v{version} is newer than this crossfind (v{SCHEMA_VERSION}); "
                "upgrade crossfind or rebuild with --reindex"
            )

    @property
    def schema_version(self) -> int:
        return int(self.get_meta("schema_version") or SCHEMA_VERSION)

    def has_segments(self) -> bool:
        with self.engine.connect() as conn:
            return conn.exec_driver_sql("SELECT 1 FROM segments LIMIT 1").first() is not None

    def version(self) -> int:
        """The change counter: moves on every write that a reader or a filter cache must see."""
        row = self._reader().execute("SELECT value FROM counters WHERE name = 'catalog'").fetchone()
        return int(row[0]) if row else 0

    def _escape_paths(self) -> None:
        """Catalogs made before paths were escaped (``search.paths``) hold every path as it
        is; the only ones whose stored form now differs hold U+FFFF: double it, once."""
        if self.get_meta("path_encoding") == "ffff-escape":
            return
        try:
            with self.engine.begin() as conn:
                conn.exec_driver_sql(
                    "UPDATE files SET path = replace(path, ?, ?) WHERE instr(path, ?) > 0",
                    (ESC, ESC + ESC, ESC),
                )
                conn.exec_driver_sql(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('path_encoding', 'ffff-escape')"
                )
        except OperationalError:  # a read-only index: readers manage, the next writer migrates
            return

    def get_meta(self, key: str) -> str | None:
        with self.session() as s:
            row = s.get(Meta, key)
            return row.value if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self.session() as s, s.begin():
            s.merge(Meta(key=key, value=value))

    def session(self) -> Session:
        return self._sessions()

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        """A write transaction. On PostgreSQL it first locks the version-counter row (moving
        it) until commit, so write transactions run one at a time and commit in the order
        they take segment ids and tombstone numbers: a reader catching up by "ids above the
        last seen" can miss none. (SQLite's single write lock does this by itself.)"""
        with self.engine.begin() as conn:
            if self.postgres:
                conn.exec_driver_sql(_BUMP)
                self._still_the_writer()
            yield conn

    @contextmanager
    def _writing_session(self) -> Iterator[Session]:
        """``_writing`` as an ORM session."""
        with self.session() as s, s.begin():
            if self.postgres:
                s.execute(text(_BUMP))
                self._still_the_writer()
            yield s

    def _still_the_writer(self) -> None:
        """A writer's advisory lock lives on its own connection: a server restart drops it while
        the pool reconnects the others, and another writer may then take it. A write goes on
        only while that connection (so the lock) is alive; checked once the counter row is
        locked, so no other writer can be between the check and the commit."""
        if self._writer_lock is None:
            return
        try:
            self._writer_lock.execute("SELECT 1")
        except Exception as exc:
            if not is_catalog_unreachable(exc):
                raise
            raise ServiceUnavailable(
                f"lost the one-writer lock of the catalog {self.target.public} (its server restarted "
                "or dropped the connection); run the command again (what was committed before is kept)"
            ) from None

    def refresh_statistics(self) -> None:
        """After a writing run on PostgreSQL: ANALYZE, so the planner knows the new row counts
        at once (a fresh catalog's keyword search otherwise scans the table until autovacuum
        gets to it). SQLite plans without statistics."""
        if self.postgres and self._writer_lock is not None:
            self._writer_lock.execute("ANALYZE")

    def lock_writer(self) -> bool:
        """Take the one-writer lock of a PostgreSQL catalog until ``close`` (a session advisory
        lock on a connection of its own: a crashed writer's lock goes with its connection).
        False: another process writes. SQLite needs none: the index folder's lock file is it."""
        if not self.postgres or self._writer_lock is not None:
            return True
        import psycopg

        try:
            con = psycopg.connect(self.target.libpq(), autocommit=True)
        except psycopg.OperationalError as exc:
            raise self._unreachable(exc) from None
        got = con.execute("SELECT pg_try_advisory_lock(%s)", (_WRITER_LOCK,)).fetchone()
        if not (got and got[0]):
            con.close()
            return False
        self._writer_lock = con
        return True

    def close(self) -> None:
        with self._readers_lock:
            readers, self._readers = self._readers, []
        for con in readers:
            con.close()
        if self._writer_lock is not None:
            self._writer_lock.close()
            self._writer_lock = None
        self._local = threading.local()
        self.engine.dispose()

    # -- writes -------------------------------------------------------------------------------
    def add_content(
        self,
        sha256: str,
        modality: str,
        size: int,
        segments: Sequence[SegmentIn],
        files: Iterable[tuple[str, int, int]],
        *,
        width: int | None = None,
        height: int | None = None,
        duration_s: float | None = None,
    ) -> tuple[int, list[int]]:
        """Insert a content, its segments and its files ``(path, size, mtime_ns)`` in one
        transaction (a path already present is re-pointed). Returns (content id, segment ids).
        """
        item = NewContent(sha256, modality, size, segments, list(files), width, height, duration_s)
        return self.add_contents([item])[0]

    def add_contents(
        self, items: Sequence[NewContent], vectors: np.ndarray | None = None
    ) -> list[tuple[int, list[int]]]:
        """``add_content`` for many contents in one transaction (the indexer writes a batch at
        a time), in fixed SQL that sqlite3 keeps prepared: ~0.2 ms a content, the ORM ~5 ms.

        ``vectors`` (float32[total segments, dim], in segment order) are stored in the same
        transaction, so no reader ever sees these rows without their vectors.
        """
        out: list[tuple[int, list[int]]] = []
        n_segments = sum(len(item.segments) for item in items)
        if vectors is not None and len(vectors) != n_segments:
            raise ValueError(f"{len(vectors)} vectors for {n_segments} segments")
        now = time.time()
        with self._writing() as conn:
            if self.postgres:
                out = self._add_contents_batched(conn, items, n_segments, now)
            else:
                out = self._add_contents_row_by_row(conn, items, now)
            if vectors is not None:
                ids = [i for _, seg_ids in out for i in seg_ids]
                self._insert_vectors(conn, ids, vectors)
        return out

    def _add_contents_row_by_row(self, conn: Connection, items: Sequence[NewContent],
                                 now: float) -> list[tuple[int, list[int]]]:
        """SQLite: each row's id from its insert (no round trips to save in-process)."""
        out: list[tuple[int, list[int]]] = []
        run = conn.exec_driver_sql
        for item in items:
            cid = int(run(_INSERT_CONTENT, _content_row(item, now)).lastrowid)
            seg_ids = [
                int(run(_INSERT_SEGMENT, _segment_row(cid, i, seg)).lastrowid)
                for i, seg in enumerate(item.segments)
            ]
            if item.files:
                run(_INSERT_FILE, _file_rows(item, cid, now))
            if seg_ids:
                name = _fts_name(item)
                run("INSERT INTO passages_fts (rowid, body, name) VALUES (?, ?, ?)",
                    [(sid, seg.text or "", name) for sid, seg in zip(seg_ids, item.segments)])
            out.append((cid, seg_ids))
        return out

    def _add_contents_batched(self, conn: Connection, items: Sequence[NewContent], n_segments: int,
                              now: float) -> list[tuple[int, list[int]]]:
        """PostgreSQL: the batch's ids from the sequences in two queries (the caller holds the
        counter lock, so they are the next ones), then one pipelined executemany per table:
        a round trip per row cost 5x the write time."""
        out: list[tuple[int, list[int]]] = []
        cids = self._next_ids(conn, "contents_id_seq", len(items))
        sids = iter(self._next_ids(conn, "segments_id_seq", n_segments))
        contents: list[tuple] = []
        segments: list[tuple] = []
        files: list[tuple] = []
        fts: list[tuple] = []
        for item, cid in zip(items, cids):
            seg_ids = [next(sids) for _ in item.segments]
            contents.append((cid, *_content_row(item, now)))
            segments.extend((sid, *_segment_row(cid, i, seg)) for i, (sid, seg) in enumerate(
                zip(seg_ids, item.segments)))
            files.extend(_file_rows(item, cid, now))
            name = _fts_name(item)
            fts.extend((sid, seg.text or "", name, " ".join(fts_words((seg.text or "") + " " + name)))
                       for sid, seg in zip(seg_ids, item.segments))
            out.append((cid, seg_ids))
        with conn.connection.driver_connection.cursor() as cur:  # type: ignore[union-attr]
            cur.executemany(_with_id(_INSERT_CONTENT), contents)
            cur.executemany(_with_id(_INSERT_SEGMENT), segments)
            if files:
                cur.executemany(to_pyformat(_INSERT_FILE), files)
            if fts:
                cur.executemany(PG_FTS_INSERT, fts)
        return out

    @staticmethod
    def _next_ids(conn: Connection, sequence: str, n: int) -> list[int]:
        if n == 0:
            return []
        rows = conn.exec_driver_sql(
            f"SELECT nextval('{sequence}') FROM generate_series(1, %s)", (n,)
        ).fetchall()
        return [int(r[0]) for r in rows]

    def _insert_vectors(self, conn: Connection, ids: Sequence[int], vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype="<f4")
        if vectors.ndim != 2 or len(vectors) != len(ids):
            raise ValueError(f"{len(ids)} ids for vectors of shape {vectors.shape}")
        rows = zip((int(i) for i in ids), (row.tobytes() for row in vectors))
        raw = conn.connection.driver_connection
        try:
            if self.postgres:
                with raw.cursor() as cur:  # type: ignore[union-attr]
                    cur.executemany("INSERT INTO vectors (id, vec) VALUES (%s, %s)", rows)
            else:
                raw.executemany("INSERT INTO vectors (id, vec) VALUES (?, ?)", rows)  # type: ignore[union-attr]
        except (sqlite3.IntegrityError, pg_integrity_error()):
            raise ValueError("vector ids must be new and distinct") from None

    # -- vectors (the durable copy the vector store is derived from) --------------------------
    def put_vectors(self, ids: Sequence[int], vectors: np.ndarray) -> None:
        """Store the vectors of existing segments (ids must not have one yet)."""
        with self._writing() as conn:
            self._insert_vectors(conn, ids, vectors)

    def get_vectors(self, ids: Sequence[int] | np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids found, float32[n, dim]) in the order asked; ids without a vector are left out."""
        wanted = [int(i) for i in np.asarray(ids, dtype=np.int64).reshape(-1).tolist()]
        found: dict[int, bytes] = {}
        con = self._reader()
        for chunk in _chunks(wanted, 5000):
            found.update(con.execute(self._sql["vectors"], (self._sql["ids"](list(chunk)),)).fetchall())
        got = [i for i in wanted if i in found]
        return np.array(got, dtype=np.int64), _decode([found[i] for i in got], dim)

    def iter_vectors(self, dim: int, after_id: int = 0, upto_id: int | None = None,
                     chunk: int = 65536) -> Iterable[tuple[np.ndarray, np.ndarray]]:
        """All stored vectors with after_id < id <= upto_id, ascending, a chunk at a time."""
        con = self._reader()
        last = after_id
        top = upto_id if upto_id is not None else 2**62
        while True:
            rows = con.execute(
                "SELECT id, vec FROM vectors WHERE id > ? AND id <= ? ORDER BY id LIMIT ?",
                (last, top, chunk),
            ).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            yield np.array([r[0] for r in rows], dtype=np.int64), _decode([r[1] for r in rows], dim)

    def vector_changes(self, dim: int, after_id: int, after_seq: int) -> VectorChanges:
        """What changed since a reader's state, read in one snapshot: vectors with a higher
        id, and the segments deleted (tombstones) after ``after_seq``."""
        con = self._reader()
        con.execute(self._sql["snapshot"])
        try:
            rows = con.execute(
                "SELECT id, vec FROM vectors WHERE id > ? ORDER BY id", (after_id,)
            ).fetchall()
            dead = con.execute(
                "SELECT seq, segment_id FROM tombstones WHERE seq > ? ORDER BY seq", (after_seq,)
            ).fetchall()
            top = con.execute("SELECT max(seq) FROM tombstones").fetchone()[0]
            version = con.execute("SELECT value FROM counters WHERE name = 'catalog'").fetchone()
            ann = con.execute("SELECT value FROM meta WHERE key = 'ann'").fetchone()
        finally:
            con.execute("COMMIT")
        return VectorChanges(
            ids=np.array([r[0] for r in rows], dtype=np.int64),
            vectors=_decode([r[1] for r in rows], dim),
            deleted=np.array([r[1] for r in dead], dtype=np.int64),
            last_seq=int(top or after_seq),
            version=int(version[0]) if version else 0,
            ann=ann[0] if ann else None,
        )

    def deleted_since(self, after_seq: int, upto_id: int) -> np.ndarray:
        """Segment ids <= upto_id deleted after tombstone ``after_seq``."""
        rows = self._reader().execute(
            "SELECT segment_id FROM tombstones WHERE seq > ? AND segment_id <= ?", (after_seq, upto_id)
        ).fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64)

    def prune_tombstones(self, upto_seq: int) -> None:
        with self._writing() as conn:
            conn.exec_driver_sql(self._q("DELETE FROM tombstones WHERE seq <= ?"), (upto_seq,))

    def rows_without_vectors(self) -> np.ndarray:
        """Segment ids whose vector never reached the catalog (a crash between the two
        writes of an older crossfind, or a caller that wrote rows alone)."""
        rows = self._reader().execute(
            "SELECT id FROM segments WHERE id NOT IN (SELECT id FROM vectors)"
        ).fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64)

    def vectors_without_rows(self) -> np.ndarray:
        rows = self._reader().execute(
            "SELECT id FROM vectors WHERE id NOT IN (SELECT id FROM segments)"
        ).fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64)

    def delete_vectors(self, ids: Sequence[int]) -> None:
        with self._writing() as conn:
            for chunk in _chunks([int(i) for i in ids], 500):
                conn.exec_driver_sql(
                    self._q(f"DELETE FROM vectors WHERE id IN ({','.join('?' * len(chunk))})"), tuple(chunk)
                )

    def set_meta_and_bump(self, key: str, value: str) -> None:
        """``set_meta`` that also moves the version counter (readers then reload)."""
        with self._writing() as conn:
            conn.exec_driver_sql(
                self._q("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET "
                        "value = excluded.value"), (key, value),
            )
            conn.exec_driver_sql(_BUMP)

    def link_file(self, path: str, content_id: int, size: int, mtime_ns: int) -> None:
        """Point ``path`` at an existing content (a duplicate or an unchanged touched file)."""
        name = shown(os.path.basename(path))
        with self._writing_session() as s:
            self._upsert_file(s, path, content_id, size, mtime_ns)
            s.execute(
                text(
                    f"UPDATE passages_fts SET name = name || ' ' || :n{self._sql['more_words']} "
                    "WHERE rowid IN (SELECT id FROM segments WHERE content_id = :c) AND "
                    f"{self._sql['instr']}(name, :n) = 0"
                ),
                {"n": name, "c": content_id, "w": " ".join(fts_words(name))},
            )

    def _upsert_file(self, s: Session, path: str, content_id: int, size: int, mtime: int) -> None:
        row = s.scalar(select(File).where(File.path == to_db(path)))
        if row is None:
            s.add(File(path=to_db(path), content_id=content_id, size=size, mtime_ns=mtime))
        else:
            row.content_id, row.size, row.mtime_ns, row.indexed_at = (
                content_id,
                size,
                mtime,
                time.time(),
            )
        s.flush()

    def remove_paths(self, paths: Iterable[str]) -> list[int]:
        """Forget these paths; contents no file points to any more are deleted with their
        segments. Returns the segment ids whose vectors must now leave the store."""
        paths = [to_db(p) for p in paths]
        if not paths:
            return []
        with self._writing_session() as s:
            content_ids: set[int] = set()
            for chunk in _chunks(paths, 500):
                content_ids.update(s.scalars(select(File.content_id).where(File.path.in_(chunk))))
                s.execute(delete(File).where(File.path.in_(chunk)))
            return self._drop_orphan_contents(s, content_ids)

    def remove_contents(self, content_ids: Iterable[int]) -> list[int]:
        """Delete contents (and their files and segments). Returns the segment ids dropped."""
        content_ids = set(content_ids)
        with self._writing_session() as s:
            for chunk in _chunks(sorted(content_ids), 500):
                s.execute(delete(File).where(File.content_id.in_(chunk)))
            return self._drop_orphan_contents(s, content_ids)

    def _drop_orphan_contents(self, s: Session, content_ids: set[int]) -> list[int]:
        dropped: list[int] = []
        for chunk in _chunks(sorted(content_ids), 500):
            still_used = set(s.scalars(select(File.content_id).where(File.content_id.in_(chunk))))
            orphans = [c for c in chunk if c not in still_used]
            if not orphans:
                continue
            seg_ids = list(s.scalars(select(Segment.id).where(Segment.content_id.in_(orphans))))
            for ids in _chunks(seg_ids, 500):
                s.execute(
                    text(f"DELETE FROM passages_fts WHERE rowid IN ({','.join(map(str, ids))})")
                )
            s.execute(delete(Segment).where(Segment.content_id.in_(orphans)))
            s.execute(delete(Content).where(Content.id.in_(orphans)))
            dropped.extend(seg_ids)
        return dropped

    # -- reads --------------------------------------------------------------------------------
    def file(self, path: str) -> File | None:
        """The row of an indexed path (its ``path`` attribute is the stored form)."""
        with self.session() as s:
            return s.scalar(select(File).where(File.path == to_db(path)))

    def content_by_sha(self, sha256: str) -> Content | None:
        with self.session() as s:
            return s.scalar(select(Content).where(Content.sha256 == sha256))

    def contents_by_sha(self, shas: Sequence[str]) -> dict[str, tuple[int, str]]:
        """(content id, modality) of the indexed contents among ``shas``: one query per 500."""
        out: dict[str, tuple[int, str]] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(list(dict.fromkeys(shas)), 500):
                rows = conn.exec_driver_sql(
                    self._q("SELECT sha256, id, modality FROM contents WHERE sha256 IN "
                            f"({','.join('?' * len(chunk))})"),
                    tuple(chunk),
                )
                out.update((sha, (cid, modality)) for sha, cid, modality in rows)
        return out

    def paths_under(self, roots: Sequence[str]) -> list[str]:
        """Indexed paths at or below any of ``roots`` (absolute path strings)."""
        out: list[str] = []
        with self.session() as s:
            for root in map(to_db, roots):
                prefix = root.rstrip("/") + "/"
                out.extend(
                    from_db(p) for p in s.scalars(
                        select(File.path).where(
                            (File.path == root) | (func.substr(File.path, 1, len(prefix)) == prefix)
                        )
                    )
                )
        return out

    def file_states(self, roots: Sequence[str]) -> dict[str, FileState]:
        """Indexed files at or below any of ``roots`` with what an incremental run compares
        (size, mtime, content sha256 and modality), in one query per root."""
        out: dict[str, FileState] = {}
        with self.session() as s:
            for root in map(to_db, roots):
                prefix = root.rstrip("/") + "/"
                rows = s.execute(
                    select(
                        File.path, File.size, File.mtime_ns,
                        Content.id, Content.sha256, Content.modality, Content.created_at,
                    )
                    .join(Content, Content.id == File.content_id)
                    .where((File.path == root) | (func.substr(File.path, 1, len(prefix)) == prefix))
                )
                for path, size, mtime_ns, content_id, sha256, modality, created_at in rows:
                    out[from_db(path)] = FileState(from_db(path), size, mtime_ns, content_id, sha256, modality,
                                                   created_at)
        return out

    def files_of(self, content_ids: Sequence[int]) -> dict[int, list[tuple[str, int, int]]]:
        """Every path of each content: content id -> [(path, size, mtime_ns)]."""
        out: dict[int, list[tuple[str, int, int]]] = {}
        with self.session() as s:
            for chunk in _chunks(sorted(set(content_ids)), 500):
                rows = s.execute(select(File.content_id, File.path, File.size, File.mtime_ns)
                                 .where(File.content_id.in_(chunk)).order_by(File.id))
                for cid, path, size, mtime in rows:
                    out.setdefault(int(cid), []).append((from_db(path), int(size), int(mtime)))
        return out

    def contents_info(self, content_ids: Sequence[int]) -> dict[int, tuple[str, str, int]]:
        """content id -> (sha256, modality, size)."""
        out: dict[int, tuple[str, str, int]] = {}
        with self.session() as s:
            for chunk in _chunks(sorted(set(content_ids)), 500):
                rows = s.execute(select(Content.id, Content.sha256, Content.modality, Content.size)
                                 .where(Content.id.in_(chunk)))
                out.update({int(r[0]): (r[1], r[2], int(r[3])) for r in rows})
        return out

    def has_modality(self, modality: str) -> bool:
        """Whether any content of ``modality`` is indexed."""
        with self.session() as s:
            return s.scalar(select(Content.id).where(Content.modality == modality).limit(1)) is not None

    def segment_ids(self, modality: str | None = None) -> np.ndarray:
        q = select(Segment.id)
        if modality is not None:
            q = q.join(Content, Content.id == Segment.content_id).where(Content.modality == modality)
        return self.ids_where(q)

    def segments(self, ids: Sequence[int]) -> dict[int, SegmentInfo]:
        """Segments by id, joined with content and all file paths; unknown ids are absent.

        This is the hit lookup of every search, so it is one prepared SQL statement on a
        plain sqlite3 connection (0.3 ms for 40 hits at 100k, where the ORM took ~4 ms).
        """
        ids = [int(i) for i in ids if int(i) >= 0]
        out: dict[int, SegmentInfo] = {}
        if not ids:
            return out
        con = self._reader()
        for chunk in _chunks(ids, 5000):
            for row in con.execute(self._sql["segments"], (self._sql["ids"](list(chunk)),)).fetchall():
                seg_id, (path, mtime_ns, file_size, sha256) = row[0], row[12:16]
                info = out.get(seg_id)
                if info is None:
                    info = out[seg_id] = SegmentInfo(
                        id=seg_id, content_id=row[1], modality=row[2], paths=[], text=row[3],
                        char_start=row[4], char_end=row[5], start_s=row[6], end_s=row[7],
                        size=row[8], width=row[9], height=row[10], duration_s=row[11], mtime_ns=0,
                        sha256=sha256, page=row[16], stream=row[17], ocr=bool(row[18]),
                    )
                if path is not None:
                    info.paths.append(from_db(path))
                    info.stats.append((file_size, mtime_ns))
                    info.mtime_ns = max(info.mtime_ns, mtime_ns)
        return out

    def ids_where(self, query: Select[Any]) -> np.ndarray:
        """The integer column ``query`` selects, as int64, in one round trip: SQLite joins the
        ids into one string that numpy parses (500k ids in ~0.1 s, row by row took ~1 s)."""
        compiled = query.compile(dialect=self.engine.dialect, compile_kwargs={"literal_binds": True})
        row = self._reader().execute(self._sql["concat_ids"].format(compiled)).fetchone()
        if not row or not row[0]:
            return np.zeros(0, dtype=np.int64)
        return np.array(row[0].split(","), dtype=np.int64)

    def _reader(self) -> Any:
        """This thread's plain DB-API connection for hot reads (qmark SQL on both engines).
        Each statement runs in autocommit, so it sees every committed write (WAL on SQLite);
        a forked child opens its own."""
        con, pid = getattr(self._local, "reader", (None, 0))
        if con is None or pid != os.getpid():
            con = self._connect_reader()
            self._local.reader = (con, os.getpid())
            with self._readers_lock:
                self._readers.append(con)
        return con

    def _connect_reader(self) -> Any:
        if self.postgres:
            import psycopg

            try:
                return PgReader(self.target.libpq())
            except psycopg.OperationalError as exc:
                raise self._unreachable(exc) from None
        # the connection stays on this thread; close() may run on another, hence no check
        con = sqlite3.connect(self.target.sqlite_uri(), uri=True, check_same_thread=False)
        con.execute("PRAGMA busy_timeout=10000")
        # reads through a memory map: no read() call per page (hit lookup 0.35 -> 0.24 ms)
        con.execute("PRAGMA mmap_size=268435456")
        return con

    def counts(self) -> dict[str, Any]:
        """Item (file), content and segment counts, per modality."""
        with self.session() as s:
            by_mod_files = dict(
                s.execute(
                    select(Content.modality, func.count(File.id))
                    .join(File, File.content_id == Content.id)
                    .group_by(Content.modality)
                ).all()
            )
            by_mod_segments = dict(
                s.execute(
                    select(Content.modality, func.count(Segment.id))
                    .join(Segment, Segment.content_id == Content.id)
                    .group_by(Content.modality)
                ).all()
            )
            return {
                "items": int(s.scalar(select(func.count(File.id))) or 0),
                "contents": int(s.scalar(select(func.count(Content.id))) or 0),
                "segments": int(s.scalar(select(func.count(Segment.id))) or 0),
                "by_modality": {
                    m: {"items": int(by_mod_files.get(m, 0)), "vectors": int(by_mod_segments.get(m, 0))}
                    for m in sorted(set(by_mod_files) | set(by_mod_segments))
                },
            }


_INSERT_CONTENT = (
    "INSERT INTO contents (sha256, modality, size, width, height, duration_s, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_SEGMENT = (
    "INSERT INTO segments (content_id, ordinal, text, char_start, char_end, start_s, end_s, page,"
    " stream, ocr) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# a path already present is re-pointed
_INSERT_FILE = (
    "INSERT INTO files (path, content_id, size, mtime_ns, indexed_at) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (path) DO UPDATE SET content_id = excluded.content_id, size = excluded.size,"
    " mtime_ns = excluded.mtime_ns, indexed_at = excluded.indexed_at"
)
def _content_row(item: NewContent, now: float) -> tuple:
    return (item.sha256, item.modality, item.size, item.width, item.height, item.duration_s, now)


def _segment_row(content_id: int, ordinal: int, seg: SegmentIn) -> tuple:
    return (content_id, ordinal, seg.text, seg.char_start, seg.char_end, seg.start_s, seg.end_s,
            seg.page, seg.stream, 1 if seg.ocr else None)


def _file_rows(item: NewContent, content_id: int, now: float) -> list[tuple]:
    return [(to_db(p), content_id, size, mtime, now) for p, size, mtime in item.files]


def _fts_name(item: NewContent) -> str:
    """The file names a content's passages are also found by."""
    return " ".join(shown(os.path.basename(p)) for p, _, _ in item.files)


def _with_id(insert: str) -> str:
    """``INSERT INTO t (a, ...) VALUES (?, ...)`` with the id given, in psycopg's style."""
    return to_pyformat(insert.replace(" (", " (id, ", 1).replace("VALUES (", "VALUES (?, "))


def _same(sql: str) -> str:
    return sql


@dataclass
class VectorChanges:
    """``Catalog.vector_changes``: what a reader applies to catch up."""

    ids: np.ndarray
    vectors: np.ndarray
    deleted: np.ndarray
    last_seq: int
    version: int
    ann: str | None


def _decode(blobs: Sequence[bytes], dim: int) -> np.ndarray:
    if not blobs:
        return np.zeros((0, dim), dtype=np.float32)
    out = np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(blobs), -1)
    if out.shape[1] != dim:
        raise ValueError(f"stored vectors are {out.shape[1]}-d, the index says {dim}-d")
    return out.astype(np.float32, copy=False)


def _on_read_only_medium(path: Path) -> bool:
    """A catalog no writer can be changing: its folder cannot be written (a read-only mount)
    and no write-ahead log is pending (a writer leaves none once it closes)."""
    return (path.exists() and not os.access(path.parent, os.W_OK)
            and not path.with_name(path.name + "-wal").exists())


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def _chunks(seq: Sequence, n: int) -> Iterable[Sequence]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]
