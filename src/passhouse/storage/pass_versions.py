"""The version history of passes: one row per new version, written with it (ADR 0029).

Every function that gives a pass a new version (storage/passes.py) records it here in the
same transaction, with the cause, the actor and a bounded diff: a change is in the
history if and only if it is saved. Writes for many passes are set-based: an INSERT ...
SELECT from the passes just bumped, never a statement per pass.

Each pass keeps its newest HISTORY_LIMIT rows. `passes.history_seq` counts the rows ever
recorded for a pass and is bumped by the version's own UPDATE, so the row that falls out
of the window is known without reading the history: (pass id, seq - HISTORY_LIMIT).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, get_args

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from passhouse.storage.tables import pass_versions, passes

# Versions kept per pass. At 100 a pass changed every minute keeps the last hour and a
# half, one changed daily a quarter of a year; the table stays at most 100 rows per pass
# (a row is about 150 bytes plus its diff).
HISTORY_LIMIT: Final = 100
# A diff lists at most this many changed data keys, each value cut to this many characters.
MAX_KEYS: Final = 20
MAX_VALUE_CHARS: Final = 200
MAX_KEY_CHARS: Final = 100

Cause = Literal[
    "issued",
    "data_changed",
    "voided",
    "personalized",
    "template_changed",
    "certificate_renewed",
    "republished",
    "batch_issued",
    "csv_import",
    "bulk_update",
    "scheduled_change",
    "expired",
    "retired",
]
CAUSES: tuple[Cause, ...] = get_args(Cause)
ActorKind = Literal["api_key", "admin_token", "cli", "scheduler", "system", "device"]
ACTOR_KINDS: tuple[ActorKind, ...] = get_args(ActorKind)


@dataclass(frozen=True, slots=True)
class Actor:
    """Who made a change: an API key (its id and name), or a part of passhouse itself."""

    kind: ActorKind
    key_id: int | None = None
    name: str | None = None

    @classmethod
    def api_key(cls, key_id: int, name: str) -> Actor:
        return cls("api_key", key_id, name)

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "key_id": self.key_id, "name": self.name}


# The bootstrap key (PASSHOUSE_ADMIN_TOKEN) is no stored key: it is named by its setting.
ADMIN_TOKEN: Final = Actor("admin_token", name="PASSHOUSE_ADMIN_TOKEN")
CLI: Final = Actor("cli")
SCHEDULER: Final = Actor("scheduler")  # scheduled changes, expiry, retirement (the workers)
SYSTEM: Final = Actor("system")  # the server itself (a republish after a URL change)
DEVICE: Final = Actor("device")  # Wallet on the holder's phone (personalization)


@dataclass(frozen=True, slots=True)
class Change:
    """What a new version records: its cause, its actor, and what changed (a diff)."""

    cause: Cause
    actor: Actor
    changes: Mapping[str, Any] = field(default_factory=dict)

    def with_changes(self, changes: Mapping[str, Any]) -> Change:
        return Change(self.cause, self.actor, changes)


# --- diffs --------------------------------------------------------------------------------


def data_changes(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, Any]:
    """The changed keys of a pass's data (nested objects as dotted keys) with their old and
    new values: `old` left out for a key added, `new` for a key removed. Bounded: at most
    MAX_KEYS keys (`more_keys` counts the rest), each value cut to MAX_VALUE_CHARS."""
    before = _flatten(old or {})
    after = _flatten(new)
    keys = sorted(
        key
        for key in before.keys() | after.keys()
        if key not in before or key not in after or not _same(before[key], after[key])
    )
    entries = []
    for key in keys[:MAX_KEYS]:
        entry: dict[str, Any] = {"key": _cut(key, MAX_KEY_CHARS)[0]}
        for side, values in (("old", before), ("new", after)):
            if key in values:
                entry[side], cut = _bounded(values[key])
                if cut:
                    entry["truncated"] = True
        entries.append(entry)
    found: dict[str, Any] = {"data": entries}
    if len(keys) > MAX_KEYS:
        found["more_keys"] = len(keys) - MAX_KEYS
    return found


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _same(a: Any, b: Any) -> bool:
    """JSON equality: true is not 1 (Python's == says it is), and 1 is 1.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return bool(a == b)


def _cut(text: str, limit: int) -> tuple[str, bool]:
    return (text, False) if len(text) <= limit else (text[:limit] + "…", True)


def _bounded(value: Any) -> tuple[Any, bool]:
    """A value as kept in a diff: itself when short, else the start of its text."""
    if isinstance(value, str):
        return _cut(value, MAX_VALUE_CHARS)
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if len(text) <= MAX_VALUE_CHARS:
        return value, False
    return _cut(text, MAX_VALUE_CHARS)


# --- writing ------------------------------------------------------------------------------


def _now_ms() -> int:
    return int(time.time() * 1000)


def _columns(change: Change, at_ms: int) -> dict[str, Any]:
    return {
        "at_ms": at_ms,
        "cause": change.cause,
        "actor": change.actor.kind,
        "actor_key_id": change.actor.key_id,
        "actor_name": change.actor.name,
    }


async def record(
    conn: AsyncConnection, pass_id: int, *, seq: int, version: int, change: Change
) -> None:
    """One pass's new version (its history_seq is already `seq`)."""
    await conn.execute(
        pass_versions.insert().values(
            pass_id=pass_id,
            seq=seq,
            version=version,
            changes=dict(change.changes),
            **_columns(change, _now_ms()),
        )
    )
    if seq > HISTORY_LIMIT:
        await conn.execute(
            pass_versions.delete().where(
                pass_versions.c.pass_id == pass_id,
                pass_versions.c.seq <= seq - HISTORY_LIMIT,
            )
        )


async def record_many(
    conn: AsyncConnection,
    rows: Sequence[tuple[int, int, int, Mapping[str, Any]]],
    *,
    change: Change,
) -> None:
    """New versions of many passes, each with its own diff: (pass id, seq, version,
    changes). One multi-row INSERT (batched by the driver) and one DELETE."""
    if not rows:
        return
    common = _columns(change, _now_ms())
    await conn.execute(
        pass_versions.insert(),
        [
            {"pass_id": pid, "seq": seq, "version": v, "changes": dict(diff), **common}
            for pid, seq, v, diff in rows
        ],
    )
    if any(seq > HISTORY_LIMIT for _, seq, _, _ in rows):
        await _prune(conn, passes.c.id.in_([pid for pid, _, _, _ in rows]))


async def record_bumped(
    conn: AsyncConnection, where: sa.ColumnElement[bool], *, version: int, change: Change
) -> None:
    """The passes that `where` selects and that were just given `version` by one UPDATE:
    one INSERT ... SELECT of a row each, all with the same changes (a template's new
    revision, a renewed certificate), whatever their number."""
    bumped = where & (passes.c.version == version)
    common = _columns(change, _now_ms())
    select = sa.select(
        passes.c.id,
        passes.c.history_seq,
        passes.c.version,
        *(sa.literal(value, pass_versions.c[name].type) for name, value in common.items()),
        sa.literal(dict(change.changes), pass_versions.c.changes.type),
    ).where(bumped)
    names = ["pass_id", "seq", "version", *common, "changes"]
    await conn.execute(pass_versions.insert().from_select(names, select))
    await _prune(conn, bumped)


async def _prune(conn: AsyncConnection, where: sa.ColumnElement[bool]) -> None:
    """Drop the row that fell out of each selected pass's window as its newest came in:
    (pass id, history_seq - HISTORY_LIMIT), found through the key, never by reading a
    pass's history. Passes still under the limit are filtered out first."""
    fallen = sa.select(passes.c.id, passes.c.history_seq - HISTORY_LIMIT).where(
        where, passes.c.history_seq > HISTORY_LIMIT
    )
    await conn.execute(
        pass_versions.delete().where(
            sa.tuple_(pass_versions.c.pass_id, pass_versions.c.seq).in_(fallen)
        )
    )


# --- reading ------------------------------------------------------------------------------


async def list_for_pass(
    conn: AsyncConnection, pass_id: int, *, before_seq: int | None, limit: int
) -> list[sa.Row[Any]]:
    """A page of a pass's history, newest first, from the row before `before_seq`."""
    query = (
        sa.select(pass_versions)
        .where(pass_versions.c.pass_id == pass_id)
        .order_by(pass_versions.c.seq.desc())
        .limit(limit)
    )
    if before_seq is not None:
        query = query.where(pass_versions.c.seq < before_seq)
    return list((await conn.execute(query)).all())
