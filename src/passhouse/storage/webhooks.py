"""Webhooks in the database: endpoints, the event outbox and the delivery queue (ADR 0018).

An event is written in the transaction of the change that causes it, and only when some
endpoint takes its type (so a server without webhooks writes nothing). The worker fans
each event out to a delivery row per endpoint that was subscribed when the event happened
(webhook_subscriptions keeps that history), then claims due deliveries with a lease, as
the push queue does: a worker killed mid-send leaves them to be sent again.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from passhouse.storage.tables import (
    certificate_notices,
    devices,
    passes,
    registrations,
    templates,
    webhook_deliveries,
    webhook_endpoints,
    webhook_events,
    webhook_subscriptions,
)

PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"

PING = "ping"
EVENT_TYPES = (
    "pass.created",
    "pass.updated",
    "pass.voided",
    "pass.installed",
    "pass.uninstalled",
    "push.failed",
    "pass_type.apns_blocked",
    "certificate.expiring",
)
WALLET_APPLE = "apple"


def new_event_id() -> str:
    return "evt_" + secrets.token_hex(16)


def _sql_event_id(dialect: str) -> sa.ColumnElement[str]:
    """A random event id made by the database, one per row of an INSERT ... SELECT."""
    if dialect == "postgresql":
        return sa.literal_column("'evt_' || replace(gen_random_uuid()::text, '-', '')")
    return sa.literal_column("'evt_' || lower(hex(randomblob(16)))")


def _json_object(dialect: str, *pairs: Any) -> sa.ColumnElement[Any]:
    if dialect == "postgresql":
        return sa.func.json_build_object(*pairs)
    return sa.func.json_object(*pairs)


def _embedded_json(dialect: str, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    # SQLite stores JSON as text: json() makes json_object nest it instead of quoting it.
    return column if dialect == "postgresql" else sa.func.json(column)


def subscribed(event_type: str) -> sa.Exists:
    """Some endpoint takes this event type now (served by ix_webhook_subscriptions_event_type)."""
    return sa.exists().where(
        webhook_subscriptions.c.event_type.in_([event_type, "*"]),
        webhook_subscriptions.c.until_ms.is_(None),
    )


def shorten_device_id(value: str) -> str:
    """A device library id shortened: enough to tell devices apart, not enough to use."""
    return value if len(value) <= 12 else f"{value[:8]}…{value[-4:]}"


# --- writing events (inside the transaction of the change) -------------------------------


async def emit(
    conn: AsyncConnection, event_type: str, data: Mapping[str, Any], *, now_ms: int
) -> bool:
    """Record one event if some endpoint takes its type; True if it was recorded."""
    source = sa.select(
        sa.literal(new_event_id(), sa.String),
        sa.literal(event_type, sa.String),
        sa.literal(dict(data), sa.JSON),
        sa.literal(now_ms, sa.BigInteger),
    ).where(subscribed(event_type))
    result = await conn.execute(
        webhook_events.insert().from_select(["public_id", "type", "data", "created_at_ms"], source)
    )
    return bool(result.rowcount)


async def emit_pass_events(
    conn: AsyncConnection, event_type: str, where: sa.ColumnElement[bool], *, now_ms: int
) -> int:
    """pass.created/updated/voided for every pass matching `where`, as one INSERT ... SELECT
    (a template change touching 100,000 passes is one statement)."""
    dialect = conn.dialect.name
    data = _json_object(
        dialect,
        "pass_type_id",
        passes.c.pass_type_id,
        "serial_number",
        passes.c.serial_number,
        "version",
        passes.c.version,
        "template",
        templates.c.name,
        "voided",
        passes.c.voided,
        "data",
        _embedded_json(dialect, passes.c.data),
    )
    source = (
        sa.select(
            _sql_event_id(dialect),
            sa.literal(event_type, sa.String),
            data,
            sa.literal(now_ms, sa.BigInteger),
        )
        .select_from(passes.join(templates, templates.c.id == passes.c.template_id))
        .where(where, subscribed(event_type))
    )
    result = await conn.execute(
        webhook_events.insert().from_select(["public_id", "type", "data", "created_at_ms"], source)
    )
    return max(result.rowcount, 0)


async def installs_of(conn: AsyncConnection, pass_id: int) -> int:
    count = await conn.scalar(
        sa.select(sa.func.count())
        .select_from(registrations)
        .where(registrations.c.pass_id == pass_id)
    )
    return int(count or 0)


async def emit_uninstalled(
    conn: AsyncConnection, pass_id: int, device_library_id: str, *, now_ms: int
) -> None:
    """pass.uninstalled for a registration just deleted (installs counts what is left)."""
    if not await conn.scalar(sa.select(subscribed("pass.uninstalled"))):
        return
    row = (
        await conn.execute(
            sa.select(passes.c.pass_type_id, passes.c.serial_number).where(passes.c.id == pass_id)
        )
    ).first()
    if row is None:
        return
    await emit(
        conn,
        "pass.uninstalled",
        {
            "pass_type_id": row.pass_type_id,
            "serial_number": row.serial_number,
            "wallet": WALLET_APPLE,
            "device": shorten_device_id(device_library_id),
            "installs": await installs_of(conn, pass_id),
        },
        now_ms=now_ms,
    )


async def registrations_to_forget(
    conn: AsyncConnection, where: sa.ColumnElement[bool]
) -> list[tuple[int, str]]:
    """(pass id, device library id) of the registrations `where` names, when some endpoint
    takes pass.uninstalled (else nothing: no need to read them)."""
    if not await conn.scalar(sa.select(subscribed("pass.uninstalled"))):
        return []
    rows = await conn.execute(
        sa.select(registrations.c.pass_id, devices.c.device_library_id)
        .select_from(registrations.join(devices, devices.c.id == registrations.c.device_id))
        .where(where)
    )
    return [(int(pass_id), str(device)) for pass_id, device in rows]


# The install event, written by the device hot path (storage/hot_path.py) in the
# registration's own transaction, only for a new registration. Plain SQL for the driver.
# Parameters: device (shortened), created_at_ms, pass_id.
SQLITE_INSTALLED_WANTED = """
SELECT EXISTS (
    SELECT 1 FROM webhook_subscriptions
    WHERE event_type IN ('pass.installed', '*') AND until_ms IS NULL
)
"""
SQLITE_INSTALLED = """
INSERT INTO webhook_events (public_id, type, data, created_at_ms, fanned_out)
SELECT 'evt_' || lower(hex(randomblob(16))), 'pass.installed',
       json_object('pass_type_id', p.pass_type_id, 'serial_number', p.serial_number,
                   'wallet', 'apple', 'device', ?1,
                   'installs', (SELECT count(*) FROM registrations WHERE pass_id = p.id)),
       ?2, 0
