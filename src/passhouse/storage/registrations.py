"""Devices and their registrations for pass updates (Apple's suggested three-table model)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from passhouse.storage.tables import devices, passes, push_jobs, registrations


def _insert(conn: AsyncConnection, table: sa.Table) -> Any:
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)


async def register_device(
    conn: AsyncConnection, pass_id: int, device_library_id: str, push_token: str, *, now_ms: int
) -> bool:
    """Store the registration; False when it existed (its push token is then replaced)."""
    device_insert = _insert(conn, devices).values(
        device_library_id=device_library_id, created_at=now_ms // 1000
    )
    device_id = await conn.scalar(
        device_insert.on_conflict_do_nothing(
            index_elements=[devices.c.device_library_id]
        ).returning(devices.c.id)
    )
    if device_id is None:
        device_id = await conn.scalar(
            sa.select(devices.c.id).where(devices.c.device_library_id == device_library_id)
        )
    created = await conn.scalar(
        _insert(conn, registrations)
        .values(
            device_id=device_id,
            pass_id=pass_id,
            push_token=push_token,
            registered_at_ms=now_ms,
        )
        .on_conflict_do_nothing(index_elements=[registrations.c.device_id, registrations.c.pass_id])
        .returning(registrations.c.device_id)
    )
    if created is not None:
        return True
    # Devices get new push tokens; the newest registration's token is the one that works.
    await conn.execute(
        registrations.update()
        .where(registrations.c.device_id == device_id, registrations.c.pass_id == pass_id)
        .values(push_token=push_token, registered_at_ms=now_ms)
    )
    return False


async def unregister_device(conn: AsyncConnection, pass_id: int, device_library_id: str) -> bool:
    """Remove one registration, and the device once it holds none; True if one existed."""
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


_UPDATED_SINCE = (
    sa.select(passes.c.serial_number, passes.c.version)
    .select_from(
        devices.join(registrations, registrations.c.device_id == devices.c.id).join(
            passes, passes.c.id == registrations.c.pass_id
        )
    )
    .where(
        devices.c.device_library_id == sa.bindparam("device_library_id"),
        passes.c.pass_type_id == sa.bindparam("pass_type_id"),
        passes.c.version > sa.bindparam("since"),
    )
)


async def serials_updated_since(
    conn: AsyncConnection, device_library_id: str, pass_type_id: str, since: int
) -> list[tuple[str, int]]:
    """(serial, version) of this device's registered passes of a type changed after `since`.

    Served by the unique index on devices.device_library_id and the registrations primary
    key: the cost depends on what this device holds, not on how many passes exist.
    """
    result = await conn.execute(
        _UPDATED_SINCE,
        {"device_library_id": device_library_id, "pass_type_id": pass_type_id, "since": since},
    )
    return [(serial, int(version)) for serial, version in result.all()]


async def registrations_for_pass(
    conn: AsyncConnection, pass_id: int
) -> list[sa.Row[str, str, int]]:
    result = await conn.execute(
        sa.select(
            devices.c.device_library_id,
            registrations.c.push_token,
            registrations.c.registered_at_ms,
        )
        .select_from(registrations.join(devices, devices.c.id == registrations.c.device_id))
        .where(registrations.c.pass_id == pass_id)
        .order_by(registrations.c.registered_at_ms)
    )
    return list(result.all())


async def count_registrations(conn: AsyncConnection) -> int:
    return int(await conn.scalar(sa.select(sa.func.count()).select_from(registrations)) or 0)
