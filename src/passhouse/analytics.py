"""Use case: install analytics, read from the counters kept as things happen (ADR 0021).

Nothing here scans passes or registrations: a 90-day daily series reads the hourly counter
rows of those days, and the totals the counter rows of all time (a few per hour).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncConnection

from passhouse.errors import InvalidInput, NotFound
from passhouse.storage import analytics, pass_types, templates

Interval = Literal["hour", "day"]
STEPS = {"hour": analytics.HOUR, "day": analytics.DAY}
# Points when `from` is left out: the last 48 hours or 30 days, the current one included.
DEFAULT_POINTS = {"hour": 48, "day": 30}
# A series of at most this many points (100 days by the hour, 6 years by the day).
MAX_POINTS = 2400
PUSH_COUNTERS = ("pushes_sent", "pushes_failed")


def _iso(seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat().replace("+00:00", "Z")


def _seconds(moment: dt.datetime, name: str) -> int:
    if moment.tzinfo is None:
        raise InvalidInput(f"{name} needs a time zone (Z or +hh:mm).")
    return int(moment.timestamp())


async def scope_of(
    conn: AsyncConnection, *, template: str | None, pass_type_id: str | None
) -> analytics.Scope:
    if template is not None:
        row = await templates.get_template(conn, template)
        if row is None:
            raise NotFound(f"No template {template!r}.")
        if pass_type_id is not None and pass_type_id != row.pass_type_id:
            raise InvalidInput(
                f"Template {row.name!r} belongs to pass type {row.pass_type_id!r}, "
                f"not {pass_type_id!r}."
            )
        return analytics.Scope(pass_type_id=row.pass_type_id, template_id=row.id)
    if pass_type_id is not None:
        if await pass_types.get_pass_type(conn, pass_type_id) is None:
            raise NotFound(f"No pass type {pass_type_id!r}.")
        return analytics.Scope(pass_type_id=pass_type_id)
    return analytics.Scope()


async def totals(conn: AsyncConnection, scope: analytics.Scope) -> dict[str, int | None]:
    """All-time figures: passes issued and still active, devices holding them, pushes."""
    sums = await analytics.totals(conn, scope)
    figures: dict[str, int | None] = {
        "passes": sums["issued"],
        "voided": sums["voided"],
        "active_passes": sums["issued"] - sums["voided"],
        "active_installs": sums["installs"] - sums["uninstalls"],
        "installs": sums["installs"],
        "uninstalls": sums["uninstalls"],
        "updated": sums["updated"],
        "pushes_sent": sums["pushes_sent"],
        "pushes_failed": sums["pushes_failed"],
    }
    if scope.template_id is not None:
        # A push wakes a device for every pass of its type: it belongs to no template.
        figures.update(dict.fromkeys(PUSH_COUNTERS))
    return figures


async def stats(
    conn: AsyncConnection,
    *,
    template: str | None = None,
    pass_type_id: str | None = None,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    interval: Interval = "day",
    now: int,
) -> dict[str, Any]:
    """A series of counts per hour or day (UTC) from `start` (rounded down to its hour or
    day) to `end` (excluded; default now), and the all-time totals."""
    if interval not in STEPS:
        raise InvalidInput("interval must be hour or day.")
    step = STEPS[interval]
    scope = await scope_of(conn, template=template, pass_type_id=pass_type_id)
    end_s = _seconds(end, "to") if end is not None else now
    if start is not None:
        start_s = _seconds(start, "from")
    else:
        start_s = end_s - 1 - (DEFAULT_POINTS[interval] - 1) * step
    start_s -= start_s % step
    if start_s >= end_s:
        raise InvalidInput("from must be before to.")
    points = -(-(end_s - start_s) // step)
    if points > MAX_POINTS:
        raise InvalidInput(
            f"That is {points} points of one {interval}; ask for at most {MAX_POINTS} "
            "(a shorter range, or interval=day)."
        )
    sums = await analytics.series(conn, scope, start=start_s, end=end_s, step=step)
    zero = dict.fromkeys(analytics.COUNTERS, 0)
    series = []
    for n in range(points):
        bucket = start_s + n * step
        point: dict[str, Any] = {"start": _iso(bucket), **sums.get(bucket, zero)}
        if scope.template_id is not None:
            point.update(dict.fromkeys(PUSH_COUNTERS))
        series.append(point)
    return {
        "interval": interval,
        "from": _iso(start_s),
        "to": _iso(end_s),
        "series": series,
        "totals": await totals(conn, scope),
    }
