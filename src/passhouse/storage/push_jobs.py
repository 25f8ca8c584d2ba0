"""The push queue (outbox): enqueue with the change, claim with a lease, finish per batch.

One row per (push token, pass type) coalesces bursts: a change that finds a row already
queued only bumps its `generation`. A worker claims due rows by moving `due_at_ms` forward
by a lease and commits at once; it sends outside any transaction and then finishes the
batch. A worker that dies mid-send leaves its rows to be claimed again when the lease runs
out, and a change that arrives while a row is being sent is detected by its generation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from passhouse.storage import analytics, webhooks
from passhouse.storage.passes import current_file_built_for_another_key
from passhouse.storage.tables import (
    devices,
    pass_types,
    passes,
    push_attempts,
    push_jobs,
    registrations,
)

NOTIFY_CHANNEL = "passhouse_push"

# Outcomes stored in push_attempts.outcome.
DELIVERED = "delivered"
RETRY = "retry"
FAILED = "failed"
DEVICE_GONE = "device_gone"
BLOCKED = "blocked"


@dataclass(frozen=True, slots=True)
class ClaimedPush:
    id: int
    push_token: str
    pass_type_id: str
    generation: int
    attempts: int


@dataclass(frozen=True, slots=True)
class PassTypeCredentials:
    pass_type_id: str
    team_id: str
    certificate_pem: str
    private_key_encrypted: bytes
    apns_key_id: str | None
    apns_team_id: str | None
    apns_key_encrypted: bytes | None


# --- enqueue (called by issuing, inside the transaction that makes the change) ----------


async def enqueue_for_pass(conn: AsyncConnection, pass_id: int, *, now_ms: int) -> int:
    """Queue a push to every device registered for one pass; returns rows inserted or bumped."""
    return await _enqueue(conn, passes.c.id == pass_id, now_ms=now_ms)


async def enqueue_for_template(conn: AsyncConnection, template_id: int, *, now_ms: int) -> int:
    """Queue pushes for every pass made from a template, as one INSERT ... SELECT."""
    return await _enqueue(conn, passes.c.template_id == template_id, now_ms=now_ms)


async def enqueue_for_passes(conn: AsyncConnection, pass_ids: list[int], *, now_ms: int) -> int:
    """Queue pushes for a set of passes (a bulk job's chunk), as one INSERT ... SELECT."""
    if not pass_ids:
        return 0
    return await _enqueue(conn, passes.c.id.in_(pass_ids), now_ms=now_ms)


async def enqueue_for_pass_type(conn: AsyncConnection, pass_type_id: str, *, now_ms: int) -> int:
    return await _enqueue(conn, passes.c.pass_type_id == pass_type_id, now_ms=now_ms)


async def enqueue_for_built_for_another_key(
    conn: AsyncConnection, pass_type_id: str, build_key: str, *, now_ms: int
) -> int:
    """Queue pushes for the passes of a type whose current file was built for another key."""
    where = (passes.c.pass_type_id == pass_type_id) & current_file_built_for_another_key(build_key)
    return await _enqueue(conn, where, now_ms=now_ms)


async def _enqueue(conn: AsyncConnection, where: sa.ColumnElement[bool], *, now_ms: int) -> int:
    # Always with a WHERE: SQLite cannot tell "SELECT ... ON CONFLICT" from a join
    # constraint otherwise.
    source = (
        sa.select(
            registrations.c.push_token,
            passes.c.pass_type_id,
            sa.literal(now_ms, sa.BigInteger).label("due_at_ms"),
            sa.literal(now_ms, sa.BigInteger).label("created_at_ms"),
        )
        .distinct()
        .select_from(registrations.join(passes, registrations.c.pass_id == passes.c.id))
        .where(where)
    )
    columns = ["push_token", "pass_type_id", "due_at_ms", "created_at_ms"]
    is_pg = conn.dialect.name == "postgresql"
    # Only the generation changes on conflict: a job in backoff keeps its schedule and a
    # leased job keeps its lease; the worker sees the new generation when it finishes.
    set_ = {"generation": push_jobs.c.generation + 1}
    index = [push_jobs.c.push_token, push_jobs.c.pass_type_id]
    statement: sa.Executable
    if is_pg:
        statement = (
            postgresql.insert(push_jobs)
            .from_select(columns, source)
            .on_conflict_do_update(index_elements=index, set_=set_)
        )
    else:
        statement = (
            sqlite.insert(push_jobs)
            .from_select(columns, source)
            .on_conflict_do_update(index_elements=index, set_=set_)
        )
    result = await conn.execute(statement)
    touched = max(result.rowcount, 0)
    if is_pg and touched:
        # Delivered at commit, so a listening worker wakes only once the rows are visible.
        await conn.execute(sa.select(sa.func.pg_notify(NOTIFY_CHANNEL, "")))
    return touched


# --- the worker's side -------------------------------------------------------------------


def _not_blocked() -> sa.ColumnElement[bool]:
    return ~sa.exists().where(
        pass_types.c.pass_type_id == push_jobs.c.pass_type_id,
        pass_types.c.apns_error.is_not(None),
    )


async def claim_due(
    conn: AsyncConnection, *, now_ms: int, lease_ms: int, limit: int
) -> list[ClaimedPush]:
    """Lease up to `limit` due jobs; commit right after so other workers skip them."""
    due = (
        sa.select(push_jobs.c.id)
        .where(push_jobs.c.due_at_ms <= now_ms, _not_blocked())
        .order_by(push_jobs.c.due_at_ms)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True, of=push_jobs)
    statement = (
        push_jobs.update()
        .where(push_jobs.c.id.in_(due.scalar_subquery()))
        .values(due_at_ms=now_ms + lease_ms)
        .returning(
            push_jobs.c.id,
            push_jobs.c.push_token,
            push_jobs.c.pass_type_id,
            push_jobs.c.generation,
            push_jobs.c.attempts,
        )
    )
    rows = (await conn.execute(statement)).all()
    return [ClaimedPush(*row) for row in rows]


async def next_due_at(conn: AsyncConnection) -> int | None:
    """When the earliest unblocked job becomes due (cheap: served by the due_at index)."""
    statement = (
        sa.select(push_jobs.c.due_at_ms)
        .where(_not_blocked())
        .order_by(push_jobs.c.due_at_ms)
        .limit(1)
    )
    value = (await conn.execute(statement)).scalar()
    return None if value is None else int(value)


async def complete(conn: AsyncConnection, jobs: Sequence[ClaimedPush], *, now_ms: int) -> int:
    """Delete sent jobs; a job whose generation moved on while it was sent is due again.

    Returns how many jobs were requeued because of a newer change.
    """
    if not jobs:
        return 0
    pairs = [(job.id, job.generation) for job in jobs]
    await conn.execute(
        push_jobs.delete().where(sa.tuple_(push_jobs.c.id, push_jobs.c.generation).in_(pairs))
    )
    # Whatever is left of these ids had a newer change arrive while we were sending.
    result = await conn.execute(
        push_jobs.update()
        .where(push_jobs.c.id.in_([job.id for job in jobs]))
        .values(due_at_ms=now_ms, attempts=0)
    )
    return max(result.rowcount, 0)


async def reschedule(conn: AsyncConnection, jobs: Sequence[tuple[ClaimedPush, int]]) -> None:
    """Count a failed attempt and set the next due time (computed with backoff by the caller)."""
    if not jobs:
        return
    await conn.execute(
        push_jobs.update()
        .where(push_jobs.c.id == sa.bindparam("job_id"))
        .values(attempts=push_jobs.c.attempts + 1, due_at_ms=sa.bindparam("due"))
        .execution_options(synchronize_session=False),
        [{"job_id": job.id, "due": due} for job, due in jobs],
    )


async def give_up(conn: AsyncConnection, jobs: Sequence[ClaimedPush], *, now_ms: int) -> None:
    """Drop jobs out of attempts, unless a newer change arrived: that one is sent afresh."""
    await complete(conn, jobs, now_ms=now_ms)


async def release(conn: AsyncConnection, job_ids: Sequence[int], *, now_ms: int) -> None:
    """Hand leased jobs back untouched (attempts unchanged), due at once."""
    if job_ids:
        await conn.execute(
            push_jobs.update().where(push_jobs.c.id.in_(list(job_ids))).values(due_at_ms=now_ms)
        )


async def renew_lease(conn: AsyncConnection, job_ids: Sequence[int], *, until_ms: int) -> None:
    """Keep jobs still being sent hidden from other workers until `until_ms`."""
    if job_ids:
        await conn.execute(
            push_jobs.update().where(push_jobs.c.id.in_(list(job_ids))).values(due_at_ms=until_ms)
        )


async def forget_push_token(
    conn: AsyncConnection,
    push_token: str,
    pass_type_id: str,
    *,
    unregistered_at_ms: int,
    now_ms: int | None = None,
) -> int:
    """APNs says the token is gone: drop its registrations for this pass type made up to
    `unregistered_at_ms` (a later one means the device came back), then devices left with
    no registration. Returns the registrations deleted (each a pass.uninstalled event)."""
    now_ms = unregistered_at_ms if now_ms is None else now_ms
    of_type = sa.select(passes.c.id).where(passes.c.pass_type_id == pass_type_id)
    doomed = sa.and_(
        registrations.c.push_token == push_token,
        registrations.c.registered_at_ms <= unregistered_at_ms,
        registrations.c.pass_id.in_(of_type),
    )
    device_ids = list(
        (await conn.execute(sa.select(registrations.c.device_id).where(doomed).distinct()))
        .scalars()
        .all()
    )
    uninstalled = await webhooks.registrations_to_forget(conn, doomed)
    result = await conn.execute(
        registrations.delete().where(doomed).returning(registrations.c.pass_id)
    )
    deleted = list(result.scalars().all())
    if deleted:
        # A device that no longer holds its pass: an uninstall, when APNs says it happened.
        await analytics.count_pass_events(
            conn, passes.c.id.in_(deleted), at=unregistered_at_ms // 1000, uninstalls=1
        )
    for pass_id, device_library_id in uninstalled:
        await webhooks.emit_uninstalled(conn, pass_id, device_library_id, now_ms=now_ms)
    if device_ids:
        await conn.execute(
            devices.delete().where(
                devices.c.id.in_(device_ids),
                ~sa.exists().where(registrations.c.device_id == devices.c.id),
            )
        )
    return len(deleted)


async def record_attempts(conn: AsyncConnection, attempts: Sequence[dict[str, Any]]) -> None:
    """Append outcomes: dicts with push_token, pass_type_id, outcome, status, reason,
    latency_ms, at_ms."""
    if attempts:
        await conn.execute(push_attempts.insert(), list(attempts))
        await analytics.count_pushes(conn, attempts)


async def prune_attempts(conn: AsyncConnection, *, older_than_ms: int) -> int:
    result = await conn.execute(push_attempts.delete().where(push_attempts.c.at_ms < older_than_ms))
    return max(result.rowcount, 0)


async def set_apns_error(
    conn: AsyncConnection, pass_type_id: str, reason: str, *, now_ms: int
) -> None:
    await conn.execute(
        pass_types.update()
        .where(pass_types.c.pass_type_id == pass_type_id)
        .values(apns_error=reason, apns_error_at=now_ms)
    )


async def clear_apns_error(conn: AsyncConnection, pass_type_id: str) -> None:
    """Resume sending for a pass type (its certificate or key was replaced)."""
    await conn.execute(
        pass_types.update()
        .where(pass_types.c.pass_type_id == pass_type_id)
        .values(apns_error=None, apns_error_at=None)
    )


async def blocked_pass_types(conn: AsyncConnection) -> dict[str, tuple[str, int | None]]:
    rows = await conn.execute(
        sa.select(
            pass_types.c.pass_type_id, pass_types.c.apns_error, pass_types.c.apns_error_at
        ).where(pass_types.c.apns_error.is_not(None))
    )
    return {row.pass_type_id: (row.apns_error, row.apns_error_at) for row in rows}


async def pass_type_credentials(
    conn: AsyncConnection, pass_type_id: str
) -> PassTypeCredentials | None:
    row = (
        await conn.execute(
            sa.select(
                pass_types.c.pass_type_id,
                pass_types.c.team_id,
                pass_types.c.certificate_pem,
                pass_types.c.private_key_encrypted,
                pass_types.c.apns_key_id,
                pass_types.c.apns_team_id,
                pass_types.c.apns_key_encrypted,
            ).where(pass_types.c.pass_type_id == pass_type_id)
        )
    ).first()
    return None if row is None else PassTypeCredentials(*row)


# --- visibility --------------------------------------------------------------------------


async def recent_attempts_for_pass(
    conn: AsyncConnection, pass_id: int, limit: int = 50
) -> list[dict[str, Any]]:
    """Latest push attempts to the devices currently registered for a pass, newest first."""
    tokens = sa.select(registrations.c.push_token).where(registrations.c.pass_id == pass_id)
    pass_type = sa.select(passes.c.pass_type_id).where(passes.c.id == pass_id)
    rows = await conn.execute(
        sa.select(
            push_attempts.c.push_token,
            push_attempts.c.outcome,
            push_attempts.c.status,
            push_attempts.c.reason,
            push_attempts.c.latency_ms,
            push_attempts.c.at_ms,
        )
        .where(
            push_attempts.c.push_token.in_(tokens),
            push_attempts.c.pass_type_id == pass_type.scalar_subquery(),
        )
        .order_by(push_attempts.c.at_ms.desc(), push_attempts.c.id.desc())
        .limit(limit)
    )
    return [dict(row._mapping) for row in rows]


@dataclass(frozen=True, slots=True)
class PushProgress:
    """Whether pushes that are due are being sent, by whichever worker process."""

    ok: bool
    reason: str
    # How long the earliest due (unblocked) push has been due; 0 when none is due.
    oldest_due_age_seconds: float
    # Since the last push attempt of any outcome; None when none is kept.
    last_attempt_age_seconds: float | None


async def push_progress(
    conn: AsyncConnection, *, now_ms: int, stall_seconds: float
) -> PushProgress:
    """Not ok when a push has been due for `stall_seconds` and no push was attempted
    within them: no worker runs, or it is stuck. Two indexed lookups, cheap to poll.

    A long paced fan-out keeps pushes due for minutes, but its attempts keep coming; an
    APNs outage puts pushes in backoff, so they are not due in between.
    """
    due = await next_due_at(conn)
    last = (await conn.execute(sa.select(sa.func.max(push_attempts.c.at_ms)))).scalar()
    due_age = max(0.0, (now_ms - due) / 1000) if due is not None else 0.0
    silence = None if last is None else max(0.0, (now_ms - int(last)) / 1000)
    if due_age < stall_seconds:
        reason = "no push is waiting" if due_age == 0 else "pushes are being sent"
        return PushProgress(True, reason, due_age, silence)
    if silence is not None and silence < stall_seconds:
        return PushProgress(True, "pushes are being sent", due_age, silence)
    since = "no push attempt is on record" if silence is None else f"none sent for {silence:.0f} s"
    reason = (
        f"pushes have been due for {due_age:.0f} s and {since}: is a push worker running"
        " (`passhouse worker`, or `passhouse serve` without --no-worker)? Its log says"
        " why it is stuck."
    )
    return PushProgress(False, reason, due_age, silence)


async def queue_depth(conn: AsyncConnection) -> int:
    return int((await conn.execute(sa.select(sa.func.count()).select_from(push_jobs))).scalar_one())


async def push_stats(
    conn: AsyncConnection, now_ms: int, *, stall_seconds: float = 60.0
) -> dict[str, Any]:
    """Queue depth, due now, in backoff, sent and failed (within the kept attempt history),
    oldest pending age, blocked pass types, and whether sending has stalled."""
    queue = (
        await conn.execute(
            sa.select(
                sa.func.count(),
                sa.func.count().filter(push_jobs.c.due_at_ms <= now_ms),
                sa.func.count().filter(push_jobs.c.due_at_ms > now_ms, push_jobs.c.attempts > 0),
                sa.func.min(push_jobs.c.created_at_ms),
            ).select_from(push_jobs)
        )
    ).one()
    depth, due_now, in_backoff, oldest = queue
    outcomes = await conn.execute(
        sa.select(push_attempts.c.outcome, push_attempts.c.reason, sa.func.count()).group_by(
            push_attempts.c.outcome, push_attempts.c.reason
        )
    )
    by_outcome: dict[str, int] = {}
    failed_by_reason: dict[str, int] = {}
    for outcome, reason, count in outcomes:
        by_outcome[outcome] = by_outcome.get(outcome, 0) + int(count)
        if outcome in (FAILED, DEVICE_GONE):
            key = reason or "unknown"
            failed_by_reason[key] = failed_by_reason.get(key, 0) + int(count)
    blocked = await blocked_pass_types(conn)
    progress = await push_progress(conn, now_ms=now_ms, stall_seconds=stall_seconds)
    return {
        "stalled": not progress.ok,
        "stall_reason": None if progress.ok else progress.reason,
        "oldest_due_age_seconds": progress.oldest_due_age_seconds,
        "last_attempt_age_seconds": progress.last_attempt_age_seconds,
        "queue_depth": int(depth),
        "due_now": int(due_now),
        "in_backoff": int(in_backoff),
        "leased": int(depth) - int(due_now) - int(in_backoff),
        "sent": by_outcome.get(DELIVERED, 0),
        "retried": by_outcome.get(RETRY, 0),
        "failed": sum(failed_by_reason.values()),
        "failed_by_reason": failed_by_reason,
        "oldest_pending_age_seconds": (
            0.0 if oldest is None else max(0.0, (now_ms - int(oldest)) / 1000)
        ),
        "blocked_pass_types": [
            {"pass_type_id": pt, "apns_error": error, "apns_error_at_ms": at}
            for pt, (error, at) in sorted(blocked.items())
        ],
    }
