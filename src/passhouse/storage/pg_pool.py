"""A pool of asyncpg connections for the hot path's single statements.

asyncpg's own Pool wraps every call in an acquire context with a timeout, a shielded task
and a release callback; py-spy of a PostgreSQL 304 (docs/benchmarks.md) put those at
15-20 % of the request. The hot path needs none of it: each call is one statement in
autocommit (or asyncpg's own transaction around an executemany), so a connection is
taken from a list, used, and put back. Connections are opened on demand up to `size`,
the most recently used first, and one that failed other than by its statement (a lost
server, a cancelled call) is closed rather than handed out again.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg  # type: ignore[import-untyped]

T = TypeVar("T")


class PoolClosed(asyncpg.InterfaceError):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__("the connection pool is closed")


class StatementPool:
    def __init__(self, connect: Callable[[], Awaitable[Any]], size: int) -> None:
        self._connect = connect
        self._size = size
        self._idle: list[Any] = []
        self._opened = 0  # open, being opened, or in use
        # Callers waiting for a connection; None tells one a place came free to open one.
        self._waiters: deque[asyncio.Future[Any]] = deque()
        self._closed = False

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        return await self._run(lambda connection: connection.fetchrow(sql, *args))

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        return await self._run(lambda connection: connection.fetch(sql, *args))

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self._run(lambda connection: connection.fetchval(sql, *args))

    async def executemany(self, sql: str, rows: list[Any]) -> None:
        await self._run(lambda connection: connection.executemany(sql, rows))

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            self._opened -= 1
            await connection.close()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(PoolClosed())

    async def _run(self, call: Callable[[Any], Awaitable[T]]) -> T:
        connection = await self._acquire()
        try:
            result = await call(connection)
        except asyncpg.PostgresError:
            # The statement failed (a constraint, a deadlock); the session is as it was,
            # unless the server ended it (an administrator's shutdown, say).
            self._release(connection)
            raise
        except BaseException:
            self._drop(connection)
            raise
        self._release(connection)
        return result

    async def _acquire(self) -> Any:
        while True:
            while self._idle:
                connection = self._idle.pop()
                if not connection.is_closed():
                    return connection
                self._drop(connection)  # the server ended it while it was idle
            if self._closed:
                raise PoolClosed
            if self._opened < self._size:
                self._opened += 1
                try:
                    return await self._connect()
                except BaseException:
                    self._opened -= 1
                    self._wake_one(None)
                    raise
            waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                connection = await waiter
            except asyncio.CancelledError:
                # Handed a connection in the same moment as cancelled: pass it on.
                if waiter.done() and not waiter.cancelled() and waiter.result() is not None:
                    self._release(waiter.result())
                raise
            if connection is not None:
                return connection

    def _release(self, connection: Any) -> None:
        if self._closed or connection.is_closed():
            self._drop(connection)
        elif not self._wake_one(connection):
            self._idle.append(connection)

    def _drop(self, connection: Any) -> None:
        connection.terminate()
        self._opened -= 1
        self._wake_one(None)

    def _wake_one(self, connection: Any) -> bool:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return True
        return False
