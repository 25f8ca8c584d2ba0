"""Migrations: upgrade on an empty database matches tables.py; downgrade/upgrade round-trips."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from databases import fresh_postgres_database
from passhouse.storage import migrate
from passhouse.storage.database import Database
from passhouse.storage.tables import metadata


@pytest.fixture
def empty_database_url(tmp_path: Path) -> Iterator[str]:
    base = os.environ.get("PASSHOUSE_TEST_DATABASE_URL")
    if not base:
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    with fresh_postgres_database(base, "passhouse_migrations") as url:
        yield url


async def schema_differences(database: Database) -> list[Any]:
    async with database.engine.connect() as conn:
        return await conn.run_sync(
            lambda c: compare_metadata(
                MigrationContext.configure(c, opts={"compare_type": True}), metadata
            )
        )


async def table_names(database: Database) -> set[str]:
    async with database.engine.connect() as conn:
        return await conn.run_sync(lambda c: set(sa.inspect(c).get_table_names()))


async def test_upgrading_an_empty_database_gives_the_models_schema(
    empty_database_url: str,
) -> None:
    database = Database(empty_database_url)
    try:
        await migrate.upgrade(database)

        assert await schema_differences(database) == []
        assert await migrate.current_revision(database) == migrate.head_revision()
    finally:
        await database.dispose()


async def test_downgrade_then_upgrade_round_trips(empty_database_url: str) -> None:
    database = Database(empty_database_url)
    try:
        await migrate.upgrade(database)
        await migrate.downgrade(database, "base")
        emptied = await table_names(database)
        await migrate.upgrade(database)

        assert emptied <= {"alembic_version"}
        assert await schema_differences(database) == []
    finally:
        await database.dispose()


async def test_upgrading_twice_is_harmless(empty_database_url: str) -> None:
    database = Database(empty_database_url)
    try:
        await migrate.upgrade(database)
        await migrate.upgrade(database)

        assert await migrate.current_revision(database) == migrate.head_revision()
    finally:
        await database.dispose()
