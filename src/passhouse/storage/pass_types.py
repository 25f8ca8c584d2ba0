"""Pass types: the issuer's Pass Type ID certificate, its sealed key, and the change counter."""

from __future__ import annotations

import hashlib
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from passhouse.storage.tables import pass_types, passes, templates


async def get_pass_type(conn: AsyncConnection, pass_type_id: str) -> sa.Row[Any] | None:
    result = await conn.execute(
        sa.select(pass_types).where(pass_types.c.pass_type_id == pass_type_id)
    )
    return result.first()


async def list_pass_types(conn: AsyncConnection) -> list[sa.Row[Any]]:
    result = await conn.execute(sa.select(pass_types).order_by(pass_types.c.pass_type_id))
    return list(result.all())


async def save_pass_type(conn: AsyncConnection, values: dict[str, Any]) -> bool:
    """Insert, or replace the credentials of an existing pass type; True when it is new.

    Replacing keeps `last_version` (devices hold tags from it) and clears any APNs error,
    since a new certificate is the fix for a 403.
    """
    pass_type_id = values["pass_type_id"]
    existing = await conn.scalar(
        sa.select(pass_types.c.pass_type_id).where(pass_types.c.pass_type_id == pass_type_id)
    )
    if existing is None:
        await conn.execute(pass_types.insert().values(**values))
        return True
    changes = {k: v for k, v in values.items() if k not in ("pass_type_id", "created_at")}
    await conn.execute(
        pass_types.update()
        .where(pass_types.c.pass_type_id == pass_type_id)
        .values(**changes, apns_error=None, apns_error_at=None)
    )
    return False


async def delete_pass_type(conn: AsyncConnection, pass_type_id: str) -> None:
    await conn.execute(pass_types.delete().where(pass_types.c.pass_type_id == pass_type_id))


async def is_in_use(conn: AsyncConnection, pass_type_id: str) -> bool:
    used_by_template = await conn.scalar(
        sa.select(templates.c.id).where(templates.c.pass_type_id == pass_type_id).limit(1)
    )
    used_by_pass = await conn.scalar(
        sa.select(passes.c.id).where(passes.c.pass_type_id == pass_type_id).limit(1)
    )
    return used_by_template is not None or used_by_pass is not None


async def next_version(conn: AsyncConnection, pass_type_id: str) -> int:
    """Take the next change number of a pass type.

    The UPDATE holds the counter row's lock until the transaction commits, so versions of
    one pass type commit in the order they were taken: a device that has seen version N
    can never later find an uncommitted N-1 appear (see architecture.md).
    """
    version = await conn.scalar(
        pass_types.update()
        .where(pass_types.c.pass_type_id == pass_type_id)
        .values(last_version=pass_types.c.last_version + 1)
        .returning(pass_types.c.last_version)
    )
    if version is None:
        raise LookupError(pass_type_id)
    return int(version)


async def team_id(conn: AsyncConnection, pass_type_id: str) -> str | None:
    return await conn.scalar(
        sa.select(pass_types.c.team_id).where(pass_types.c.pass_type_id == pass_type_id)
    )


async def credential_fingerprints(conn: AsyncConnection) -> dict[str, str]:
    """A value per pass type that changes whenever its push credentials are replaced."""
    result = await conn.execute(
        sa.select(
            pass_types.c.pass_type_id,
            pass_types.c.certificate_pem,
            pass_types.c.apns_key_id,
            pass_types.c.apns_team_id,
        )
    )
    return {
        pass_type_id: hashlib.sha256(f"{cert}|{key_id}|{team}".encode()).hexdigest()
        for pass_type_id, cert, key_id, team in result.all()
    }


async def sealed_secrets(conn: AsyncConnection) -> list[tuple[str, bytes]]:
    """(pass type id, sealed bytes) of every stored private key and APNs key."""
    result = await conn.execute(
        sa.select(
            pass_types.c.pass_type_id,
            pass_types.c.private_key_encrypted,
            pass_types.c.apns_key_encrypted,
        )
    )
    return [
        (row.pass_type_id, sealed)
        for row in result
        for sealed in (row.private_key_encrypted, row.apns_key_encrypted)
        if sealed is not None
    ]


async def next_versions(conn: AsyncConnection, pass_type_id: str, count: int) -> list[int]:
    """Take `count` consecutive change numbers at once (one UPDATE, as next_version)."""
    last = await conn.scalar(
        pass_types.update()
        .where(pass_types.c.pass_type_id == pass_type_id)
        .values(last_version=pass_types.c.last_version + count)
        .returning(pass_types.c.last_version)
    )
    if last is None:
        raise LookupError(pass_type_id)
    return list(range(int(last) - count + 1, int(last) + 1))
