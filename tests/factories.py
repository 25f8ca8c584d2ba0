"""Issued passes for tests, made through the same use case the admin API calls."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from passhouse import issuing
from passhouse.bootstrap import Runtime
from passhouse.storage import pass_versions


@dataclass(frozen=True)
class IssuedPass:
    pass_type_id: str
    serial_number: str
    authentication_token: str
    pass_id: int

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"ApplePass {self.authentication_token}"}

    @property
    def path(self) -> str:
        return f"/passkit/v1/passes/{self.pass_type_id}/{self.serial_number}"

    def registration_path(self, device_library_id: str) -> str:
        return (
            f"/passkit/v1/devices/{device_library_id}/registrations/"
            f"{self.pass_type_id}/{self.serial_number}"
        )


async def issue(
    runtime: Runtime, builder: issuing.PassBuilder, template: str, **data: Any
) -> IssuedPass:
    async with runtime.database.transaction() as conn:
        row = await issuing.issue_pass(
            conn,
            builder,
            template_ref=template,
            data={"name": "Ada", "balance": 10, **data},
            actor=pass_versions.CLI,
        )
    return IssuedPass(row.pass_type_id, row.serial_number, row.authentication_token, row.id)


async def count_rows(runtime: Runtime, table: sa.Table) -> int:
    async with runtime.database.reader() as conn:
        return int(await conn.scalar(sa.select(sa.func.count()).select_from(table)) or 0)
