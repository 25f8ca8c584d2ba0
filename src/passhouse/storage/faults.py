"""Database faults a request cannot fix (outage, disk full, read-only), told from bugs.

A fault is answered 503 with Retry-After and logged once when it starts and once when it
ends (OutageLog), instead of a 500 with a traceback per request.
"""

from __future__ import annotations

import asyncio
import enum
import errno
import sqlite3
import time
from collections.abc import Awaitable, Callable

import structlog
from sqlalchemy import exc as sa_exc

log = structlog.get_logger("passhouse.database")


class Fault(enum.Enum):
    UNAVAILABLE = "database_unavailable"
    BUSY = "database_busy"
    DISK_FULL = "disk_full"
    READ_ONLY = "database_read_only"

    @property
    def message(self) -> str:
        return _MESSAGES[self]

    @property
    def retry_after_seconds(self) -> int:
        # A restart or failover takes seconds; freeing disk space takes a person.
        return 5 if self in (Fault.UNAVAILABLE, Fault.BUSY) else 60


_MESSAGES = {
    Fault.UNAVAILABLE: "The database is unreachable; nothing was changed. Try again shortly.",
    Fault.BUSY: "Another process holds the database's write lock; nothing was changed. Retry soon.",
    Fault.DISK_FULL: "The database's disk is full; nothing was saved. Try again later.",
    Fault.READ_ONLY: "The database is read-only; nothing was saved. Try again later.",
}

_CONNECTION_ERRNOS = {
    errno.ECONNREFUSED,
    errno.ECONNRESET,
    errno.ECONNABORTED,
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    errno.ETIMEDOUT,
    errno.EPIPE,
}
# SQLSTATE classes and codes (PostgreSQL appendix A) that say "not now" rather than "wrong".
_PG_UNAVAILABLE_CLASSES = ("08",)  # connection exception
_PG_UNAVAILABLE_CODES = {"57P01", "57P02", "57P03", "53300", "53400"}
_PG_DISK_FULL = "53100"
_PG_READ_ONLY = "25006"  # a hot standby, or default_transaction_read_only


def database_fault(error: BaseException) -> Fault | None:
    """The fault behind `error` (as raised by SQLAlchemy, asyncpg or sqlite3), if any."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        fault = _own_fault(current)
        if fault is not None:
            return fault
        orig = getattr(current, "orig", None)
        pending += [
            orig if isinstance(orig, BaseException) else None,
            current.__cause__,
            current.__context__,
        ]
    return None


def _own_fault(error: BaseException) -> Fault | None:
    if isinstance(error, sqlite3.Error):
        return _sqlite_fault(error)
    sqlstate = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
    if isinstance(sqlstate, str):
        if sqlstate == _PG_DISK_FULL:
            return Fault.DISK_FULL
        if sqlstate == _PG_READ_ONLY:
            return Fault.READ_ONLY
        if sqlstate in _PG_UNAVAILABLE_CODES or sqlstate.startswith(_PG_UNAVAILABLE_CLASSES):
            return Fault.UNAVAILABLE
    if isinstance(error, ConnectionError | TimeoutError):
        return Fault.UNAVAILABLE
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return Fault.DISK_FULL
    if isinstance(error, OSError) and error.errno in _CONNECTION_ERRNOS:
        return Fault.UNAVAILABLE
    if isinstance(error, sa_exc.TimeoutError):  # no pooled connection came free in time
        return Fault.UNAVAILABLE
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return Fault.UNAVAILABLE
    if type(error).__name__ in ("ConnectionDoesNotExistError", "InterfaceError") and (
        "connection" in str(error).lower() and "closed" in str(error).lower()
    ):
        return Fault.UNAVAILABLE  # asyncpg: the server went away under a pooled connection
    return None


def _sqlite_fault(error: sqlite3.Error) -> Fault | None:
    code = getattr(error, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    text = str(error).lower()
    if primary == sqlite3.SQLITE_FULL or "database or disk is full" in text:
        return Fault.DISK_FULL
    if primary == sqlite3.SQLITE_READONLY or "readonly database" in text:
        return Fault.READ_ONLY
    if primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return Fault.BUSY  # another process held the write lock for all of busy_timeout
    if primary in (sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN):
        return Fault.UNAVAILABLE
    return None


class OutageLog:
    """Logs a fault once when it starts and once when it ends, whatever the request rate.

    An outage ends when `probe` (one cheap statement) succeeds again for UNAVAILABLE, or
    when a write commits (`write_succeeded`) for a lock, a full or a read-only disk, which
    a read cannot see.
    """

    def __init__(self, probe: Callable[[], Awaitable[object]], *, interval: float = 1.0) -> None:
        self._probe = probe
        self._interval = interval
        self.fault: Fault | None = None
        self._since = 0.0
        self._failed = 0
        self._watch: asyncio.Task[None] | None = None

    def report(self, fault: Fault, error: BaseException) -> None:
        self._failed += 1
        if self.fault is fault:
            return
        if self.fault is not None:
            self._ended()
        self.fault, self._since, self._failed = fault, time.monotonic(), 1
        log.error("database_fault_started", fault=fault.value, error=_one_line(error))
        if fault is Fault.UNAVAILABLE and self._watch is None:
            self._watch = asyncio.get_running_loop().create_task(self._watch_until_back())

    def write_succeeded(self) -> None:
        if self.fault is not None and self.fault is not Fault.UNAVAILABLE:
            self._ended()

    def _ended(self) -> None:
        log.warning(
            "database_fault_ended",
            fault=self.fault.value if self.fault else None,
            seconds=round(time.monotonic() - self._since, 1),
            failures=self._failed,
        )
        self.fault = None

    async def _watch_until_back(self) -> None:
        try:
            while self.fault is Fault.UNAVAILABLE:
                await asyncio.sleep(self._interval)
                try:
                    await self._probe()
                except Exception as error:
                    if database_fault(error) is None:
                        raise
                    continue
                if self.fault is Fault.UNAVAILABLE:
                    self._ended()
        finally:
            self._watch = None

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)


def _one_line(error: BaseException) -> str:
    orig = getattr(error, "orig", None)
    text = str(orig if orig is not None else error) or type(error).__name__
    return text.splitlines()[0][:300]
