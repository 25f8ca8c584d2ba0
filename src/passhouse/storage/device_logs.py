"""Messages devices post to /v1/log, kept for the issuer to read."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from passhouse.storage.tables import REMOTE_ADDR_LENGTH, device_logs


async def add_messages(
    conn: AsyncConnection, messages: Sequence[str], *, remote_addr: str | None, now: int, keep: int
) -> None:
    if not messages:
        return
    if remote_addr is not None:
        # The address may come from a forwarding header, which can hold any text; an
        # over-long one would fail the insert on PostgreSQL (varchar), so keep what fits.
        remote_addr = remote_addr[:REMOTE_ADDR_LENGTH]
    await conn.execute(
        device_logs.insert(),
        [{"message": m, "remote_addr": remote_addr, "at": now} for m in messages],
    )
    # Bounded table: drop what falls beyond the newest `keep` rows.
    cutoff = await conn.scalar(
        sa.select(device_logs.c.id).order_by(device_logs.c.id.desc()).offset(keep).limit(1)
    )
    if cutoff is not None:
        await conn.execute(device_logs.delete().where(device_logs.c.id <= cutoff))


async def recent_messages(
    conn: AsyncConnection, *, limit: int, before_id: int | None
) -> list[sa.Row[Any]]:
    query = sa.select(device_logs).order_by(device_logs.c.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(device_logs.c.id < before_id)
    result = await conn.execute(query)
    return list(result.all())
