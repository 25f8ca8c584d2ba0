"""Issued passes, their versions, and the cache of their signed bytes."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from passhouse.storage import analytics, pass_versions, search
from passhouse.storage.pass_versions import Change
from passhouse.storage.tables import passes, pkpass_cache


# Last-Modified strictly increases per pass, in whole seconds: max(now, previous + 1).
def _next_modified_at(now: int) -> sa.ColumnElement[int]:
    return sa.case(
        (passes.c.modified_at + 1 > now, passes.c.modified_at + 1),
        else_=sa.literal(now, sa.BigInteger),
    )


async def get_pass(
    conn: AsyncConnection, pass_type_id: str, serial_number: str
) -> sa.Row[Any] | None:
    result = await conn.execute(
        sa.select(passes).where(
            passes.c.pass_type_id == pass_type_id, passes.c.serial_number == serial_number
        )
    )
    return result.first()


async def get_pass_by_id(conn: AsyncConnection, pass_id: int) -> sa.Row[Any] | None:
    result = await conn.execute(sa.select(passes).where(passes.c.id == pass_id))
    return result.first()


async def get_pass_by_share_id(conn: AsyncConnection, share_id: str) -> sa.Row[Any] | None:
    result = await conn.execute(sa.select(passes).where(passes.c.share_id == share_id))
    return result.first()


async def serial_exists(conn: AsyncConnection, pass_type_id: str, serial_number: str) -> bool:
    found = await conn.scalar(
        sa.select(passes.c.id).where(
            passes.c.pass_type_id == pass_type_id, passes.c.serial_number == serial_number
        )
    )
    return found is not None


async def insert_pass(conn: AsyncConnection, values: Mapping[str, Any], *, change: Change) -> int:
    pass_id = await conn.scalar(
        passes.insert().values(**values, history_seq=1).returning(passes.c.id)
    )
    assert pass_id is not None
    await pass_versions.record(
        conn,
        int(pass_id),
        seq=1,
        version=values["version"],
        change=change.with_changes(pass_versions.data_changes(None, values["data"])),
    )
    # Searchable in the same transaction as it exists.
    await search.index_passes(
        conn, [(int(pass_id), values["serial_number"], values["data"])], replace=False
    )
    await analytics.count_template_event(
        conn, values["pass_type_id"], values["template_id"], at=values["created_at"], issued=1
    )
    return int(pass_id)


async def save_new_version(
    conn: AsyncConnection,
    pass_id: int,
    *,
    version: int,
    now: int,
    data: Mapping[str, Any] | None = None,
    voided: bool | None = None,
    personalization: Mapping[str, Any] | None = None,
    lifecycle: Mapping[str, int | None] | None = None,
    change: Change,
) -> sa.Row[Any] | None:
    """Give a pass a new version (and optionally new data); returns the updated row.

    `lifecycle` sets expires_at, voided_at or retired_at along with it. `change` is
    recorded in the history; its diff is left as given.

    Personalization is stored once: for a pass that already holds some, nothing changes
    and the answer is None. The check is in the UPDATE, so of two concurrent attempts one
    wins (PostgreSQL re-reads the row once the first commits).
    """
    values: dict[str, Any] = {
        "version": version,
        "modified_at": _next_modified_at(now),
        "history_seq": passes.c.history_seq + 1,
    }
    where = [passes.c.id == pass_id]
    if data is not None:
        values["data"] = dict(data)
    if voided is not None:
        values["voided"] = voided
    if personalization is not None:
        values["personalization"] = dict(personalization)
        where.append(passes.c.personalization.is_(None))
    values.update(lifecycle or {})
    result = await conn.execute(passes.update().where(*where).values(**values).returning(*passes.c))
    updated = result.first()
    if updated is None:
        return None
    await pass_versions.record(
        conn, updated.id, seq=updated.history_seq, version=version, change=change
    )
    if data is not None:
        await search.index_passes(conn, [(updated.id, updated.serial_number, updated.data)])
    counted = {"voided": 1} if voided else {"updated": 1}
    await analytics.count_template_event(
        conn, updated.pass_type_id, updated.template_id, at=now, **counted
    )
    return updated


async def bump_template_passes(
    conn: AsyncConnection,
    template_id: int,
    *,
    version: int,
    now: int,
    change: Change,
) -> int:
    """Give every pass of a template a new version in one statement (a change of the
    template: each counts as updated); returns how many."""
    changed = await _bump(
        conn, passes.c.template_id == template_id, version=version, now=now, change=change
    )
    if changed:
        await analytics.count_pass_events(
            conn, passes.c.template_id == template_id, at=now, updated=1
        )
    return changed


async def bump_pass_type_passes(
    conn: AsyncConnection,
    pass_type_id: str,
    *,
    version: int,
    now: int,
    change: Change,
) -> int:
    """Give every pass of a pass type a new version in one statement; returns how many."""
    return await _bump(
        conn, passes.c.pass_type_id == pass_type_id, version=version, now=now, change=change
    )


async def _bump(
    conn: AsyncConnection,
    where: sa.ColumnElement[bool],
    *,
    version: int,
    now: int,
    change: Change,
    bumped: sa.ColumnElement[bool] | None = None,
) -> int:
    """One UPDATE for every pass `where` selects, then their history with one INSERT ...
    SELECT; `bumped` selects them again after the UPDATE when `where` no longer does."""
    result = await conn.execute(
        passes.update()
        .where(where)
        .values(
            version=version,
            modified_at=_next_modified_at(now),
            history_seq=passes.c.history_seq + 1,
        )
    )
    changed = int(result.rowcount)
    if changed:
        await pass_versions.record_bumped(
            conn, where if bumped is None else bumped, version=version, change=change
        )
    return changed


async def list_passes(
    conn: AsyncConnection, *, template_id: int | None, after_id: int | None, limit: int
) -> list[sa.Row[Any]]:
    """Oldest first (the CLI's and the PassNinja API's order); the admin API lists with
    storage.search.list_passes."""
    query = sa.select(passes).order_by(passes.c.id).limit(limit)
    if template_id is not None:
        query = query.where(passes.c.template_id == template_id)
    if after_id is not None:
        query = query.where(passes.c.id > after_id)
    result = await conn.execute(query)
    return list(result.all())


async def get_cached_pkpass(
    conn: AsyncConnection, pass_id: int, version: int, build_key: str
) -> bytes | None:
    data = await conn.scalar(
        sa.select(pkpass_cache.c.data).where(
            pkpass_cache.c.pass_id == pass_id,
            pkpass_cache.c.version == version,
            pkpass_cache.c.build_key == build_key,
        )
    )
    return None if data is None else bytes(data)


async def store_pkpass(
    conn: AsyncConnection, pass_id: int, version: int, build_key: str, data: bytes
) -> None:
    """Keep the signed bytes of a pass's version; an older version's bytes are replaced,
    and so are the same version's bytes built for another key."""
    insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(
        pkpass_cache
    ).values(pass_id=pass_id, version=version, build_key=build_key, data=data)
    excluded = insert.excluded
    await conn.execute(
        insert.on_conflict_do_update(
            index_elements=[pkpass_cache.c.pass_id],
            set_={
                "version": excluded.version,
                "build_key": excluded.build_key,
                "data": excluded.data,
            },
            where=(pkpass_cache.c.version < excluded.version)
            | (
                (pkpass_cache.c.version == excluded.version)
                & (pkpass_cache.c.build_key != excluded.build_key)
            ),
        )
    )


