"""Fresh PostgreSQL databases for tests, created and dropped through the maintenance DB."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa


async def _run_admin(url: str, sql: str) -> None:
    import asyncpg  # type: ignore[import-untyped]

    connection = await asyncpg.connect(url)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@contextmanager
def fresh_postgres_database(base_url: str, prefix: str) -> Iterator[str]:
    """A new empty database on the server of `base_url`; its URL, dropped on exit."""
    parsed = sa.make_url(base_url.replace("postgres://", "postgresql://", 1))
    maintenance = parsed.set(drivername="postgresql", database="postgres")
    admin_url = maintenance.render_as_string(hide_password=False)
    name = f"{prefix}_{secrets.token_hex(4)}"
    asyncio.run(_run_admin(admin_url, f'CREATE DATABASE "{name}"'))
    try:
        yield parsed.set(drivername="postgresql", database=name).render_as_string(
            hide_password=False
        )
    finally:
        asyncio.run(_run_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


PG_ENV = "PASSHOUSE_TEST_DATABASE_URL"


async def _load(
    url: str, statements: Callable[[str], list[str]], *, analyze: bool, no_autovacuum: Sequence[str]
) -> None:
    from passhouse.storage import migrate
    from passhouse.storage.database import Database

    database = Database(url)
    try:
        await migrate.upgrade(database)
        async with database.transaction() as conn:
            if database.dialect == "postgresql":
                for table in no_autovacuum:
                    await conn.execute(
                        sa.text(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
                    )
            for statement in statements(database.dialect):
                await conn.execute(sa.text(statement))
        if analyze and database.dialect == "postgresql":
            async with database.transaction() as conn:
                await conn.execute(sa.text("ANALYZE"))
    finally:
        await database.dispose()


@contextmanager
def loaded_database(
    folder: Path,
    prefix: str,
    statements: Callable[[str], list[str]],
    *,
    analyze: bool = False,
    no_autovacuum: Sequence[str] = (),
) -> Iterator[str]:
    """A migrated database of its own, loaded by `statements(dialect)`: on the PostgreSQL
    server of PASSHOUSE_TEST_DATABASE_URL when it is set, else a SQLite file in `folder`.
    PostgreSQL is analyzed afterwards only when asked (SQLite never is)."""
    base = os.environ.get(PG_ENV)
    if base:
        with fresh_postgres_database(base, prefix) as url:
            asyncio.run(_load(url, statements, analyze=analyze, no_autovacuum=no_autovacuum))
            yield url
        return
    url = f"sqlite:///{folder / f'{prefix}.db'}"
    asyncio.run(_load(url, statements, analyze=analyze, no_autovacuum=no_autovacuum))
    yield url
