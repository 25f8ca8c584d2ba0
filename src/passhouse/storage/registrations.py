"""Devices and their registrations for pass updates (Apple's suggested three-table model)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from passhouse.storage import analytics, webhooks
from passhouse.storage.tables import devices, passes, push_jobs, registrations


async def unregister_device(
    conn: AsyncConnection, pass_id: int, device_library_id: str, *, now_ms: int
) -> bool:
    """Remove one registration (counted as an uninstall, and a pass.uninstalled event), and
    the device once it holds none; True if one existed."""
    device_id = await conn.scalar(
        sa.select(devices.c.id).where(devices.c.device_library_id == device_library_id)
    )
    if device_id is None:
        return False
    removed = (
        await conn.execute(
            registrations.delete()
            .where(registrations.c.device_id == device_id, registrations.c.pass_id == pass_id)
            .returning(registrations.c.push_token)
        )
    ).all()
    for (push_token,) in removed:
        await _drop_orphan_push(conn, push_token, pass_id)
    if removed:
        await analytics.count_pass_event(conn, pass_id, at=now_ms // 1000, uninstalls=1)
        # In milliseconds: an event goes to the endpoints subscribed at its exact time.
        await webhooks.emit_uninstalled(conn, pass_id, device_library_id, now_ms=now_ms)
    remaining = await conn.scalar(
        sa.select(registrations.c.pass_id).where(registrations.c.device_id == device_id).limit(1)
    )
    if remaining is None:
        await conn.execute(devices.delete().where(devices.c.id == device_id))
    return bool(removed)


async def _drop_orphan_push(conn: AsyncConnection, push_token: str, pass_id: int) -> None:
    """Forget a queued push nobody will receive: no registration of its pass type is left."""
    pass_type_id = sa.select(passes.c.pass_type_id).where(passes.c.id == pass_id).scalar_subquery()
    still_registered = (
        sa.select(registrations.c.pass_id)
        .join(passes, passes.c.id == registrations.c.pass_id)
        .where(registrations.c.push_token == push_token, passes.c.pass_type_id == pass_type_id)
        .exists()
    )
    await conn.execute(
        push_jobs.delete().where(
            push_jobs.c.push_token == push_token,
            push_jobs.c.pass_type_id == pass_type_id,
            ~still_registered,
        )
    )


async def registrations_for_pass(
    conn: AsyncConnection, pass_id: int, *, after_device_id: int | None, limit: int
) -> list[sa.Row[int, str, str, int]]:
    """(device id, library id, push token, registered at) in device id order: a cursor
    that stays put when a device re-registers."""
    query = (
        sa.select(
            registrations.c.device_id,
            devices.c.device_library_id,
            registrations.c.push_token,
            registrations.c.registered_at_ms,
        )
        .select_from(registrations.join(devices, devices.c.id == registrations.c.device_id))
        .where(registrations.c.pass_id == pass_id)
        .order_by(registrations.c.device_id)
        .limit(limit)
    )
    if after_device_id is not None:
        query = query.where(registrations.c.device_id > after_device_id)
    result = await conn.execute(query)
    return list(result.all())
