"""Schema v2, the baseline: tables, keyword index, triggers and filter indexes.

On SQLite this is exactly what crossfind created before Alembic, written so that it is
idempotent: a catalog made by an earlier crossfind (schema v1 or v2, no ``alembic_version``)
runs it too, gains what it lacks (v1's missing segment columns) and is stamped, losing nothing.

On PostgreSQL the same tables hold 64-bit integers, vectors as ``bytea`` and paths in the
"C" collation (code point order, as SQLite compares, so path-prefix ranges hold); the FTS5
table becomes a table with a generated ``tsvector`` column and a GIN index; the triggers are
plpgsql, the version counter moves once per statement.

Revision ID: 0001
Revises:
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# frozen here: later revisions change the schema, never this copy
_INT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_PATH = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")


def _tables() -> sa.MetaData:
    md = sa.MetaData()
    sa.Table("meta", md, sa.Column("key", sa.String, primary_key=True), sa.Column("value", sa.Text, nullable=False))
    sa.Table(
        "contents", md,
        sa.Column("id", _INT, primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=False, unique=True, index=True),
        sa.Column("modality", sa.String(8), nullable=False, index=True),
        sa.Column("size", _INT, nullable=False),
        sa.Column("width", _INT), sa.Column("height", _INT), sa.Column("duration_s", sa.Float),
        sa.Column("created_at", sa.Float, nullable=False),
        sqlite_autoincrement=True,
    )
    sa.Table(
        "files", md,
        sa.Column("id", _INT, primary_key=True),
        sa.Column("path", _PATH, nullable=False, unique=True, index=True),
        sa.Column("content_id", _INT, sa.ForeignKey("contents.id", ondelete="CASCADE"), nullable=False,
                  index=True),
        sa.Column("size", _INT, nullable=False),
        sa.Column("mtime_ns", _INT, nullable=False),
        sa.Column("indexed_at", sa.Float, nullable=False),
        sqlite_autoincrement=True,
    )
    sa.Table(
        "segments", md,
        sa.Column("id", _INT, primary_key=True),
        sa.Column("content_id", _INT, sa.ForeignKey("contents.id", ondelete="CASCADE"), nullable=False,
                  index=True),
        sa.Column("ordinal", _INT, nullable=False),
        sa.Column("text", sa.Text), sa.Column("char_start", _INT), sa.Column("char_end", _INT),
        sa.Column("start_s", sa.Float), sa.Column("end_s", sa.Float),
        sa.Column("page", _INT), sa.Column("stream", sa.String(8)), sa.Column("ocr", _INT),
        sqlite_autoincrement=True,
    )
    sa.Table(
        "vectors", md,
        sa.Column("id", _INT, primary_key=True, autoincrement=False),
        sa.Column("vec", sa.LargeBinary, nullable=False),
    )
    sa.Table("tombstones", md, sa.Column("seq", _INT, primary_key=True),
             sa.Column("segment_id", _INT, nullable=False), sqlite_autoincrement=True)
    sa.Table("counters", md, sa.Column("name", sa.String, primary_key=True),
             sa.Column("value", _INT, nullable=False))
    return md


# columns added to segments after schema v1 shipped: a v1 catalog gains them (NULL)
_ADDED_SEGMENT_COLUMNS = {"page": "INTEGER", "stream": "VARCHAR(8)", "ocr": "INTEGER"}

_FILTER_INDEXES = (
    "CREATE INDEX IF NOT EXISTS ix_files_mtime_ns ON files (mtime_ns)",
    "CREATE INDEX IF NOT EXISTS ix_files_size ON files (size)",
    "CREATE INDEX IF NOT EXISTS ix_contents_duration_s ON contents (duration_s)",
)

# a segment's vector leaves with it (and a tombstone records it); every change moves the counter
_SQLITE_BUMP = "UPDATE counters SET value = value + 1 WHERE name = 'catalog';"
_SQLITE = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS passages_fts USING fts5("
    "body, name, tokenize='unicode61 remove_diacritics 2')",
    "INSERT OR IGNORE INTO counters (name, value) VALUES ('catalog', 0)",
    "CREATE TRIGGER IF NOT EXISTS segments_ad AFTER DELETE ON segments BEGIN "
    "DELETE FROM vectors WHERE id = old.id; "
    "INSERT INTO tombstones (segment_id) VALUES (old.id); " + _SQLITE_BUMP + " END",
    "CREATE TRIGGER IF NOT EXISTS segments_ai AFTER INSERT ON segments BEGIN " + _SQLITE_BUMP + " END",
    "CREATE TRIGGER IF NOT EXISTS vectors_ai AFTER INSERT ON vectors BEGIN " + _SQLITE_BUMP + " END",
    "CREATE TRIGGER IF NOT EXISTS files_ai AFTER INSERT ON files BEGIN " + _SQLITE_BUMP + " END",
    "CREATE TRIGGER IF NOT EXISTS files_ad AFTER DELETE ON files BEGIN " + _SQLITE_BUMP + " END",
    "CREATE TRIGGER IF NOT EXISTS files_au AFTER UPDATE ON files BEGIN " + _SQLITE_BUMP + " END",
)

_POSTGRES = (
    # keyword search: one row per segment (``rowid`` = segment id, as FTS5's) with its words
    # (body and file names, tokenised by search.dialect.fts_words as FTS5 would) in a tsvector
    # of the 'simple' configuration: no stemming and no stop words, as FTS5
    "CREATE TABLE passages_fts (rowid BIGINT PRIMARY KEY, body TEXT NOT NULL DEFAULT '',"
    " name TEXT NOT NULL DEFAULT '', tsv tsvector NOT NULL)",
    "CREATE INDEX ix_passages_fts_tsv ON passages_fts USING gin (tsv)",
    "INSERT INTO counters (name, value) VALUES ('catalog', 0) ON CONFLICT DO NOTHING",
    # new catalogs store paths escaped (search.paths) from the start
    "INSERT INTO meta (key, value) VALUES ('path_encoding', 'ffff-escape') ON CONFLICT DO NOTHING",
    "CREATE FUNCTION crossfind_bump() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
    " UPDATE counters SET value = value + 1 WHERE name = 'catalog'; RETURN NULL; END $$",
    "CREATE FUNCTION crossfind_segment_gone() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
    " DELETE FROM vectors WHERE id = OLD.id;"
    " INSERT INTO tombstones (segment_id) VALUES (OLD.id); RETURN NULL; END $$",
    "CREATE TRIGGER segments_ad AFTER DELETE ON segments FOR EACH ROW"
    " EXECUTE FUNCTION crossfind_segment_gone()",
    # the counter once per statement (a batch of 1000 rows moves it once, not 1000 times)
    "CREATE TRIGGER segments_bump AFTER INSERT OR DELETE ON segments FOR EACH STATEMENT"
    " EXECUTE FUNCTION crossfind_bump()",
    "CREATE TRIGGER vectors_bump AFTER INSERT ON vectors FOR EACH STATEMENT EXECUTE FUNCTION crossfind_bump()",
    "CREATE TRIGGER files_bump AFTER INSERT OR UPDATE OR DELETE ON files FOR EACH STATEMENT"
    " EXECUTE FUNCTION crossfind_bump()",
)


def upgrade() -> None:
    conn = op.get_bind()
    _tables().create_all(conn, checkfirst=True)
    if conn.dialect.name == "sqlite":
        have = {row[1] for row in conn.exec_driver_sql("PRAGMA table_info(segments)")}
        for name, sql_type in _ADDED_SEGMENT_COLUMNS.items():
            if name not in have:
                conn.exec_driver_sql(f"ALTER TABLE segments ADD COLUMN {name} {sql_type}")
        statements: tuple[str, ...] = _SQLITE + _FILTER_INDEXES
    else:
        statements = _POSTGRES + _FILTER_INDEXES
    for sql in statements:
        conn.exec_driver_sql(sql)


def downgrade() -> None:
    raise NotImplementedError("the baseline cannot be downgraded; remove the catalog instead")
