"""Where the catalog lives and what differs between its two engines (SQLite, PostgreSQL).

A catalog is the SQLite file in the index folder (the default) or a PostgreSQL database named
by a URL (``postgresql://user@host:5432/db``). The URL is recorded in the index folder without
its password: a password is taken from the URL given at use (``--catalog`` /
``CROSSFIND_CATALOG``) or, by libpq itself, from ``PGPASSWORD`` or ``~/.pgpass``.

The hot reads (the hit lookup, keyword search, vector catch-up) run on a plain DB-API
connection per thread, in autocommit (``PgReader`` on PostgreSQL); their SQL is written once
with ``?`` placeholders and turned into psycopg's ``%s`` here, and the few statements that
differ are in ``SQLITE_SQL`` / ``POSTGRES_SQL``.
"""

from __future__ import annotations

import json
import re
import sqlite3
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import create_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from search.errors import BadRequest


@dataclass(frozen=True)
class CatalogTarget:
    """A resolved catalog: a SQLite file or a PostgreSQL URL (with its password, if given)."""

    sqlite_path: Path | None = None
    url: URL | None = None
    # a SQLite file on a read-only medium (no writer can change it): opened as immutable, since
    # SQLite cannot otherwise read a WAL database where it may not create the -shm file
    immutable: bool = False

    @property
    def postgres(self) -> bool:
        return self.url is not None

    @property
    def sqlalchemy_url(self) -> str | URL:
        if self.url is None:
            return f"sqlite:///{self.sqlite_uri()}&uri=true" if self.immutable else f"sqlite:///{self.sqlite_path}"
        return _with_network_defaults(self.url).set(drivername="postgresql+psycopg")

    def sqlite_uri(self) -> str:
        """The SQLite file as a ``file:`` URI (immutable when so marked), for ``uri=True``."""
        return f"file:{quote(str(self.sqlite_path))}?immutable={int(self.immutable)}"

    @property
    def public(self) -> str:
        """What may be written down and shown: the URL without its password, or the file."""
        return public_url(self.url) if self.url is not None else str(self.sqlite_path)

    def libpq(self) -> str:
        """A libpq connection string (psycopg.connect) for the raw reader connections."""
        assert self.url is not None
        return _with_network_defaults(self.url).set(drivername="postgresql").render_as_string(hide_password=False)


# A server that stops answering (a hung host, a dropped network path, a firewall that eats
# packets) must give an error, not a wait without end: libpq gives up connecting after
# connect_timeout, and TCP keepalives / tcp_user_timeout end a connection whose peer is gone
# mid-query. A URL's own values win (e.g. ?connect_timeout=60).
NETWORK_DEFAULTS = {
    "connect_timeout": "10",
    "keepalives": "1", "keepalives_idle": "15", "keepalives_interval": "5", "keepalives_count": "3",
    "tcp_user_timeout": "15000",
}


def _with_network_defaults(url: URL) -> URL:
    missing = {k: v for k, v in NETWORK_DEFAULTS.items() if k not in url.query}
    return url.update_query_dict(missing) if missing else url


def parse_catalog(spec: str) -> URL:
    """A ``postgresql://`` URL from ``--catalog``; anything else is refused with the fix."""
    try:
        url = make_url(spec)
    except ArgumentError:
        url = None
    if url is None or url.get_backend_name() != "postgresql" or url.drivername not in (
        "postgresql", "postgresql+psycopg"
    ):
        raise BadRequest(
            f"--catalog {public_spec(spec)!r} is not a PostgreSQL URL; give "
            "postgresql://USER@HOST:PORT/DB (the default, a SQLite file in the index folder, "
            "needs no --catalog)"
        )
    return url


def public_url(url: URL) -> str:
    # URL.set(password=None) would keep the password: None means "unchanged" there
    return url._replace(drivername="postgresql", password=None).render_as_string(hide_password=False)


def public_spec(spec: str) -> str:
    """``spec`` with any password left out (for messages)."""
    try:
        return public_url(make_url(spec))
    except ArgumentError:
        return re.sub(r"(://[^:/@]*):[^@]*@", r"\1@", spec)


def same_database(a: URL, b: URL) -> bool:
    """Whether two URLs name the same database (passwords and driver names aside)."""
    return public_url(a) == public_url(b)


def to_pyformat(sql: str) -> str:
    """qmark SQL (``?``) as psycopg's ``%s`` (our SQL holds no other ``?`` or ``%``)."""
    return sql.replace("%", "%%").replace("?", "%s")


def glob_regex(glob: str) -> str:
    """A SQLite GLOB pattern (``*``, ``?``, ``[...]``, case-sensitive) as an anchored POSIX
    regular expression for PostgreSQL's ``~``."""
    out = ["^"]
    i = 0
    while i < len(glob):
        ch = glob[i]
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch == "[" and (end := glob.find("]", i + 2)) != -1:
            body = glob[i + 1 : end]
            body = "^" + body[1:] if body.startswith("^") else body
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end
        else:
            out.append(ch if ch.isalnum() or ch in "/ _-" else "\\" + ch)
        i += 1
    return "".join(out) + "$"


def connect_args(target: CatalogTarget) -> dict[str, Any]:
    """Keyword arguments for ``create_engine``."""
    if not target.postgres:
        return {}
    # a pool per process; readers and writers see each other's commits (READ COMMITTED)
    return {"pool_pre_ping": True, "pool_size": 4, "max_overflow": 8}


