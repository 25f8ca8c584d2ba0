"""Migrations: upgrade on an empty database matches tables.py; downgrade/upgrade round-trips."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from passhouse.storage import migrate
from passhouse.storage.database import Database
from passhouse.storage.tables import metadata


async def _pg_admin(url: str, sql: str) -> None:
    import asyncpg  # type: ignore[import-untyped]

    connection = await asyncpg.connect(url)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@pytest.fixture
def empty_database_url(tmp_path: Path) -> Iterator[str]:
    base = os.environ.get("PASSHOUSE_TEST_DATABASE_URL")
    if not base:
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    parsed = sa.make_url(base.replace("postgres://", "postgresql://", 1))
    maintenance = parsed.set(drivername="postgresql", database="postgres")
    admin_url = maintenance.render_as_string(hide_password=False)
    name = f"passhouse_migrations_{secrets.token_hex(4)}"
    asyncio.run(_pg_admin(admin_url, f'CREATE DATABASE "{name}"'))
    try:
        yield parsed.set(drivername="postgresql", database=name).render_as_string(
            hide_password=False
        )
    finally:
        asyncio.run(_pg_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


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
