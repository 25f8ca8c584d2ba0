"""Install analytics: counters per hour kept as things happen, and each pass's installs.

Every event upserts its hour's counter row in the event's own transaction, so a counter
is right if and only if the event was saved. The upsert adds to the stored value inside
the database (`SET n = n + excluded.n`): two transactions counting at once both count.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from passhouse.storage.tables import pass_first_installs, passes, registrations, stats_counters


@dataclass(frozen=True, slots=True)
class PassInstalls:
    installs: int  # devices registered for the pass now
    first_installed_at_ms: int | None  # when a device first registered for it


async def pass_installs(conn: AsyncConnection, pass_ids: Sequence[int]) -> dict[int, PassInstalls]:
    """Current installs and first-install time of each pass (two indexed lookups per page)."""
    if not pass_ids:
        return {}
    ids = list(pass_ids)
    counted = await conn.execute(
        sa.select(registrations.c.pass_id, sa.func.count())
        .where(registrations.c.pass_id.in_(ids))
        .group_by(registrations.c.pass_id)
    )
    counts: dict[int, int] = {int(pass_id): int(count) for pass_id, count in counted}
    first = await conn.execute(
        sa.select(pass_first_installs.c.pass_id, pass_first_installs.c.at_ms).where(
            pass_first_installs.c.pass_id.in_(ids)
        )
    )
    firsts: dict[int, int] = {int(pass_id): int(at_ms) for pass_id, at_ms in first}
    return {
        pass_id: PassInstalls(int(counts.get(pass_id, 0)), firsts.get(pass_id)) for pass_id in ids
    }


# --- counters -----------------------------------------------------------------------------

HOUR = 3600
DAY = 86_400
COUNTERS = (
    "issued",
    "updated",
    "voided",
    "installs",
    "uninstalls",
    "pushes_sent",
    "pushes_failed",
)
# Counter rows of a pass type's own events (pushes) carry this template id.
PASS_TYPE_ROWS = 0


def bucket_of(seconds: int) -> int:
    return seconds - seconds % HOUR


def _upsert(conn: AsyncConnection, source: sa.Select[Any] | None, names: Sequence[str]) -> Any:
    """INSERT the counter rows `source` yields (pass_type_id, template_id, bucket, *names),
    adding them to the rows already there."""
    insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(
        stats_counters
    )
    columns = ["pass_type_id", "template_id", "bucket", *names]
    statement = insert.from_select(columns, source) if source is not None else insert
    excluded = statement.excluded
    return statement.on_conflict_do_update(
        index_elements=["pass_type_id", "template_id", "bucket"],
        set_={name: stats_counters.c[name] + excluded[name] for name in names},
    )


async def count_pass_events(
    conn: AsyncConnection, where: sa.ColumnElement[bool], *, at: int, **counts: int
) -> None:
    """Count events of the passes `where` selects (each pass counts every given number),
    per template, in the hour of `at`: one INSERT ... SELECT whatever their number."""
    names = list(counts)
    source = (
        sa.select(
            passes.c.pass_type_id,
            passes.c.template_id,
            sa.literal(bucket_of(at), sa.BigInteger),
            *(sa.func.count() * counts[name] for name in names),
        )
        .where(where)
        .group_by(passes.c.pass_type_id, passes.c.template_id)
    )
    await conn.execute(_upsert(conn, source, names))


async def count_pass_event(conn: AsyncConnection, pass_id: int, *, at: int, **counts: int) -> None:
    await count_pass_events(conn, passes.c.id == pass_id, at=at, **counts)


async def count_template_event(
    conn: AsyncConnection, pass_type_id: str, template_id: int, *, at: int, **counts: int
) -> None:
    """Count `counts` for a template (a template change: updated = passes changed)."""
    statement = _upsert(conn, None, list(counts)).values(
        pass_type_id=pass_type_id, template_id=template_id, bucket=bucket_of(at), **counts
    )
    await conn.execute(statement)


async def count_pushes(conn: AsyncConnection, attempts: Sequence[Mapping[str, Any]]) -> None:
    """Count push outcomes (dicts with pass_type_id, outcome, at_ms) per pass type and hour:
    `delivered` as sent, `failed` (given up) as failed; retries and blocks are not final."""
    rows: dict[tuple[str, int], dict[str, int]] = {}
    for attempt in attempts:
        name = {"delivered": "pushes_sent", "failed": "pushes_failed"}.get(attempt["outcome"])
        if name is None:
            continue
        key = (attempt["pass_type_id"], bucket_of(int(attempt["at_ms"]) // 1000))
        row = rows.setdefault(key, {"pushes_sent": 0, "pushes_failed": 0})
        row[name] += 1
    if not rows:
        return
    statement = _upsert(conn, None, ["pushes_sent", "pushes_failed"])
    await conn.execute(
        statement,
        [
            {"pass_type_id": pt, "template_id": PASS_TYPE_ROWS, "bucket": bucket, **counts}
            for (pt, bucket), counts in sorted(rows.items())
        ],
    )


@dataclass(frozen=True, slots=True)
class Scope:
    """Which counters a question is about: all, a pass type's, or a template's."""

    pass_type_id: str | None = None
    template_id: int | None = None

    def where(self) -> list[sa.ColumnElement[bool]]:
        where = []
        if self.pass_type_id is not None:
            where.append(stats_counters.c.pass_type_id == self.pass_type_id)
        if self.template_id is not None:
            where.append(stats_counters.c.template_id == self.template_id)
        return where


async def series(
    conn: AsyncConnection, scope: Scope, *, start: int, end: int, step: int
) -> dict[int, dict[str, int]]:
    """Sums per `step` seconds (HOUR or DAY, UTC) of the hours in [start, end)."""
    bucket = stats_counters.c.bucket - stats_counters.c.bucket % step
    result = await conn.execute(
        sa.select(bucket.label("start"), *(sa.func.sum(stats_counters.c[n]) for n in COUNTERS))
        .where(*scope.where(), stats_counters.c.bucket >= start, stats_counters.c.bucket < end)
        .group_by(bucket)
    )
    return {int(row[0]): dict(zip(COUNTERS, map(int, row[1:]), strict=True)) for row in result}


async def totals(conn: AsyncConnection, scope: Scope) -> dict[str, int]:
    """All-time sums of every counter."""
    row = (
        await conn.execute(
            sa.select(*(sa.func.coalesce(sa.func.sum(stats_counters.c[n]), 0) for n in COUNTERS))
            .select_from(stats_counters)
            .where(*scope.where())
        )
    ).one()
    return dict(zip(COUNTERS, map(int, row), strict=True))
