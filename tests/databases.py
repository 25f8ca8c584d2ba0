"""Fresh PostgreSQL databases for tests, created and dropped through the maintenance DB."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

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