def current_file_built_for_another_key(build_key: str) -> sa.ColumnElement[bool]:
    """Passes whose current version was signed for another build key (another URL).

    Files cached before build keys existed (key "") are left out: nothing says they
    differ, and counting them would re-version and push every pass once on upgrade.
    """
    return sa.exists().where(
        pkpass_cache.c.pass_id == passes.c.id,
        pkpass_cache.c.version == passes.c.version,
        pkpass_cache.c.build_key != build_key,
        pkpass_cache.c.build_key != "",
    )


async def count_built_for_another_key(conn: AsyncConnection, build_key: str) -> dict[str, int]:
    """Pass type -> how many of its passes' current files were built for another key."""
    result = await conn.execute(
        sa.select(passes.c.pass_type_id, sa.func.count())
        .where(current_file_built_for_another_key(build_key))
        .group_by(passes.c.pass_type_id)
    )
    return {pass_type_id: int(count) for pass_type_id, count in result.all()}


async def bump_built_for_another_key(
    conn: AsyncConnection,
    pass_type_id: str,
    build_key: str,
    *,
    version: int,
    now: int,
    change: Change,
) -> int:
    where = (passes.c.pass_type_id == pass_type_id) & current_file_built_for_another_key(build_key)
    # Once bumped, their files no longer match their version: found again by the version.
    return await _bump(
        conn,
        where,
        version=version,
        now=now,
        change=change,
        bumped=passes.c.pass_type_id == pass_type_id,
    )


