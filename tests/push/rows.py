"""Rows for push tests, inserted directly with Core."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from passhouse.storage.sealing import Sealer
from passhouse.storage.tables import (
    devices,
    pass_types,
    passes,
    push_jobs,
    registrations,
    templates,
)

SECRET_KEY = "test-secret-key-0123456789"


@dataclass
class World:
    """Ids of rows made by `make_world`, for assertions."""

    template_id: int
    pass_ids: list[int]
    tokens: list[str]


async def add_pass_type(
    conn: AsyncConnection,
    pass_type_id: str,
    *,
    certificate_pem: bytes = b"",
    key_pem: bytes = b"",
    sealer: Sealer | None = None,
) -> None:
    sealed = (sealer or Sealer(SECRET_KEY)).seal(key_pem)
    await conn.execute(
        pass_types.insert().values(
            pass_type_id=pass_type_id,
            team_id="TEAM123456",
            certificate_pem=certificate_pem.decode(),
            private_key_encrypted=sealed,
            not_after=4_000_000_000,
            created_at=0,
        )
    )


async def make_world(
    conn: AsyncConnection,
    pass_type_id: str,
    *,
    passes_count: int,
    devices_per_pass: int = 1,
    token_prefix: str = "tok",
    registered_at_ms: int = 1_000,
) -> World:
    """A template with `passes_count` passes, each registered by its own devices."""
    template_id = (
        await conn.execute(
            templates.insert()
            .values(
                name=f"template-{pass_type_id}-{secrets.token_hex(3)}",
                pass_type_id=pass_type_id,
                pass_json={},
                created_at=0,
                updated_at=0,
            )
            .returning(templates.c.id)
        )
    ).scalar_one()
    pass_ids: list[int] = []
    tokens: list[str] = []
    for index in range(passes_count):
        pass_id = (
            await conn.execute(
                passes.insert()
                .values(
                    pass_type_id=pass_type_id,
                    serial_number=f"{token_prefix}-serial-{index}",
                    template_id=template_id,
                    authentication_token=secrets.token_hex(16),
                    share_id=secrets.token_hex(8),
                    data={},
                    version=1,
                    modified_at=0,
                    created_at=0,
                )
                .returning(passes.c.id)
            )
        ).scalar_one()
        pass_ids.append(pass_id)
        for device_index in range(devices_per_pass):
            token = f"{token_prefix}{index:05d}{device_index:02d}" + "ab" * 24
            device_id = (
                await conn.execute(
                    devices.insert()
                    .values(device_library_id=f"dev-{token}", created_at=0)
                    .returning(devices.c.id)
                )
            ).scalar_one()
            await conn.execute(
                registrations.insert().values(
                    device_id=device_id,
                    pass_id=pass_id,
                    push_token=token,
                    registered_at_ms=registered_at_ms,
                )
            )
            tokens.append(token)
    return World(template_id=template_id, pass_ids=pass_ids, tokens=tokens)


async def add_overdue_push(
    conn: AsyncConnection, pass_type_id: str, *, now_ms: int, overdue_seconds: float
) -> None:
    """A push that has been due for `overdue_seconds`, as if no worker ran."""
    since = now_ms - int(overdue_seconds * 1000)
    await conn.execute(
        push_jobs.insert().values(
            push_token="ab" * 32, pass_type_id=pass_type_id, due_at_ms=since, created_at_ms=since
        )
    )
