"""The hot path's own asyncpg pool, on a real PostgreSQL: never more connections than its
size, callers beyond it wait their turn, and a connection the server ended or a caller
abandoned is replaced rather than handed out again."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest
import sqlalchemy as sa

from databases import PG_ENV
from passhouse.storage.pg_pool import PoolClosed, StatementPool

pytestmark = pytest.mark.skipif(not os.environ.get(PG_ENV), reason=f"needs PostgreSQL ({PG_ENV})")


def _dsn() -> str:
    url = sa.make_url(os.environ[PG_ENV]).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


@pytest.fixture
async def opened() -> AsyncIterator[tuple[StatementPool, list[Any]]]:
    connections: list[Any] = []

    async def connect() -> Any:
        connection = await asyncpg.connect(_dsn())
        connections.append(connection)
        return connection

    pool = StatementPool(connect, 3)
    yield pool, connections
    await pool.close()
    for connection in connections:
        connection.terminate()


async def test_callers_beyond_the_size_wait_and_all_are_served(
    opened: tuple[StatementPool, list[Any]],
) -> None:
    pool, connections = opened
    results = await asyncio.gather(
        *(pool.fetchval("SELECT $1::int FROM pg_sleep(0.02)", n) for n in range(12))
    )

    assert results == list(range(12))
    assert len(connections) == 3


async def test_a_connection_the_server_ended_is_replaced(
    opened: tuple[StatementPool, list[Any]],
) -> None:
    pool, connections = opened
    first_pid = await pool.fetchval("SELECT pg_backend_pid()")
    admin = await asyncpg.connect(_dsn())
    try:
        await admin.execute("SELECT pg_terminate_backend($1)", first_pid)
    finally:
        await admin.close()

    await asyncio.sleep(0.3)  # the server's goodbye reaches the idle connection

    assert await pool.fetchval("SELECT pg_backend_pid()") != first_pid
    assert len(connections) == 2


async def test_a_statement_error_keeps_its_connection(
    opened: tuple[StatementPool, list[Any]],
) -> None:
    pool, connections = opened
    with pytest.raises(asyncpg.PostgresError):
        await pool.fetchval("SELECT 1 / 0")
    assert await pool.fetchval("SELECT 2") == 2
    assert len(connections) == 1


async def test_a_cancelled_caller_gives_its_place_back(
    opened: tuple[StatementPool, list[Any]],
) -> None:
    pool, connections = opened
    slow = [asyncio.create_task(pool.fetchval("SELECT pg_sleep(5)")) for _ in range(3)]
    waiting = asyncio.create_task(pool.fetchval("SELECT 1"))
    await asyncio.sleep(0.3)
    for task in slow:
        task.cancel()
    await asyncio.gather(*slow, return_exceptions=True)

    assert await asyncio.wait_for(waiting, 5) == 1
    # The cancelled ones' connections were closed (their statements were cut off) and
    # their places opened again: later callers are served.
    assert await asyncio.wait_for(
        asyncio.gather(*(pool.fetchval("SELECT $1::int", n) for n in range(6))), 5
    ) == list(range(6))
    assert sum(not connection.is_closed() for connection in connections) <= 3


async def test_a_closed_pool_refuses_callers(opened: tuple[StatementPool, list[Any]]) -> None:
    pool, _ = opened
    assert await pool.fetchval("SELECT 1") == 1
    await pool.close()

    with pytest.raises(PoolClosed):
        await pool.fetchval("SELECT 1")