# --- many at once (bulk jobs, issue 9) ---------------------------------------------------


def existing_serials_query(dialect: str, pass_type_id: str, serials: list[str]) -> sa.Select[Any]:
    if dialect == "postgresql":
        # From the serials, one index probe each (a LATERAL with LIMIT 1 cannot be planned
        # as anything else; a serial is unique in its pass type). `serial_number IN (<1,000
        # values>)` on an import's unanalyzed passes was a scan testing every value on
        # every row: 2.5 s per chunk of 1,000 at 100,000 passes (docs/benchmarks.md).
        wanted = (
            sa.func.unnest(sa.bindparam("serials", serials, type_=_TEXT_ARRAY))
            .table_valued("serial")
            .render_derived(name="wanted")
        )
        found = (
            sa.select(passes)
            .where(passes.c.pass_type_id == pass_type_id, passes.c.serial_number == wanted.c.serial)
            .limit(1)
            .lateral("found")
        )
        return sa.select(found).select_from(wanted).join(found, sa.true())
    return sa.select(passes).where(
        passes.c.pass_type_id == pass_type_id, passes.c.serial_number.in_(serials)
    )


async def existing_serials(
    conn: AsyncConnection, pass_type_id: str, serials: list[str]
) -> dict[str, sa.Row[Any]]:
    """The passes of a pass type among `serials`, by serial."""
    if not serials:
        return {}
    query = existing_serials_query(conn.dialect.name, pass_type_id, serials)
    result = await conn.execute(query)
    return {row.serial_number: row for row in result.all()}


async def insert_passes(
    conn: AsyncConnection, values: list[dict[str, Any]], *, change: Change
) -> list[sa.Row[Any]]:
    """Insert passes in one statement; their rows, in the order given."""
    if not values:
        return []
    result = await conn.execute(
        passes.insert().returning(*passes.c, sort_by_parameter_order=True),
        [{**value, "history_seq": 1} for value in values],
    )
    rows = list(result.all())
    await pass_versions.record_many(
        conn,
        [(row.id, 1, row.version, pass_versions.data_changes(None, row.data)) for row in rows],
        change=change,
    )
    # Searchable and counted in the same transaction, as insert_pass does for one.
    await search.index_passes(
        conn, [(row.id, row.serial_number, row.data) for row in rows], replace=False
    )
    await analytics.count_pass_events(
        conn, passes.c.id.in_([row.id for row in rows]), at=rows[0].created_at, issued=1
    )
    return rows


