"""The catalog's schema, created and upgraded by Alembic (``search/migrations``), run here
programmatically on open.

A catalog at the newest revision costs one small query; anything older (a new catalog, or one
made before Alembic: no ``alembic_version`` table) is upgraded in one transaction. On
PostgreSQL that transaction first takes an advisory lock, so servers and workers starting
together migrate once; DDL there is transactional, so a failed upgrade leaves nothing behind.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect
from sqlalchemy.engine import Connection, Engine

from search.errors import Conflict

# the newest revision in search/migrations/versions (tests check the two agree)
HEAD = "0001"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# pg_advisory_xact_lock key for migrations: any fixed 64-bit number, "crossfind" in ASCII
_MIGRATE_LOCK = 0x63726F737366


def current_revision(conn: Connection) -> str | None:
    if not inspect(conn).has_table("alembic_version"):
        return None
    return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()


def upgrade(engine: Engine) -> None:
    """Bring the catalog behind ``engine`` to ``HEAD``.

    Raises:
        Conflict: the catalog was made by a newer crossfind (a revision unknown here).
    """
    with engine.connect() as conn:
        if current_revision(conn) == HEAD:
            return
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATE_LOCK})")
        current = current_revision(conn)
        if current == HEAD:  # another process got there first
            return
        _run_alembic(conn, current)


def _run_alembic(conn: Connection, current: str | None) -> None:
    from alembic import command
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = conn
    known = {script.revision for script in ScriptDirectory.from_config(config).walk_revisions()}
    if current is not None and current not in known:
        raise Conflict(
            f"the catalog is at schema revision {current}, newer than this crossfind knows "
            f"({HEAD}); upgrade crossfind or rebuild the index with --reindex"
        )
    command.upgrade(config, "head")
