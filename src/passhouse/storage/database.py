"""Engine for SQLite (embedded default) and PostgreSQL (production), one code path."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from passhouse.storage.faults import OutageLog
from passhouse.storage.hot_path import HotPath, open_hot_path

_READ_ONLY = "passhouse_read_only"


def async_url(url: str) -> str:
    """Map the user-facing URL (sqlite:///x.db, postgresql://...) to its async driver."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1))
    if parsed.drivername in ("sqlite", "sqlite+aiosqlite"):
        return parsed.set(drivername="sqlite+aiosqlite").render_as_string(hide_password=False)
    if parsed.drivername.startswith("postgresql"):
        return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    raise ValueError(f"unsupported database URL scheme {parsed.drivername!r}")


class Database:
    """The engine plus the two ways in: a write transaction and a read-only connection."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        hot_pool_size: int = 20,
        connect_timeout: float = 10.0,
    ) -> None:
        self.url = async_url(url)
        self.dialect = "sqlite" if self.url.startswith("sqlite") else "postgresql"
        kwargs: dict[str, Any] = {}
        if self.dialect == "postgresql":
            # Overflow connections are closed when handed back, and opening one costs far
            # more than a query: under load the pool churned (measured: 8.5 % of server
            # time connecting). A pool sized for the load, without overflow, does not.
            kwargs.update(pool_size=pool_size, max_overflow=0, pool_timeout=30)
            kwargs["connect_args"] = {"timeout": connect_timeout}
        # SQLite allows one writer; writers of this process queue here instead of sleeping
        # in SQLite's busy handler (which made p99 latencies of 1.5 s under load).
        self.write_lock = asyncio.Lock()
        # Device requests' three hottest queries, on the driver itself (see hot_path.py).
        self.hot: HotPath = open_hot_path(
            self.url,
            pool_size=hot_pool_size,
            sqlite_write_lock=self.write_lock,
            connect_timeout=connect_timeout,
        )
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        if self.dialect == "sqlite":
            _configure_sqlite(self.engine)
        # Reads on the device hot path are single statements: autocommit saves the
        # BEGIN and ROLLBACK round trips around each of them.
        read_options: dict[str, Any] = {_READ_ONLY: True}
        if self.dialect == "postgresql":
            read_options["isolation_level"] = "AUTOCOMMIT"
        self._reader = self.engine.execution_options(**read_options)
        self.outages = OutageLog(self.ping)

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """One write transaction, committed when the block exits without an error."""
        if self.dialect == "sqlite":
            async with self.write_lock, self.engine.begin() as connection:
                yield connection
        else:
            async with self.engine.begin() as connection:
                yield connection
        self.outages.write_succeeded()

    @asynccontextmanager
    async def reader(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reads, in autocommit: each statement sees its own snapshot."""
        async with self._reader.connect() as connection:
            yield connection

    async def ping(self) -> None:
        async with self.reader() as connection:
            await connection.execute(sa.text("SELECT 1"))

    async def dispose(self) -> None:
        await self.outages.close()
        await self.hot.close()
        await self.engine.dispose()


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        # With a plain BEGIN, concurrent read-then-write transactions fail with "database
        # is locked" when they upgrade; IMMEDIATE takes the write lock up front.
        if not connection.get_execution_options().get(_READ_ONLY):
            connection.exec_driver_sql("BEGIN IMMEDIATE")