FROM passes p
WHERE p.id = ?3 AND EXISTS (
    SELECT 1 FROM webhook_subscriptions
    WHERE event_type IN ('pass.installed', '*') AND until_ms IS NULL
)
"""

# The PostgreSQL hot path registers a batch in one statement; this CTE joins it.
# `installs` is that statement's CTE of new registrations (pass_id, pass_type_id,
# serial_number, device_short, now_ms, and nth: the how-manieth new one of its pass in the
# batch); the count does not see the rows the same statement inserts, hence + nth.
PG_INSTALLED_CTE = """
, installed AS (
    INSERT INTO webhook_events (public_id, type, data, created_at_ms, fanned_out)
    SELECT 'evt_' || replace(gen_random_uuid()::text, '-', ''), 'pass.installed',
           json_build_object('pass_type_id', i.pass_type_id, 'serial_number', i.serial_number,
                             'wallet', 'apple', 'device', i.device_short,
                             'installs',
                             (SELECT count(*) FROM registrations WHERE pass_id = i.pass_id)
                             + i.nth),
           i.now_ms, false
    FROM installs i
    WHERE EXISTS (
        SELECT 1 FROM webhook_subscriptions
        WHERE event_type IN ('pass.installed', '*') AND until_ms IS NULL
    )
    ORDER BY i.n
)
"""


async def emit_push_failures(
    conn: AsyncConnection, failed: Sequence[tuple[Any, Any]], *, now_ms: int
) -> None:
    """push.failed for pushes given up on: (ClaimedPush, PushResult) pairs."""
    if not failed or not await conn.scalar(sa.select(subscribed("push.failed"))):
        return
    for job, result in failed:
        await emit(
            conn,
            "push.failed",
            {
                "pass_type_id": job.pass_type_id,
                "push_token": shorten_device_id(job.push_token),
                "attempts": job.attempts + 1,
                "status": result.status,
                "reason": result.reason,
            },
            now_ms=now_ms,
        )


async def announce_apns_blocked(
    conn: AsyncConnection, pass_type_id: str, reason: str, *, now_ms: int
) -> None:
    """pass_type.apns_blocked, once per block: call before the block is stored."""
    from passhouse.storage.tables import pass_types

    already = await conn.scalar(
        sa.select(pass_types.c.apns_error).where(pass_types.c.pass_type_id == pass_type_id)
    )
    if already is None:
        await emit(
            conn,
            "pass_type.apns_blocked",
            {"pass_type_id": pass_type_id, "reason": reason},
            now_ms=now_ms,
        )


async def claim_certificate_notice(
    conn: AsyncConnection, pass_type_id: str, not_after: int, days_before: int, *, now: int
) -> bool:
    """Mark a certificate.expiring threshold as announced; False if it already was."""
    values = {
        "pass_type_id": pass_type_id,
        "not_after": not_after,
        "days_before": days_before,
        "at": now,
    }
    insert = (
        postgresql.insert(certificate_notices)
        if conn.dialect.name == "postgresql"
        else sqlite.insert(certificate_notices)
    )
    result = await conn.execute(insert.values(**values).on_conflict_do_nothing())
    return bool(result.rowcount)


# --- endpoints ----------------------------------------------------------------------------


async def create_endpoint(
    conn: AsyncConnection,
    *,
    url: str,
    events: Sequence[str],
    secret_encrypted: bytes,
    now_ms: int,
) -> int:
    endpoint_id = await conn.scalar(
        webhook_endpoints.insert()
        .values(
            url=url,
            secret_encrypted=secret_encrypted,
            events=list(events),
            enabled=True,
            created_at=now_ms // 1000,
            updated_at=now_ms // 1000,
        )
        .returning(webhook_endpoints.c.id)
    )
    assert endpoint_id is not None
    await _open_subscriptions(conn, int(endpoint_id), events, now_ms=now_ms)
    return int(endpoint_id)


async def _open_subscriptions(
    conn: AsyncConnection, endpoint_id: int, events: Sequence[str], *, now_ms: int
) -> None:
    await conn.execute(
        webhook_subscriptions.insert(),
        [{"endpoint_id": endpoint_id, "event_type": t, "from_ms": now_ms} for t in set(events)],
    )


async def _close_subscriptions(conn: AsyncConnection, endpoint_id: int, *, now_ms: int) -> None:
    await conn.execute(
        webhook_subscriptions.update()
        .where(
            webhook_subscriptions.c.endpoint_id == endpoint_id,
            webhook_subscriptions.c.until_ms.is_(None),
        )
        .values(until_ms=now_ms)
    )


async def get_endpoint(conn: AsyncConnection, endpoint_id: int) -> sa.Row[Any] | None:
    return (
        await conn.execute(
            sa.select(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id)
        )
    ).first()


async def list_endpoints(conn: AsyncConnection) -> list[sa.Row[Any]]:
    return list(
        (await conn.execute(sa.select(webhook_endpoints).order_by(webhook_endpoints.c.id))).all()
    )


async def update_endpoint(
    conn: AsyncConnection,
    endpoint_id: int,
    *,
    url: str | None = None,
    events: Sequence[str] | None = None,
    enabled: bool | None = None,
    now_ms: int,
) -> None:
    """Change an endpoint. New events or a disable close its subscriptions as of now (and
    an enabled endpoint opens the new ones), so later events follow the new choice."""
    row = await get_endpoint(conn, endpoint_id)
    assert row is not None
    values: dict[str, Any] = {"updated_at": now_ms // 1000}
    if url is not None:
        values["url"] = url
    new_events = list(events) if events is not None else list(row.events)
    now_enabled = row.enabled if enabled is None else enabled
    if events is not None:
        values["events"] = new_events
    if enabled is not None:
        values["enabled"] = enabled
        if enabled:  # enabled by someone: a fresh start
            values.update(failing_since_ms=None, disabled_reason=None, disabled_at=None)
    await conn.execute(
        webhook_endpoints.update().where(webhook_endpoints.c.id == endpoint_id).values(**values)
    )
    resubscribe = (events is not None and set(new_events) != set(row.events)) or (
        now_enabled != row.enabled
    )
    if resubscribe:
        await _close_subscriptions(conn, endpoint_id, now_ms=now_ms)
        if now_enabled:
            await _open_subscriptions(conn, endpoint_id, new_events, now_ms=now_ms)


async def delete_endpoint(conn: AsyncConnection, endpoint_id: int) -> bool:
    result = await conn.execute(
        webhook_endpoints.delete().where(webhook_endpoints.c.id == endpoint_id)
    )
    return bool(result.rowcount)


async def endpoint_counts(conn: AsyncConnection) -> dict[int, dict[str, int]]:
    """Per endpoint: deliveries pending, delivered and failed (within the kept history)."""
    rows = await conn.execute(
        sa.select(
            webhook_deliveries.c.endpoint_id, webhook_deliveries.c.state, sa.func.count()
        ).group_by(webhook_deliveries.c.endpoint_id, webhook_deliveries.c.state)
    )
    counts: dict[int, dict[str, int]] = {}
    for endpoint_id, state, count in rows:
        counts.setdefault(int(endpoint_id), {PENDING: 0, DELIVERED: 0, FAILED: 0})[state] = int(
            count
        )
    return counts


async def queue_ping(conn: AsyncConnection, endpoint_id: int, *, now_ms: int) -> str:
    """A ping event and its one delivery, to this endpoint only, due at once."""
    public_id = new_event_id()
    event_id = await conn.scalar(
        webhook_events.insert()
        .values(
            public_id=public_id,
            type=PING,
            data={"endpoint_id": endpoint_id},
            created_at_ms=now_ms,
            fanned_out=True,
        )
        .returning(webhook_events.c.id)
    )
    await conn.execute(
        webhook_deliveries.insert().values(
            event_id=event_id,
            endpoint_id=endpoint_id,
            state=PENDING,
            attempts=0,
            due_at_ms=now_ms,
            created_at_ms=now_ms,
        )
    )
    return public_id


async def list_deliveries(
    conn: AsyncConnection,
    endpoint_id: int,
    *,
    limit: int,
    before_id: int | None = None,
    event_public_id: str | None = None,
) -> list[sa.Row[Any]]:
    """An endpoint's deliveries, newest first, with their events."""
    query = (
        sa.select(
            webhook_deliveries.c.id,
            webhook_events.c.public_id,
            webhook_events.c.type,
            webhook_deliveries.c.state,
            webhook_deliveries.c.attempts,
            webhook_deliveries.c.last_status,
            webhook_deliveries.c.last_error,
            webhook_deliveries.c.created_at_ms,
            webhook_deliveries.c.last_attempt_at_ms,
            webhook_deliveries.c.finished_at_ms,
            webhook_deliveries.c.due_at_ms,
        )
        .select_from(
            webhook_deliveries.join(
                webhook_events, webhook_events.c.id == webhook_deliveries.c.event_id
            )
        )
        .where(webhook_deliveries.c.endpoint_id == endpoint_id)
        .order_by(webhook_deliveries.c.id.desc())
        .limit(limit)
    )
    if before_id is not None:
        query = query.where(webhook_deliveries.c.id < before_id)
    if event_public_id is not None:
        query = query.where(webhook_events.c.public_id == event_public_id)
    result: Any = await conn.execute(query)  # eleven columns: more than Row's type spells
    return list(result.all())


