"""Admin API keys, stored as SHA-256 hashes (the keys themselves are 256-bit random)."""

from __future__ import annotations

import hashlib
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from passhouse.storage.tables import api_keys


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def add_key(conn: AsyncConnection, *, name: str, key: str, now: int) -> int:
    key_id = await conn.scalar(
        api_keys.insert()
        .values(name=name, prefix=key[:10], key_hash=hash_key(key), created_at=now)
        .returning(api_keys.c.id)
    )
    assert key_id is not None
    return int(key_id)


async def is_valid_key(conn: AsyncConnection, key: str) -> bool:
    # Looking up by hash is safe against timing: the attacker controls the input, not the hash.
    found = await conn.scalar(
        sa.select(api_keys.c.id).where(
            api_keys.c.key_hash == hash_key(key), api_keys.c.revoked_at.is_(None)
        )
    )
    return found is not None


async def find_key(conn: AsyncConnection, key: str) -> tuple[int, str] | None:
    """(id, name) of a valid (not revoked) key; None otherwise."""
    found = (
        await conn.execute(
            sa.select(api_keys.c.id, api_keys.c.name).where(
                api_keys.c.key_hash == hash_key(key), api_keys.c.revoked_at.is_(None)
            )
        )
    ).first()
    return None if found is None else (int(found.id), str(found.name))


async def list_keys(conn: AsyncConnection) -> list[sa.Row[Any]]:
    result = await conn.execute(sa.select(api_keys).order_by(api_keys.c.id))
    return list(result.all())


async def revoke_key(conn: AsyncConnection, key_id: int, *, now: int) -> bool:
    result = await conn.execute(
        api_keys.update()
        .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return bool(result.rowcount)
