"""Templates: a pass.json skeleton with placeholders, plus its images and localizations."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from passhouse.storage.tables import passes, registrations, template_assets, templates


async def get_template(conn: AsyncConnection, ref: str | int) -> sa.Row[Any] | None:
    """Find a template by id (int or digits) or by name."""
    # Only plain ASCII digits that fit a BIGINT are ids ("²" is a digit to str.isdigit).
    if isinstance(ref, int) or (ref.isascii() and ref.isdigit() and int(ref) < 2**63):
        result = await conn.execute(sa.select(templates).where(templates.c.id == int(ref)))
        row = result.first()
        if row is not None or isinstance(ref, int):
            return row
    result = await conn.execute(sa.select(templates).where(templates.c.name == ref))
    return result.first()


async def list_templates(conn: AsyncConnection) -> list[sa.Row[Any]]:
    result = await conn.execute(sa.select(templates).order_by(templates.c.id))
    return list(result.all())


async def name_taken(conn: AsyncConnection, name: str, *, except_id: int | None = None) -> bool:
    query = sa.select(templates.c.id).where(templates.c.name == name)
    if except_id is not None:
        query = query.where(templates.c.id != except_id)
    return await conn.scalar(query) is not None


async def get_assets(conn: AsyncConnection, template_id: int) -> dict[str, bytes]:
    result = await conn.execute(
        sa.select(template_assets.c.name, template_assets.c.data).where(
            template_assets.c.template_id == template_id
        )
    )
    return {name: bytes(data) for name, data in result.all()}


async def asset_names(conn: AsyncConnection, template_id: int) -> list[str]:
    result = await conn.execute(
        sa.select(template_assets.c.name)
        .where(template_assets.c.template_id == template_id)
        .order_by(template_assets.c.name)
    )
    return list(result.scalars())


async def create_template(
    conn: AsyncConnection,
    *,
    name: str,
    pass_type_id: str,
    pass_json: Mapping[str, Any],
    assets: Mapping[str, bytes],
    now: int,
) -> int:
    template_id = await conn.scalar(
        templates.insert()
        .values(
            name=name,
            pass_type_id=pass_type_id,
            pass_json=dict(pass_json),
            revision=1,
            created_at=now,
            updated_at=now,
        )
        .returning(templates.c.id)
    )
    assert template_id is not None
    await _insert_assets(conn, int(template_id), assets)
    return int(template_id)


async def replace_template(
    conn: AsyncConnection,
    template_id: int,
    *,
    name: str,
    pass_json: Mapping[str, Any],
    assets: Mapping[str, bytes],
    now: int,
) -> None:
    await conn.execute(
        templates.update()
        .where(templates.c.id == template_id)
        .values(
            name=name,
            pass_json=dict(pass_json),
            revision=templates.c.revision + 1,
            updated_at=now,
        )
    )
    await conn.execute(template_assets.delete().where(template_assets.c.template_id == template_id))
    await _insert_assets(conn, template_id, assets)


async def _insert_assets(
    conn: AsyncConnection, template_id: int, assets: Mapping[str, bytes]
) -> None:
    if assets:
        await conn.execute(
            template_assets.insert(),
            [{"template_id": template_id, "name": n, "data": d} for n, d in assets.items()],
        )


async def delete_template(conn: AsyncConnection, template_id: int) -> None:
    await conn.execute(templates.delete().where(templates.c.id == template_id))


async def count_passes(conn: AsyncConnection, template_id: int) -> int:
    count = await conn.scalar(
        sa.select(sa.func.count()).select_from(passes).where(passes.c.template_id == template_id)
    )
    return int(count or 0)


async def count_installed_passes(conn: AsyncConnection, template_id: int) -> int:
    """Passes of a template that at least one device has registered for."""
    count = await conn.scalar(
        sa.select(sa.func.count(sa.distinct(registrations.c.pass_id)))
        .select_from(registrations.join(passes, passes.c.id == registrations.c.pass_id))
        .where(passes.c.template_id == template_id)
    )
    return int(count or 0)


async def count_reach(conn: AsyncConnection, template_id: int) -> dict[str, int]:
    """Of a template's passes: registrations, distinct devices and push tokens, installed
    passes (what a new version of it wakes). One aggregate over the registrations index."""
    row = (
        await conn.execute(
            sa.select(
                sa.func.count(),
                sa.func.count(sa.distinct(registrations.c.device_id)),
                sa.func.count(sa.distinct(registrations.c.push_token)),
                sa.func.count(sa.distinct(registrations.c.pass_id)),
            )
            .select_from(registrations.join(passes, passes.c.id == registrations.c.pass_id))
            .where(passes.c.template_id == template_id)
        )
    ).one()
    return {
        "registrations": int(row[0] or 0),
        "devices": int(row[1] or 0),
        "push_tokens": int(row[2] or 0),
        "installed_passes": int(row[3] or 0),
    }
