"""Alembic's environment for the catalog: always run programmatically (``search.migrate``)
on the connection it is handed, inside that connection's transaction."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None)
with context.begin_transaction():
    context.run_migrations()