def resolve(sqlite_path: Path, recorded: str, given: str | None, *, exists: bool) -> CatalogTarget:
    """The catalog of an index folder: ``recorded`` (its manifest's, password-free) or, for a
    new index, ``given``; a ``given`` URL that names the recorded database adds its password.

    Raises:
        BadRequest: ``given`` is not a PostgreSQL URL.
        Conflict: ``given`` names another catalog than the index's own.
    """
    from search.errors import Conflict

    url = parse_catalog(given) if given else None
    if recorded:
        kept = parse_catalog(recorded)
        if url is not None and not same_database(url, kept):
            raise Conflict(
                f"the index at {sqlite_path.parent} keeps its catalog in {recorded}, not in "
                f"{public_url(url)}; pass that --catalog (or none), or rebuild with --reindex"
            )
        return CatalogTarget(url=url if url is not None else kept)
    if url is not None and exists:
        raise Conflict(
            f"the index at {sqlite_path.parent} keeps its catalog in SQLite ({sqlite_path.name}); "
            f"rebuild it with --reindex to move it to {public_url(url)}, or leave out --catalog"
        )
    return CatalogTarget(url=url) if url is not None else CatalogTarget(sqlite_path=sqlite_path)


_WORD = re.compile(r"[^\W_]+")


def fts_words(text: str) -> list[str]:
    """The words of ``text`` as SQLite's FTS5 ``unicode61 remove_diacritics 2`` tokenizer finds
    them (runs of letters and digits, lower-cased, accents removed), for PostgreSQL's
    tsvectors and tsqueries: both sides are tokenised here, so the two engines match the same
    words whatever the server's locale."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _WORD.findall(bare)


# the hit lookup: segment + content + every file path (sorted), ids passed as one JSON array
# (a PostgreSQL array there) so the statement text never changes and stays prepared
SEGMENTS_SQL = """
SELECT s.id, s.content_id, c.modality, s.text, s.char_start, s.char_end, s.start_s, s.end_s,
       c.size, c.width, c.height, c.duration_s, f.path, f.mtime_ns, f.size, c.sha256,
       s.page, s.stream, s.ocr
FROM segments s
JOIN contents c ON c.id = s.content_id
LEFT JOIN files f ON f.content_id = s.content_id
WHERE s.id IN (SELECT value FROM json_each(?))
ORDER BY s.id, f.path
"""


VECTORS_SQL = "SELECT id, vec FROM vectors WHERE id IN (SELECT value FROM json_each(?))"

# what differs between the engines in the hot reads: id lists (a JSON array that json_each
# reads, a PostgreSQL array), joining ids into one string, a read snapshot, substring search
SQLITE_SQL: dict[str, Any] = {
    "segments": SEGMENTS_SQL, "vectors": VECTORS_SQL, "ids": json.dumps,
    "concat_ids": "SELECT group_concat(id) FROM ({})", "snapshot": "BEGIN", "instr": "instr",
    "more_words": "",
}
POSTGRES_SQL: dict[str, Any] = {
    "segments": SEGMENTS_SQL.replace("IN (SELECT value FROM json_each(?))", "= ANY(?)"),
    "vectors": VECTORS_SQL.replace("IN (SELECT value FROM json_each(?))", "= ANY(?)"),
    "ids": list,
    "concat_ids": "SELECT string_agg(id::text, ',') FROM ({}) AS q",
    "snapshot": "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
    "instr": "strpos",
    "more_words": ", tsv = tsv || to_tsvector('simple', :w)",
}
PG_FTS_INSERT = "INSERT INTO passages_fts (rowid, body, name, tsv) VALUES (%s, %s, %s, to_tsvector('simple', %s))"


class PgReader:
    """A psycopg connection that takes the catalog's qmark SQL (psycopg prepares a statement
    on its fifth run, so the hot reads skip planning as sqlite3's statement cache does).

    A connection the server dropped (a restart, a failover) is opened again and a statement
    outside a transaction retried once, so a long-running server outlives its database's
    restarts; inside a read snapshot the error goes up (the snapshot is gone)."""

    def __init__(self, conninfo: str) -> None:
        import psycopg

        self._psycopg = psycopg
        self._conninfo = conninfo
        self.con = self._connect()
        self._sql: dict[str, str] = {}

    def _connect(self) -> Any:
        # the hot reads are index probes into a working set the server caches: plan them
        # with the SSD-era page cost (PostgreSQL's default 4 picked a 75k-row scan over 750
        # index probes for a 1% filter: 55 ms against 6 ms at 100k segments)
        con = self._psycopg.connect(self._conninfo, autocommit=True)
        con.execute("SET random_page_cost = 1.1")  # a SET, so a URL's own ?options= stay
        return con

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        converted = self._sql.get(sql)
        if converted is None:
            converted = self._sql[sql] = to_pyformat(sql)
        idle = self.con.info.transaction_status == self._psycopg.pq.TransactionStatus.IDLE
        try:
            return self.con.execute(converted, params)
        except self._psycopg.OperationalError:
            if not (idle and self.con.broken):
                raise
            self.con = self._connect()
            return self.con.execute(converted, params)

    def close(self) -> None:
        self.con.close()


def pg_integrity_error() -> type[Exception]:
    try:
        import psycopg
    except ImportError:  # pragma: no cover - a SQLite-only install
        return sqlite3.IntegrityError
    return psycopg.IntegrityError


def drop_postgres_catalog(target: CatalogTarget) -> None:
    """Remove every table of a PostgreSQL catalog (``--reindex``): the next open recreates
    them. Runs under the writer lock's caller; DDL is transactional, so it happens whole."""
    engine = create_engine(target.sqlalchemy_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "DROP TABLE IF EXISTS passages_fts, vectors, tombstones, counters, segments, files,"
                " contents, meta, alembic_version CASCADE"
            )
            conn.exec_driver_sql("DROP FUNCTION IF EXISTS crossfind_bump, crossfind_segment_gone CASCADE")
    finally:
        engine.dispose()
