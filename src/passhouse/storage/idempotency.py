"""Stored first answers of requests sent with an Idempotency-Key (see idempotency.py)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from passhouse.storage.tables import idempotency_keys


async def claim(
    conn: AsyncConnection, *, scope: str, key: str, fingerprint: str, now: int, expired_before: int
) -> sa.Row[Any] | None:
    """Take the key for this request; None when taken, else the stored row to answer with.

    The row is written in the request's transaction. A concurrent request with the same
    key waits on the unique constraint (PostgreSQL) or the write lock (SQLite) until this
    transaction ends, then finds the committed answer; a rollback frees the key.
    """
    where = (idempotency_keys.c.scope == scope) & (idempotency_keys.c.key == key)
    await conn.execute(
        idempotency_keys.delete().where(where, idempotency_keys.c.created_at < expired_before)
    )
    insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(
        idempotency_keys
    ).values(scope=scope, key=key, fingerprint=fingerprint, status_code=0, body="", created_at=now)
    inserted = await conn.scalar(
        insert.on_conflict_do_nothing(
            index_elements=[idempotency_keys.c.scope, idempotency_keys.c.key]
        ).returning(idempotency_keys.c.id)
    )
    if inserted is not None:
        return None
    return (await conn.execute(sa.select(idempotency_keys).where(where))).first()


async def remember(
    conn: AsyncConnection, *, scope: str, key: str, status_code: int, body: str
) -> None:
    await conn.execute(
        idempotency_keys.update()
        .where(idempotency_keys.c.scope == scope, idempotency_keys.c.key == key)
        .values(status_code=status_code, body=body)
    )


async def prune(conn: AsyncConnection, *, created_before: int) -> int:
    result = await conn.execute(
        idempotency_keys.delete().where(idempotency_keys.c.created_at < created_before)
    )
    return int(result.rowcount)
