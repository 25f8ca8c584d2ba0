"""Google Wallet rows: issuer accounts, template opt-ins, objects, the sync queue (outbox),
callback nonces and the images Google fetches. No commit here, as everywhere in storage."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from passhouse.storage.tables import (
    google_callback_nonces,
    google_images,
    google_issuers,
    google_objects,
    google_sync_jobs,
    google_templates,
    passes,
    templates,
)

CLASS = "class"
OBJECT = "object"
NOTIFY_CHANNEL = "passhouse_google"


def _insert(conn: AsyncConnection, table: sa.Table) -> Any:
    return (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(table)


# --- issuers -----------------------------------------------------------------------------


async def save_issuer(conn: AsyncConnection, values: Mapping[str, Any]) -> bool:
    """Insert or replace an issuer; True if it is new."""
    exists = await get_issuer(conn, values["issuer_id"]) is not None
    if exists:
        await conn.execute(
            google_issuers.update()
            .where(google_issuers.c.issuer_id == values["issuer_id"])
            .values(**{k: v for k, v in values.items() if k != "created_at"})
        )
    else:
        await conn.execute(google_issuers.insert().values(**values))
    return not exists


async def get_issuer(conn: AsyncConnection, issuer_id: str) -> sa.Row[Any] | None:
    result = await conn.execute(
        sa.select(google_issuers).where(google_issuers.c.issuer_id == issuer_id)
    )
    return result.first()


async def list_issuers(conn: AsyncConnection) -> list[sa.Row[Any]]:
    result = await conn.execute(sa.select(google_issuers).order_by(google_issuers.c.issuer_id))
    return list(result.all())


async def issuer_ids(conn: AsyncConnection) -> list[str]:
    return list((await conn.scalars(sa.select(google_issuers.c.issuer_id))).all())


async def issuer_in_use(conn: AsyncConnection, issuer_id: str) -> int:
    count = await conn.scalar(
        sa.select(sa.func.count())
        .select_from(google_templates)
        .where(google_templates.c.issuer_id == issuer_id)
    )
    return int(count or 0)


async def delete_issuer(conn: AsyncConnection, issuer_id: str) -> None:
    await conn.execute(google_issuers.delete().where(google_issuers.c.issuer_id == issuer_id))


# --- templates and images ----------------------------------------------------------------


async def get_template_config(conn: AsyncConnection, template_id: int) -> sa.Row[Any] | None:
    result = await conn.execute(
        sa.select(google_templates).where(google_templates.c.template_id == template_id)
    )
    return result.first()


async def save_template_config(
    conn: AsyncConnection, template_id: int, values: Mapping[str, Any]
) -> None:
    if await get_template_config(conn, template_id) is None:
        await conn.execute(google_templates.insert().values(template_id=template_id, **values))
    else:
        await conn.execute(
            google_templates.update()
            .where(google_templates.c.template_id == template_id)
            .values(revision=google_templates.c.revision + 1, **values)
        )


async def store_images(conn: AsyncConnection, images: Mapping[str, bytes], *, now: int) -> None:
    for digest, data in images.items():
        await conn.execute(
            _insert(conn, google_images)
            .values(sha256=digest, data=data, created_at=now)
            .on_conflict_do_nothing(index_elements=[google_images.c.sha256])
        )


async def get_image(conn: AsyncConnection, digest: str) -> bytes | None:
    data = await conn.scalar(
        sa.select(google_images.c.data).where(google_images.c.sha256 == digest)
    )
    return None if data is None else bytes(data)


async def class_synced(
    conn: AsyncConnection, template_id: int, revision: int, *, now_ms: int
) -> None:
    await conn.execute(
        google_templates.update()
        .where(google_templates.c.template_id == template_id)
        .values(
            synced_revision=sa.func.max(google_templates.c.synced_revision, revision)
            if conn.dialect.name == "sqlite"
            else sa.func.greatest(google_templates.c.synced_revision, revision),
            synced_at_ms=now_ms,
            error_status=None,
            error_reason=None,
            error_message=None,
        )
    )


async def class_failed(
    conn: AsyncConnection,
    template_id: int,
    *,
    status: int | None,
    reason: str | None,
    message: str | None,
) -> None:
    await conn.execute(
        google_templates.update()
        .where(google_templates.c.template_id == template_id)
        .values(error_status=status, error_reason=reason, error_message=message)
    )


# --- objects -----------------------------------------------------------------------------


async def add_object(
    conn: AsyncConnection, *, pass_id: int, template_id: int, object_id: str
) -> None:
    await conn.execute(
        _insert(conn, google_objects)
        .values(pass_id=pass_id, template_id=template_id, object_id=object_id)
        .on_conflict_do_nothing(index_elements=[google_objects.c.pass_id])
    )


async def add_objects(conn: AsyncConnection, values: list[dict[str, Any]]) -> None:
    """Objects for passes just made in bulk: (pass_id, template_id, object_id) rows."""
    if values:
        await conn.execute(
            _insert(conn, google_objects).on_conflict_do_nothing(
                index_elements=[google_objects.c.pass_id]
            ),
            values,
        )


async def add_objects_for_template(
    conn: AsyncConnection, template_id: int, object_id_of: Any
) -> None:
    """Objects for passes of a template issued before it opted in."""
    rows = (
        await conn.execute(
            sa.select(passes.c.id, passes.c.pass_type_id, passes.c.serial_number).where(
                passes.c.template_id == template_id,
                ~sa.exists().where(google_objects.c.pass_id == passes.c.id),
            )
        )
    ).all()
    if rows:
        await conn.execute(
            google_objects.insert(),
            [
                {"pass_id": r.id, "template_id": template_id, "object_id": object_id_of(r)}
                for r in rows
            ],
        )


async def get_object(conn: AsyncConnection, pass_id: int) -> sa.Row[Any] | None:
    result = await conn.execute(
        sa.select(google_objects).where(google_objects.c.pass_id == pass_id)
    )
    return result.first()


async def get_object_by_object_id(conn: AsyncConnection, object_id: str) -> sa.Row[Any] | None:
    result = await conn.execute(
        sa.select(google_objects).where(google_objects.c.object_id == object_id)
    )
    return result.first()


async def update_object(conn: AsyncConnection, pass_id: int, values: Mapping[str, Any]) -> None:
    await conn.execute(
        google_objects.update().where(google_objects.c.pass_id == pass_id).values(**values)
    )


async def update_objects(conn: AsyncConnection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Update many objects: each row is its `pass_id` and the columns to set. One
    executemany per set of columns (a batch of syncs has one to three)."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        columns = tuple(sorted(key for key in row if key != "pass_id"))
        groups.setdefault(columns, []).append(
            {"b_pass_id": row["pass_id"], **{key: row[key] for key in columns}}
        )
    statement = google_objects.update().where(google_objects.c.pass_id == sa.bindparam("b_pass_id"))
    for group in groups.values():
        await conn.execute(statement, group)


async def record_event(conn: AsyncConnection, object_id: str, *, saved: bool, now_ms: int) -> bool:
    counter = google_objects.c.saves if saved else google_objects.c.deletes
    result = await conn.execute(
        google_objects.update()
        .where(google_objects.c.object_id == object_id)
        .values({counter.name: counter + 1, "saved": saved, "last_event_at_ms": now_ms})
    )
    return result.rowcount > 0


async def first_use_of_nonce(conn: AsyncConnection, nonce: str, *, now_ms: int) -> bool:
    result = await conn.execute(
        _insert(conn, google_callback_nonces)
        .values(nonce=nonce, at_ms=now_ms)
        .on_conflict_do_nothing(index_elements=[google_callback_nonces.c.nonce])
    )
    return result.rowcount > 0


async def prune_nonces(conn: AsyncConnection, *, older_than_ms: int) -> None:
    await conn.execute(
        google_callback_nonces.delete().where(google_callback_nonces.c.at_ms < older_than_ms)
    )


@dataclass(frozen=True, slots=True)
class SyncRows:
    """Everything a batch of object syncs reads, keyed by id."""

    objects: dict[int, sa.Row[Any]]
    passes: dict[int, sa.Row[Any]]
    configs: dict[int, sa.Row[Any]]
    templates: dict[int, sa.Row[Any]]
    issuers: dict[str, sa.Row[Any]]


async def load_for_sync(conn: AsyncConnection, pass_ids: Sequence[int]) -> SyncRows:
    """Five queries for a whole batch, whatever its size."""
    objects = {
        r.pass_id: r
        for r in await conn.execute(
            sa.select(google_objects).where(google_objects.c.pass_id.in_(pass_ids))
        )
    }
    pass_rows = {
        r.id: r for r in await conn.execute(sa.select(passes).where(passes.c.id.in_(pass_ids)))
    }
    template_ids = {r.template_id for r in objects.values()}
    configs = {
        r.template_id: r
        for r in await conn.execute(
            sa.select(google_templates).where(google_templates.c.template_id.in_(template_ids))
        )
    }
    template_rows = {
        r.id: r
        for r in await conn.execute(sa.select(templates).where(templates.c.id.in_(template_ids)))
    }
    issuer_rows = {
        r.issuer_id: r
        for r in await conn.execute(
            sa.select(google_issuers).where(
                google_issuers.c.issuer_id.in_({c.issuer_id for c in configs.values()})
            )
        )
    }
    return SyncRows(objects, pass_rows, configs, template_rows, issuer_rows)


# --- the queue ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClaimedSync:
    id: int
    kind: str
    target_id: int
    generation: int
    attempts: int


def _upsert_jobs(conn: AsyncConnection, source: sa.Select[Any]) -> Any:
    columns = ["kind", "target_id", "due_at_ms", "created_at_ms"]
    # A job already queued only gets a new generation: one write carries the newest state.
    return (
        _insert(conn, google_sync_jobs)
        .from_select(columns, source)
        .on_conflict_do_update(
            index_elements=[google_sync_jobs.c.kind, google_sync_jobs.c.target_id],
            set_={"generation": google_sync_jobs.c.generation + 1},
        )
    )


async def _notify(conn: AsyncConnection) -> None:
    if conn.dialect.name == "postgresql":
        await conn.execute(sa.select(sa.func.pg_notify(NOTIFY_CHANNEL, "")))


async def enqueue_class(conn: AsyncConnection, template_id: int, *, now_ms: int) -> None:
    source = sa.select(
        sa.literal(CLASS, sa.String).label("kind"),
        google_templates.c.template_id,
        sa.literal(now_ms, sa.BigInteger).label("due_at_ms"),
        sa.literal(now_ms, sa.BigInteger).label("created_at_ms"),
    ).where(google_templates.c.template_id == template_id)
    await conn.execute(_upsert_jobs(conn, source))
    await _notify(conn)


async def enqueue_objects(
    conn: AsyncConnection, where: sa.ColumnElement[bool], *, now_ms: int
) -> int:
    """Queue a sync of every Google object matching `where`, as one INSERT ... SELECT."""
    source = sa.select(
        sa.literal(OBJECT, sa.String).label("kind"),
        google_objects.c.pass_id,
        sa.literal(now_ms, sa.BigInteger).label("due_at_ms"),
        sa.literal(now_ms, sa.BigInteger).label("created_at_ms"),
    ).where(where)
    result = await conn.execute(_upsert_jobs(conn, source))
    await _notify(conn)
    return max(result.rowcount, 0)


def _class_pending() -> sa.ColumnElement[bool]:
    """An object job whose class has a job queued waits for it: the class goes first."""
    pending = google_sync_jobs.alias("pending_class")
    return sa.exists().where(
        pending.c.kind == CLASS,
        pending.c.target_id == google_objects.c.template_id,
        google_objects.c.pass_id == google_sync_jobs.c.target_id,
    )


async def claim_due(
    conn: AsyncConnection, *, now_ms: int, lease_ms: int, limit: int
) -> list[ClaimedSync]:
    """Lease up to `limit` due jobs, classes first; objects of a class still queued wait."""
    due = (
        sa.select(google_sync_jobs.c.id)
        .where(
            google_sync_jobs.c.due_at_ms <= now_ms,
            sa.or_(google_sync_jobs.c.kind == CLASS, ~_class_pending()),
        )
        .order_by(google_sync_jobs.c.kind, google_sync_jobs.c.due_at_ms)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True, of=google_sync_jobs)
    statement = (
        google_sync_jobs.update()
        .where(google_sync_jobs.c.id.in_(due.scalar_subquery()))
        .values(due_at_ms=now_ms + lease_ms)
        .returning(
            google_sync_jobs.c.id,
            google_sync_jobs.c.kind,
            google_sync_jobs.c.target_id,
            google_sync_jobs.c.generation,
            google_sync_jobs.c.attempts,
        )
    )
    rows = (await conn.execute(statement)).all()
    return [ClaimedSync(*row) for row in rows]


async def next_due_at(conn: AsyncConnection) -> int | None:
    value = await conn.scalar(
        sa.select(google_sync_jobs.c.due_at_ms).order_by(google_sync_jobs.c.due_at_ms).limit(1)
    )
    return None if value is None else int(value)


async def complete(conn: AsyncConnection, jobs: Sequence[ClaimedSync], *, now_ms: int) -> None:
    """Delete finished jobs, unless a change came meanwhile (a newer generation): that one
    is due again at once, so its newest state is written too. Two statements per batch."""
    if not jobs:
        return
    pairs = [(job.id, job.generation) for job in jobs]
    await conn.execute(
        google_sync_jobs.delete().where(
            sa.tuple_(google_sync_jobs.c.id, google_sync_jobs.c.generation).in_(pairs)
        )
    )
    # Whatever is left of these ids had a newer change arrive while it was written.
    await conn.execute(
        google_sync_jobs.update()
        .where(google_sync_jobs.c.id.in_([job.id for job in jobs]))
        .values(due_at_ms=now_ms, attempts=0)
    )


async def reschedule(conn: AsyncConnection, job: ClaimedSync, *, due_at_ms: int) -> None:
    await reschedule_many(conn, [(job, due_at_ms)])


async def reschedule_many(conn: AsyncConnection, jobs: Sequence[tuple[ClaimedSync, int]]) -> None:
    """Count a failed attempt of each job and set its next due time (one executemany)."""
    if jobs:
        await conn.execute(
            google_sync_jobs.update()
            .where(google_sync_jobs.c.id == sa.bindparam("job_id"))
            .values(attempts=google_sync_jobs.c.attempts + 1, due_at_ms=sa.bindparam("due")),
            [{"job_id": job.id, "due": due} for job, due in jobs],
        )


async def release(conn: AsyncConnection, job_ids: Sequence[int], *, now_ms: int) -> None:
    if job_ids:
        await conn.execute(
            google_sync_jobs.update()
            .where(google_sync_jobs.c.id.in_(job_ids))
            .values(due_at_ms=now_ms)
        )


async def queue_depth(conn: AsyncConnection) -> int:
    return int(await conn.scalar(sa.select(sa.func.count()).select_from(google_sync_jobs)) or 0)


async def stats(conn: AsyncConnection) -> dict[str, int]:
    rows = await conn.execute(
        sa.select(google_objects.c.status, sa.func.count()).group_by(google_objects.c.status)
    )
    counts: dict[str, int] = {str(status): int(count) for status, count in rows.all()}
    return {
        "objects": sum(counts.values()),
        "synced": int(counts.get("synced", 0)),
        "pending": int(counts.get("pending", 0)),
        "failed": int(counts.get("failed", 0)),
        "queued": await queue_depth(conn),
        "saved": int(
            await conn.scalar(
                sa.select(sa.func.count()).select_from(google_objects).where(google_objects.c.saved)
            )
            or 0
        ),
    }
