"""The passes whose devices are about to be woken and whose current file is not signed."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from passhouse.storage.tables import passes, pkpass_cache, push_jobs, registrations


async def unsigned_pending(
    conn: AsyncConnection,
    *,
    before_job_id: int | None,
    share: int,
    shares: int,
    limit: int,
) -> list[tuple[int, int, int]]:
    """(push job id, pass id, version) for queued pushes, newest job first, whose pass's
    current version has no signed file at all; only passes with id % shares == share
    (each web process signs its share).

    A file of the current version built for another key counts as signed here: two
    servers with different public URLs on one database (ADR 0012) would otherwise replace
    each other's file for ever, each sweep finding its own missing again. Their downloads
    still sign for their own key, once per request, as before.

    Driven from the queue (ix_registrations_push_token, then the pass by id), so its cost
    follows the queue, not the number of passes; the cursor is the job id.
    """
    signed = sa.exists().where(
        pkpass_cache.c.pass_id == passes.c.id,
        pkpass_cache.c.version == passes.c.version,
    )
    query = (
        sa.select(push_jobs.c.id, passes.c.id, passes.c.version)
        .select_from(
            push_jobs.join(
                registrations, registrations.c.push_token == push_jobs.c.push_token
            ).join(
                passes,
                (passes.c.id == registrations.c.pass_id)
                & (passes.c.pass_type_id == push_jobs.c.pass_type_id),
            )
        )
        .where(~signed, passes.c.id % shares == share)
        .order_by(push_jobs.c.id.desc())
        .limit(limit)
    )
    if before_job_id is not None:
        query = query.where(push_jobs.c.id < before_job_id)
    result = await conn.execute(query)
    return [(int(job), int(pass_id), int(version)) for job, pass_id, version in result.all()]
