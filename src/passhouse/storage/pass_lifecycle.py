"""Passes whose time has come: expired ones to void, ended ones to retire.

Every lookup is a range on an index of passes (ix_passes_voided_expires_at,
ix_passes_retired_at_voided_at) with a LIMIT, so the workers can ask every second
whatever the number of passes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from passhouse.storage.tables import EXPIRY_UNKNOWN, devices, passes, registrations


def is_expired(expires_at: int | None, now: int) -> bool:
    return expires_at is not None and 0 <= expires_at <= now


def unknown_expiry_query(limit: int) -> sa.Select[Any]:
    return (
        sa.select(passes)
        .where(passes.c.voided == sa.false(), passes.c.expires_at == EXPIRY_UNKNOWN)
        .limit(limit)
    )


async def with_unknown_expiry(conn: AsyncConnection, *, limit: int) -> list[sa.Row[Any]]:
    """Passes (not voided) whose expiry must be rendered again."""
    result = await conn.execute(unknown_expiry_query(limit))
    return list(result.all())


async def set_expiries(conn: AsyncConnection, expiries: Mapping[int, int | None]) -> None:
    """Record passes' rendered expiry, by pass id (no new version: the signed files are
    unchanged); one statement for them all."""
    if not expiries:
        return
    await conn.execute(
        passes.update()
        .where(passes.c.id == sa.bindparam("pass_id"), passes.c.expires_at == EXPIRY_UNKNOWN)
        .values(expires_at=sa.bindparam("expiry")),
        [{"pass_id": pass_id, "expiry": expiry} for pass_id, expiry in expiries.items()],
    )


async def reset_template_expiry(
    conn: AsyncConnection, template_id: int, expires_at: int | None, *, per_pass: bool
) -> None:
    """A template changed: its passes' expiry is the template's date for all of them, or,
    when the date is filled from pass data (`per_pass`), unknown until a worker renders it
    again (lifecycle.refresh_unknown_expiry)."""
    await conn.execute(
        passes.update()
        .where(passes.c.template_id == template_id, passes.c.voided == sa.false())
        .values(expires_at=EXPIRY_UNKNOWN if per_pass else expires_at)
    )


def expired_query(now: int, limit: int) -> sa.Select[Any]:
    """Passes past their expiry (by `now`) and not voided.

    No ORDER BY: every one of them is due, and PostgreSQL would otherwise fetch and sort
    a whole backlog (after an upgrade, say) to return the first 200.
    """
    return (
        sa.select(passes.c.id, passes.c.pass_type_id, passes.c.serial_number)
        .where(passes.c.voided == sa.false(), passes.c.expires_at.between(0, now))
        .limit(limit)
    )


async def expired_not_voided(conn: AsyncConnection, *, now: int, limit: int) -> list[sa.Row[Any]]:
    """Passes past their expiry and not voided."""
    result = await conn.execute(expired_query(now, limit))
    rows: list[Any] = list(result.all())
    return rows


def next_expiry_query() -> sa.Select[Any]:
    return sa.select(sa.func.min(passes.c.expires_at)).where(
        passes.c.voided == sa.false(), passes.c.expires_at >= 0
    )


async def next_expiry(conn: AsyncConnection) -> int | None:
    """The earliest expiry of a pass not voided (unknown ones aside)."""
    value = await conn.scalar(next_expiry_query())
    return None if value is None else int(value)


def voided_before_query(ended_before: int, limit: int) -> sa.Select[Any]:
    return (
        sa.select(passes.c.id, passes.c.pass_type_id)
        .where(passes.c.retired_at.is_(None), passes.c.voided_at <= ended_before)
        .limit(limit)
    )


async def to_retire(conn: AsyncConnection, *, ended_before: int, limit: int) -> list[sa.Row[Any]]:
    """Passes voided, or expired and not voided, by `ended_before` and not retired."""
    voided = await conn.execute(voided_before_query(ended_before, limit))
    rows: list[Any] = list(voided.all())
    if len(rows) < limit:
        expired = await conn.execute(expired_query(ended_before, limit - len(rows)))
        rows.extend(expired.all())
    return rows


async def remove_registrations(conn: AsyncConnection, pass_id: int) -> int:
    """Delete a pass's registrations, then the devices left with none; returns how many."""
    of_pass = registrations.c.pass_id == pass_id
    device_ids = list(
        (await conn.execute(sa.select(registrations.c.device_id).where(of_pass))).scalars().all()
    )
    result = await conn.execute(registrations.delete().where(of_pass))
    if device_ids:
        await conn.execute(
            devices.delete().where(
                devices.c.id.in_(device_ids),
                ~sa.exists().where(registrations.c.device_id == devices.c.id),
            )
        )
    return max(result.rowcount, 0)
