"""Scheduled changes: stored with their time, claimed by one worker when due.

A worker claims a due change and applies it in the same transaction as the change's own
writes (new versions, queued pushes, the change's outcome): a worker killed mid-apply
rolls everything back and the change is still pending, so it is applied exactly once.
On PostgreSQL the claim is `FOR UPDATE SKIP LOCKED`, so workers racing for due changes
each take another; SQLite has one writer at a time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from passhouse.storage.tables import scheduled_changes

PENDING = "pending"
APPLIED = "applied"
FAILED = "failed"
CANCELLED = "cancelled"
STATUSES = (PENDING, APPLIED, FAILED, CANCELLED)


async def insert(conn: AsyncConnection, values: Mapping[str, Any]) -> int:
    change_id = await conn.scalar(
        scheduled_changes.insert()
        .values(status=PENDING, **values)
        .returning(scheduled_changes.c.id)
    )
    assert change_id is not None
    return int(change_id)


async def get(conn: AsyncConnection, change_id: int) -> sa.Row[Any] | None:
    result = await conn.execute(
        sa.select(scheduled_changes).where(scheduled_changes.c.id == change_id)
    )
    return result.first()


async def list_changes(
    conn: AsyncConnection, *, status: str | None, after_id: int | None, limit: int
) -> list[sa.Row[Any]]:
    query = sa.select(scheduled_changes).order_by(scheduled_changes.c.id).limit(limit)
    if status is not None:
        query = query.where(scheduled_changes.c.status == status)
    if after_id is not None:
        query = query.where(scheduled_changes.c.id > after_id)
    return list((await conn.execute(query)).all())


async def cancel(conn: AsyncConnection, change_id: int, *, now_ms: int) -> sa.Row[Any] | None:
    """Cancel a pending change; None when it is not pending (any more).

    The status check is in the UPDATE: a worker applying the change holds its row, so
    this waits for it and then finds it applied.
    """
    result = await conn.execute(
        scheduled_changes.update()
        .where(scheduled_changes.c.id == change_id, scheduled_changes.c.status == PENDING)
        .values(status=CANCELLED, finished_at_ms=now_ms)
        .returning(*scheduled_changes.c)
    )
    return result.first()


def due_query(now_ms: int) -> sa.Select[Any]:
    return (
        sa.select(scheduled_changes)
        .where(scheduled_changes.c.status == PENDING, scheduled_changes.c.due_at_ms <= now_ms)
        .order_by(scheduled_changes.c.due_at_ms)
        .limit(1)
    )


async def claim_due(conn: AsyncConnection, *, now_ms: int) -> sa.Row[Any] | None:
    """The earliest due pending change, locked for this transaction; None if none is due."""
    query = due_query(now_ms)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    row: sa.Row[Any] | None = (await conn.execute(query)).first()
    return row


async def finish(
    conn: AsyncConnection,
    change_id: int,
    *,
    status: str,
    now_ms: int,
    error: str | None = None,
    passes_changed: int = 0,
    passes_failed: int = 0,
    failures: list[dict[str, str]] | None = None,
) -> bool:
    """Record a claimed change's outcome; False if it was no longer pending."""
    result = await conn.execute(
        scheduled_changes.update()
        .where(scheduled_changes.c.id == change_id, scheduled_changes.c.status == PENDING)
        .values(
            status=status,
            finished_at_ms=now_ms,
            error=error,
            passes_changed=passes_changed,
            passes_failed=passes_failed,
            failures=failures,
        )
    )
    return result.rowcount == 1


def next_due_query() -> sa.Select[Any]:
    return sa.select(sa.func.min(scheduled_changes.c.due_at_ms)).where(
        scheduled_changes.c.status == PENDING
    )


async def next_due_at_ms(conn: AsyncConnection) -> int | None:
    """When the earliest pending change is due (served by the status/due index)."""
    value = await conn.scalar(next_due_query())
    return None if value is None else int(value)