async def save_new_data_many(
    conn: AsyncConnection,
    changes: list[tuple[int, dict[str, Any], int, int | None]],
    *,
    now: int,
    change: Change,
    old_data: Mapping[int, Mapping[str, Any]],
) -> None:
    """(pass id, new data, new version, rendered expires_at) for many passes, as one
    UPDATE (PostgreSQL: from arrays; SQLite: an executemany, which costs no round trips in
    process).

    Each gets a history row with `change`'s cause and actor and a diff from its
    `old_data` (pass id -> the data it had) to its new data.
    """
    if not changes:
        return
    ids = [pass_id for pass_id, _, _, _ in changes]
    if conn.dialect.name == "postgresql":
        # One statement for the chunk: the executemany was a protocol round per pass.
        u = (
            sa.func.unnest(
                sa.bindparam("u_ids", ids, type_=_BIGINT_ARRAY),
                sa.bindparam(
                    "u_data", [_json_text(d) for _, d, _, _ in changes], type_=_TEXT_ARRAY
                ),
                sa.bindparam("u_versions", [v for _, _, v, _ in changes], type_=_BIGINT_ARRAY),
                sa.bindparam("u_expires", [e for _, _, _, e in changes], type_=_BIGINT_ARRAY),
            )
            .table_valued("id", "data", "version", "expires_at")
            .render_derived(name="u")
        )
        # RETURNING after the UPDATE, which holds the rows' locks: each history_seq is its own.
        rows = (
            await conn.execute(
                passes.update()
                .where(passes.c.id == u.c.id)
                .values(
                    data=sa.cast(u.c.data, postgresql.JSON),
                    version=sa.cast(u.c.version, sa.BigInteger),
                    modified_at=_next_modified_at(now),
                    expires_at=sa.cast(u.c.expires_at, sa.BigInteger),
                    history_seq=passes.c.history_seq + 1,
                )
                .returning(passes.c.id, passes.c.serial_number, passes.c.history_seq)
            )
        ).all()
    else:
        statement = (
            passes.update()
            .where(passes.c.id == sa.bindparam("b_id"))
            .values(
                data=sa.bindparam("b_data", type_=passes.c.data.type),
                version=sa.bindparam("b_version"),
                modified_at=_next_modified_at(now),
                expires_at=sa.bindparam("b_expires_at", type_=passes.c.expires_at.type),
                history_seq=passes.c.history_seq + 1,
            )
        )
        await conn.execute(
            statement,
            [
                {"b_id": i, "b_data": data, "b_version": version, "b_expires_at": expires_at}
                for i, data, version, expires_at in changes
            ],
        )
        # Read after the UPDATE, which holds the write lock: each history_seq is its own.
        rows = (
            await conn.execute(
                sa.select(passes.c.id, passes.c.serial_number, passes.c.history_seq).where(
                    passes.c.id.in_(ids)
                )
            )
        ).all()
    found = {int(row.id): row for row in rows}
    await pass_versions.record_many(
        conn,
        [
            (i, found[i].history_seq, version, pass_versions.data_changes(old_data.get(i), data))
            for i, data, version, _ in changes
        ],
        change=change,
    )
    await search.index_passes(
        conn, [(i, found[i].serial_number, data) for i, data, _, _ in changes]
    )
    await analytics.count_pass_events(conn, passes.c.id.in_(ids), at=now, updated=1)


_BIGINT_ARRAY = postgresql.ARRAY(sa.BigInteger())
_TEXT_ARRAY = postgresql.ARRAY(sa.Text())


def _json_text(value: Any) -> str:
    # As SQLAlchemy's JSON type writes it (json.dumps, the engine's default serializer).
    return json.dumps(value)


async def template_candidates(
    conn: AsyncConnection, template_id: int, *, after_id: int, upper_id: int, limit: int
) -> tuple[list[sa.Row[Any]], int] | None:
    """A template's passes that can still change (not voided) among the next `limit` pass
    ids after `after_id` (up to `upper_id`), and the last id of that window; None at the end.

    A window of primary-key ids (the first found with one index probe), and the template
    compared as `template_id + 0` so that no plan reads the whole template's index entries
    and sorts them for every window: on fresh, unanalyzed data PostgreSQL chose exactly that
    for "> cursor ORDER BY id LIMIT n", and each chunk cost as much as the template.
    """
    first = await conn.scalar(sa.select(sa.func.min(passes.c.id)).where(passes.c.id > after_id))
    if first is None or int(first) > upper_id:
        return None
    until = min(int(first) - 1 + limit, upper_id)
    result = await conn.execute(
        sa.select(passes.c.id, passes.c.serial_number, passes.c.data, passes.c.authentication_token)
        .add_columns(passes.c.personalization)
        .where(
            passes.c.template_id + 0 == template_id,
            passes.c.id > after_id,
            passes.c.id <= until,
            passes.c.voided == sa.false(),
        )
        .order_by(passes.c.id)
    )
    return list(result.all()), until


async def count_template_candidates(conn: AsyncConnection, template_id: int) -> tuple[int, int]:
    """(passes of a template that can still change, the highest id among them or 0)."""
    row = (
        await conn.execute(
            sa.select(sa.func.count(), sa.func.coalesce(sa.func.max(passes.c.id), 0)).where(
                passes.c.template_id == template_id, passes.c.voided == sa.false()
            )
        )
    ).one()
    return int(row[0]), int(row[1])