# --- the worker's side --------------------------------------------------------------------


async def fan_out(conn: AsyncConnection, *, now_ms: int, limit: int) -> int:
    """Turn up to `limit` new events into deliveries, one per endpoint subscribed at the
    event's time; returns the events handled. Idempotent (unique event, endpoint)."""
    pending = (
        sa.select(webhook_events.c.id)
        .where(~webhook_events.c.fanned_out)
        .order_by(webhook_events.c.id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        pending = pending.with_for_update(skip_locked=True)
    ids = list((await conn.execute(pending)).scalars().all())
    if not ids:
        return 0
    s = webhook_subscriptions
    e = webhook_events
    source = (
        sa.select(
            e.c.id,
            s.c.endpoint_id,
            sa.literal(PENDING, sa.String),
            sa.literal(0, sa.Integer),
            sa.literal(now_ms, sa.BigInteger),
            sa.literal(now_ms, sa.BigInteger),
        )
        .distinct()
        .select_from(
            e.join(
                s,
                sa.and_(
                    s.c.event_type.in_([e.c.type, sa.literal("*")]),
                    s.c.from_ms <= e.c.created_at_ms,
                    sa.or_(s.c.until_ms.is_(None), s.c.until_ms > e.c.created_at_ms),
                ),
            )
        )
        .where(e.c.id.in_(ids))
    )
    columns = ["event_id", "endpoint_id", "state", "attempts", "due_at_ms", "created_at_ms"]
    insert = (
        postgresql.insert(webhook_deliveries)
        if conn.dialect.name == "postgresql"
        else sqlite.insert(webhook_deliveries)
    )
    await conn.execute(insert.from_select(columns, source).on_conflict_do_nothing())
    await conn.execute(
        webhook_events.update().where(webhook_events.c.id.in_(ids)).values(fanned_out=True)
    )
    return len(ids)


async def has_unfanned_events(conn: AsyncConnection) -> bool:
    found = await conn.scalar(
        sa.select(webhook_events.c.id).where(~webhook_events.c.fanned_out).limit(1)
    )
    return found is not None


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    id: int
    event_id: int
    endpoint_id: int
    attempts: int


@dataclass(frozen=True, slots=True)
class EventRecord:
    public_id: str
    type: str
    data: dict[str, Any]
    created_at_ms: int


@dataclass(frozen=True, slots=True)
class EndpointRecord:
    id: int
    url: str
    secret_encrypted: bytes
    failing_since_ms: int | None


async def claim_due(
    conn: AsyncConnection, *, now_ms: int, lease_ms: int, limit: int
) -> tuple[list[ClaimedDelivery], dict[int, EventRecord], dict[int, EndpointRecord]]:
    """Lease up to `limit` due deliveries of enabled endpoints; commit right after."""
    d = webhook_deliveries
    due = (
        sa.select(d.c.id)
        .where(
            d.c.due_at_ms <= now_ms,
            sa.exists().where(
                webhook_endpoints.c.id == d.c.endpoint_id, webhook_endpoints.c.enabled
            ),
        )
        .order_by(d.c.due_at_ms)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        return await _claim_due_pg(
            conn, due.with_for_update(skip_locked=True, of=d), now_ms + lease_ms
        )
    rows = (
        await conn.execute(
            d.update()
            .where(d.c.id.in_(due.scalar_subquery()))
            .values(due_at_ms=now_ms + lease_ms)
            .returning(d.c.id, d.c.event_id, d.c.endpoint_id, d.c.attempts)
        )
    ).all()
    claimed = [ClaimedDelivery(*row) for row in rows]
    if not claimed:
        return [], {}, {}
    event_ids = sorted({c.event_id for c in claimed})
    events = {
        int(row.id): EventRecord(row.public_id, row.type, dict(row.data), int(row.created_at_ms))
        for row in await conn.execute(
            sa.select(
                webhook_events.c.id,
                webhook_events.c.public_id,
                webhook_events.c.type,
                webhook_events.c.data,
                webhook_events.c.created_at_ms,
            ).where(webhook_events.c.id.in_(event_ids))
        )
    }
    endpoint_ids = sorted({c.endpoint_id for c in claimed})
    endpoints = {
        int(row.id): EndpointRecord(
            int(row.id), row.url, bytes(row.secret_encrypted), row.failing_since_ms
        )
        for row in await conn.execute(
            sa.select(
                webhook_endpoints.c.id,
                webhook_endpoints.c.url,
                webhook_endpoints.c.secret_encrypted,
                webhook_endpoints.c.failing_since_ms,
            ).where(webhook_endpoints.c.id.in_(endpoint_ids))
        )
    }
    return claimed, events, endpoints


async def _claim_due_pg(
    conn: AsyncConnection, due: sa.Select[Any], lease_until_ms: int
) -> tuple[list[ClaimedDelivery], dict[int, EventRecord], dict[int, EndpointRecord]]:
    """claim_due in one statement: the lease, and the events and endpoints it needs, read
    by the UPDATE's RETURNING (PostgreSQL's RETURNING may name the FROM tables; SQLite's
    may not). Half the worker's database time was in the three statements this replaces."""
    d, e, p = webhook_deliveries, webhook_events, webhook_endpoints
    # A materialized CTE is run once: the rows it locked are the rows updated, whatever
    # the plan of the join (an IN subquery on the inner side of a join may be run again).
    chosen = due.cte("due").prefix_with("MATERIALIZED")
    rows = (
        await conn.execute(
            d.update()
            .where(d.c.id == chosen.c.id, e.c.id == d.c.event_id, p.c.id == d.c.endpoint_id)
            .values(due_at_ms=lease_until_ms)
            .returning(
                d.c.id,
                d.c.event_id,
                d.c.endpoint_id,
                d.c.attempts,
                e.c.public_id,
                e.c.type,
                e.c.data,
                e.c.created_at_ms,
                p.c.url,
                p.c.secret_encrypted,
                p.c.failing_since_ms,
            )
        )
    ).all()
    claimed: list[ClaimedDelivery] = []
    events: dict[int, EventRecord] = {}
    endpoints: dict[int, EndpointRecord] = {}
    for row in rows:
        claimed.append(
            ClaimedDelivery(int(row.id), int(row.event_id), int(row.endpoint_id), int(row.attempts))
        )
        if row.event_id not in events:
            events[int(row.event_id)] = EventRecord(
                row.public_id, row.type, dict(row.data), int(row.created_at_ms)
            )
        if row.endpoint_id not in endpoints:
            endpoints[int(row.endpoint_id)] = EndpointRecord(
                int(row.endpoint_id), row.url, bytes(row.secret_encrypted), row.failing_since_ms
            )
    return claimed, events, endpoints


async def next_due_at(conn: AsyncConnection) -> int | None:
    value = await conn.scalar(
        sa.select(webhook_deliveries.c.due_at_ms)
        .where(webhook_deliveries.c.due_at_ms.is_not(None))
        .order_by(webhook_deliveries.c.due_at_ms)
        .limit(1)
    )
    return None if value is None else int(value)


async def record_outcomes(conn: AsyncConnection, outcomes: Sequence[Mapping[str, Any]]) -> None:
    """Store attempts: dicts with delivery_id, state, due_at_ms (None once done),
    last_status, last_error, at_ms."""
    if not outcomes:
        return
    d = webhook_deliveries
    finished = sa.case((sa.bindparam("b_state") == PENDING, None), else_=sa.bindparam("b_at"))
    await conn.execute(
        d.update()
        .where(d.c.id == sa.bindparam("b_id"))
        .values(
            state=sa.bindparam("b_state"),
            attempts=d.c.attempts + 1,
            due_at_ms=sa.bindparam("b_due"),
            last_status=sa.bindparam("b_status"),
            last_error=sa.bindparam("b_error"),
            last_attempt_at_ms=sa.bindparam("b_at"),
            finished_at_ms=finished,
        ),
        [
            {
                "b_id": o["delivery_id"],
                "b_state": o["state"],
                "b_due": o["due_at_ms"],
                "b_status": o["last_status"],
                "b_error": o["last_error"],
                "b_at": o["at_ms"],
            }
            for o in outcomes
        ],
    )


async def release(conn: AsyncConnection, delivery_ids: Sequence[int], *, now_ms: int) -> None:
    """Hand leased deliveries back untouched, due at once (shutting down)."""
    if delivery_ids:
        await conn.execute(
            webhook_deliveries.update()
            .where(webhook_deliveries.c.id.in_(list(delivery_ids)))
            .values(due_at_ms=now_ms)
        )


async def mark_endpoint_health(
    conn: AsyncConnection,
    *,
    succeeded: Sequence[int],
    failed: Sequence[int],
    now_ms: int,
    disable_after_ms: int,
) -> list[sa.Row[Any]]:
    """A success clears an endpoint's failing streak; a failure starts one. Endpoints
    failing for `disable_after_ms` are disabled: returns their (id, url, failing_since_ms)."""
    e = webhook_endpoints
    if succeeded:
        await conn.execute(
            e.update()
            .where(e.c.id.in_(list(succeeded)), e.c.failing_since_ms.is_not(None))
            .values(failing_since_ms=None)
        )
    failing = [i for i in failed if i not in set(succeeded)]
    if not failing:
        return []
    await conn.execute(
        e.update()
        .where(e.c.id.in_(failing), e.c.failing_since_ms.is_(None))
        .values(failing_since_ms=now_ms)
    )
    doomed = (
        await conn.execute(
            e.update()
            .where(
                e.c.id.in_(failing),
                e.c.enabled,
                e.c.failing_since_ms <= now_ms - disable_after_ms,
            )
            .values(
                enabled=False,
                disabled_at=now_ms // 1000,
                disabled_reason=sa.literal("every delivery has failed since ")
                + sa.cast(e.c.failing_since_ms, sa.String),
            )
            .returning(e.c.id, e.c.url, e.c.failing_since_ms)
        )
    ).all()
    for row in doomed:
        await _close_subscriptions(conn, int(row.id), now_ms=now_ms)
    return [row for row in doomed]


async def set_disabled_reason(conn: AsyncConnection, endpoint_id: int, reason: str) -> None:
    await conn.execute(
        webhook_endpoints.update()
        .where(webhook_endpoints.c.id == endpoint_id)
        .values(disabled_reason=reason)
    )


async def prune(conn: AsyncConnection, *, older_than_ms: int) -> int:
    """Drop finished deliveries, events with no delivery left, and closed subscriptions,
    all older than `older_than_ms`."""
    d, e, s = webhook_deliveries, webhook_events, webhook_subscriptions
    result = await conn.execute(
        d.delete().where(d.c.due_at_ms.is_(None), d.c.created_at_ms < older_than_ms)
    )
    await conn.execute(
        e.delete().where(
            e.c.created_at_ms < older_than_ms,
            e.c.fanned_out,
            ~sa.exists().where(d.c.event_id == e.c.id),
        )
    )
    # A closed subscription matters only to events of its time not yet fanned out.
    oldest_pending = sa.select(sa.func.min(e.c.created_at_ms)).where(~e.c.fanned_out)
    await conn.execute(
        s.delete().where(
            s.c.until_ms < older_than_ms,
            sa.or_(
                oldest_pending.scalar_subquery().is_(None),
                s.c.until_ms < oldest_pending.scalar_subquery(),
            ),
        )
    )
    return max(result.rowcount, 0)


async def delivery_summary(conn: AsyncConnection) -> dict[str, int]:
    """Counts for metrics: events waiting for fan-out, deliveries pending."""
    unfanned = await conn.scalar(
        sa.select(sa.func.count()).select_from(webhook_events).where(~webhook_events.c.fanned_out)
    )
    pending = await conn.scalar(
        sa.select(sa.func.count())
        .select_from(webhook_deliveries)
        .where(webhook_deliveries.c.due_at_ms.is_not(None))
    )
    return {"events_waiting": int(unfanned or 0), "deliveries_pending": int(pending or 0)}
