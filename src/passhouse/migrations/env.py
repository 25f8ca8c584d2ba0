"""Alembic environment. passhouse.storage.migrate hands in a connection of its async engine."""

from __future__ import annotations

from alembic import context

from passhouse.storage.tables import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=True,  # SQLite cannot ALTER columns; batch mode rebuilds the table
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
