"""Use case: a pass's version history, newest first, a keyset page at a time (ADR 0029).

The rows are written by storage (storage/pass_versions.py) with each new version; this
reads them for the admin API, the dashboard (through the API) and the CLI.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from passhouse.errors import InvalidInput, NotFound
from passhouse.storage import pass_versions, passes

MAX_SEQ = 2**63 - 1


def iso_ms(value: int) -> str:
    """Unix milliseconds as ISO 8601 UTC text, with milliseconds (2026-12-02T05:00:00.123Z)."""
    moment = dt.datetime.fromtimestamp(value / 1000, dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def version_view(row: sa.Row[Any]) -> dict[str, Any]:
    actor = {"kind": row.actor, "key_id": row.actor_key_id, "name": row.actor_name}
    return {
        "version": row.version,
        "at": iso_ms(row.at_ms),
        "cause": row.cause,
        "actor": actor,
        "by": describe_actor(actor),
        "changes": row.changes,
    }


def describe_actor(actor: dict[str, Any]) -> str:
    """The actor in a few words: "API key ci (id 3)", "the CLI", "the scheduler"."""
    match actor["kind"]:
        case "api_key":
            return f"API key {actor['name']} (id {actor['key_id']})"
        case "admin_token":
            return "the admin token (PASSHOUSE_ADMIN_TOKEN)"
        case "cli":
            return "the CLI"
        case "scheduler":
            return "the scheduler"
        case "device":
            return "the holder's device"
        case _:
            return "the server"


def _before(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    if not (cursor.isascii() and cursor.isdigit()) or int(cursor) > MAX_SEQ:
        raise InvalidInput("cursor is not one this API returned.")
    return int(cursor)


async def list_versions(
    conn: AsyncConnection,
    pass_type_id: str,
    serial_number: str,
    *,
    cursor: str | None,
    limit: int,
) -> dict[str, Any]:
    """A page of a pass's versions, newest first: {items, next_cursor, kept}."""
    before = _before(cursor)
    row = await passes.get_pass(conn, pass_type_id, serial_number)
    if row is None:
        raise NotFound(f"No pass {serial_number!r} of {pass_type_id!r}.")
    rows = await pass_versions.list_for_pass(conn, row.id, before_seq=before, limit=limit)
    return {
        "items": [version_view(r) for r in rows],
        # The page's last seq; the next page is the rows below it.
        "next_cursor": str(rows[-1].seq) if len(rows) == limit and rows[-1].seq > 1 else None,
        "kept": pass_versions.HISTORY_LIMIT,
    }
