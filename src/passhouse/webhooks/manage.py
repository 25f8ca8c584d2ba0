"""Webhook use cases for the admin API and the CLI: endpoints, their deliveries, pings."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from passhouse.bootstrap import Runtime
from passhouse.errors import Conflict, InvalidInput, NotFound
from passhouse.storage import webhooks
from passhouse.webhooks.addresses import AddressRefused, check_destination
from passhouse.webhooks.signing import new_secret

MAX_EVENT_TYPES = len(webhooks.EVENT_TYPES)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _iso_ms(ms: int | None) -> str | None:
    if ms is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(ms) // 1000))


def checked_events(events: Sequence[str]) -> list[str]:
    """The event types as stored: known names without repeats, or ["*"] for all."""
    if not events:
        raise InvalidInput('events must name at least one event type, or be ["*"] for all.')
    unknown = [e for e in events if e != "*" and e not in webhooks.EVENT_TYPES]
    if unknown:
        raise InvalidInput(
            f"Unknown event type {unknown[0]!r}; known: {', '.join(webhooks.EVENT_TYPES)} "
            '(or "*" for all).'
        )
    if "*" in events:
        return ["*"]
    return list(dict.fromkeys(events))


async def _checked_url(runtime: Runtime, url: str) -> str:
    try:
        await check_destination(url, allow_private=runtime.settings.webhooks_allow_private)
    except AddressRefused as error:
        raise InvalidInput(str(error)) from None
    return url


def endpoint_view(row: sa.Row[Any], counts: dict[str, int] | None = None) -> dict[str, Any]:
    return {
        "id": int(row.id),
        "url": row.url,
        "events": list(row.events),
        "enabled": bool(row.enabled),
        "failing_since": _iso_ms(row.failing_since_ms),
        "disabled_reason": row.disabled_reason,
        "disabled_at": _iso_ms(None if row.disabled_at is None else int(row.disabled_at) * 1000),
        "created_at": _iso_ms(int(row.created_at) * 1000),
        "updated_at": _iso_ms(int(row.updated_at) * 1000),
        "deliveries": counts or {webhooks.PENDING: 0, webhooks.DELIVERED: 0, webhooks.FAILED: 0},
    }


def delivery_view(row: sa.Row[Any]) -> dict[str, Any]:
    return {
        "id": int(row.id),
        "event_id": row.public_id,
        "event": row.type,
        "state": row.state,
        "attempts": int(row.attempts),
        "last_status": row.last_status,
        "last_error": row.last_error,
        "created_at": _iso_ms(row.created_at_ms),
        "last_attempt_at": _iso_ms(row.last_attempt_at_ms),
        "finished_at": _iso_ms(row.finished_at_ms),
        "next_attempt_at": _iso_ms(row.due_at_ms) if row.state == webhooks.PENDING else None,
    }


async def _endpoint_or_404(conn: AsyncConnection, endpoint_id: int) -> sa.Row[Any]:
    row = await webhooks.get_endpoint(conn, endpoint_id)
    if row is None:
        raise NotFound(f"No webhook {endpoint_id}.")
    return row


async def _view(conn: AsyncConnection, endpoint_id: int) -> dict[str, Any]:
    row = await _endpoint_or_404(conn, endpoint_id)
    counts = await webhooks.endpoint_counts(conn)
    return endpoint_view(row, counts.get(endpoint_id))


async def create_webhook(runtime: Runtime, *, url: str, events: Sequence[str]) -> dict[str, Any]:
    """Save an endpoint; the answer holds its signing secret, shown this once."""
    stored_events = checked_events(events)
    # Checked (and resolved) before the transaction: a slow DNS answer holds no lock.
    await _checked_url(runtime, url)
    secret = new_secret()
    async with runtime.database.transaction() as conn:
        endpoint_id = await webhooks.create_endpoint(
            conn,
            url=url,
            events=stored_events,
            secret_encrypted=runtime.sealer.seal(secret.encode()),
            now_ms=_now_ms(),
        )
        view = await _view(conn, endpoint_id)
    return {**view, "secret": secret}


async def list_webhooks(conn: AsyncConnection) -> list[dict[str, Any]]:
    counts = await webhooks.endpoint_counts(conn)
    return [endpoint_view(r, counts.get(int(r.id))) for r in await webhooks.list_endpoints(conn)]


async def get_webhook(conn: AsyncConnection, endpoint_id: int) -> dict[str, Any]:
    return await _view(conn, endpoint_id)


async def update_webhook(
    runtime: Runtime,
    endpoint_id: int,
    *,
    url: str | None = None,
    events: Sequence[str] | None = None,
    enabled: bool | None = None,
) -> dict[str, Any]:
    stored_events = None if events is None else checked_events(events)
    if url is not None:
        await _checked_url(runtime, url)
    async with runtime.database.transaction() as conn:
        await _endpoint_or_404(conn, endpoint_id)
        await webhooks.update_endpoint(
            conn, endpoint_id, url=url, events=stored_events, enabled=enabled, now_ms=_now_ms()
        )
        return await _view(conn, endpoint_id)


async def delete_webhook(conn: AsyncConnection, endpoint_id: int) -> None:
    """Remove an endpoint and its deliveries (nothing more is sent to it)."""
    if not await webhooks.delete_endpoint(conn, endpoint_id):
        raise NotFound(f"No webhook {endpoint_id}.")


async def list_deliveries(
    conn: AsyncConnection,
    endpoint_id: int,
    *,
    limit: int,
    before_id: int | None = None,
    event_id: str | None = None,
) -> tuple[list[dict[str, Any]], int | None]:
    """An endpoint's deliveries, newest first, and the id to continue before."""
    await _endpoint_or_404(conn, endpoint_id)
    rows = await webhooks.list_deliveries(
        conn, endpoint_id, limit=limit, before_id=before_id, event_public_id=event_id
    )
    return [delivery_view(r) for r in rows], (int(rows[-1].id) if len(rows) == limit else None)


async def ping_webhook(conn: AsyncConnection, endpoint_id: int) -> dict[str, Any]:
    """Queue a `ping` event to this endpoint alone; the worker sends it at once."""
    row = await _endpoint_or_404(conn, endpoint_id)
    if not row.enabled:
        raise Conflict(f"Webhook {endpoint_id} is disabled; enable it first (PATCH enabled=true).")
    public_id = await webhooks.queue_ping(conn, endpoint_id, now_ms=_now_ms())
    items, _ = await list_deliveries(conn, endpoint_id, limit=1, event_id=public_id)
    return {"event_id": public_id, "delivery": items[0]}
