"""The passes whose devices are about to be woken and whose current file is not signed."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

# A window of the queue, newest job first, then each job's registrations by push token and
# each registered pass by id: the only way in, whatever the statistics say (ADR 0013).
# Without the window a fresh PostgreSQL database planned the plain join from `passes`: a
# nested loop over every pass and every job, 100 s a sweep with 100,000 passes, in every
# web process at once (docs/benchmarks.md, "Issue 8 closing runs"). LEFT joins keep every
# job of the window in the answer, so the caller's cursor moves past signed ones too.
# `OFFSET 0` keeps PostgreSQL from flattening a lookup into a join it could plan another
# way; SQLite keeps a LEFT JOIN's left side outer, and is told which index to read by.
# Neither bounds the window's own read by statistics: PostgreSQL reads it by the primary
# key backwards once the queue is larger than a few windows, and either may read a queue
# it believes holds a row or two in full (it then holds little).
# The signed file is a scalar subquery on pkpass_cache's primary key: never an anti-join.
_PG_UNSIGNED = """
WITH w AS MATERIALIZED (
    SELECT id, push_token, pass_type_id FROM push_jobs
    WHERE id < :before ORDER BY id DESC LIMIT :window
)
SELECT w.id, p.id, p.version
FROM w
LEFT JOIN LATERAL (
    SELECT r.pass_id FROM registrations r WHERE r.push_token = w.push_token OFFSET 0
) r ON true
LEFT JOIN LATERAL (
    SELECT passes.id, passes.version, passes.pass_type_id FROM passes
    WHERE passes.id = r.pass_id OFFSET 0
) p ON p.pass_type_id = w.pass_type_id AND p.id % :shares = :share
   AND p.version IS DISTINCT FROM (SELECT c.version FROM pkpass_cache c WHERE c.pass_id = p.id)
ORDER BY w.id DESC
"""
# Each pass is a correlated scalar subquery on its rowid: SQLite plans that one way
# whatever sqlite_stat1 says (a LEFT JOIN to passes was a scan of passes per job when
# the statistics said the tables were empty).
_SQLITE_UNSIGNED = """
WITH w AS MATERIALIZED (
    SELECT id, push_token, pass_type_id FROM push_jobs
    WHERE id < :before ORDER BY id DESC LIMIT :window
)
SELECT w.id, r.pass_id, (
    SELECT p.version FROM passes p
    WHERE p.id = r.pass_id AND p.pass_type_id = w.pass_type_id
      AND p.version IS NOT (SELECT c.version FROM pkpass_cache c WHERE c.pass_id = p.id)
)
FROM w
LEFT JOIN registrations r INDEXED BY ix_registrations_push_token
    ON r.push_token = w.push_token AND r.pass_id % :shares = :share
ORDER BY w.id DESC
"""
_NEWEST = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Window:
    """What a window of the queue needs signed, and where the next window starts."""

    unsigned: list[tuple[int, int]]  # (pass id, version), in job order, newest first
    next_before: int | None  # the oldest job id of this window; None: the queue's end


async def unsigned_pending(
    conn: AsyncConnection,
    *,
    before_job_id: int | None,
    share: int,
    shares: int,
    window: int,
) -> Window:
    """The passes of the `window` queued pushes before `before_job_id` (newest first) whose
    current version has no signed file at all; only passes with id % shares == share (each
    web process signs its share).

    A file of the current version built for another key counts as signed here: two
    servers with different public URLs on one database (ADR 0012) would otherwise replace
    each other's file for ever, each sweep finding its own missing again. Their downloads
    still sign for their own key, once per request, as before.
    """
    statement = _PG_UNSIGNED if conn.dialect.name == "postgresql" else _SQLITE_UNSIGNED
    result = await conn.execute(
        sa.text(statement),
        {
            "before": _NEWEST if before_job_id is None else before_job_id,
            "window": window,
            "shares": shares,
            "share": share,
        },
    )
    rows = result.all()
    jobs = {row[0] for row in rows}
    # SQLite's answer names every registered pass of the share, with no version if signed.
    pending = (row[1:] for row in rows if row[1] is not None and row[2] is not None)
    return Window(
        # A pass with several devices is in several jobs: signed once.
        unsigned=list(dict.fromkeys((int(pass_id), int(version)) for pass_id, version in pending)),
        next_before=int(rows[-1][0]) if len(jobs) >= window else None,
    )
