"""What happens to passes later: scheduled changes, expiry, retirement (ADR 0020).

The API and the CLI store a scheduled change; the workers apply it when it is due, through
the same use cases as an API change (issuing.change_pass_data, issuing.void_pass), in one
transaction with the change's outcome. The workers also void expired passes (with
PASSHOUSE_VOID_EXPIRED) and retire passes voided or expired for longer than
PASSHOUSE_RETENTION_DAYS.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from passhouse import issuing
from passhouse.errors import Conflict, InvalidInput, NotFound, PasshouseError
from passhouse.storage import pass_lifecycle, pass_types, passes, scheduled_changes, templates
from passhouse.storage.database import Database
from passhouse.storage.faults import database_fault
from passhouse.storage.pass_versions import SCHEDULER, Change
from passhouse.storage.scheduled_changes import APPLIED, FAILED

log = structlog.get_logger("passhouse.lifecycle")

# A template change lists at most this many of the passes it could not change.
MAX_FAILURES_LISTED = 20
# Passes voided or retired per transaction; the loop comes back for the rest at once.
BATCH = 200
# Expiries worked out per transaction: one field rendered each, written in one statement.
EXPIRY_BATCH = 1_000
# A year 9999 bound keeps every stored time a valid ISO 8601 date for the views.
_LATEST = dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC)


# --- scheduling --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChangeRequest:
    """What a scheduled change does and to which passes, as the API or the CLI got it."""

    at: dt.datetime
    pass_type_id: str | None = None
    serial_number: str | None = None
    template: str | None = None
    where: Mapping[str, Any] | None = None
    data: Mapping[str, Any] | None = None
    void: bool = False


def parse_time(text: str) -> dt.datetime:
    """An ISO 8601 time with a zone; a time without one is refused (whose clock is it?)."""
    try:
        moment = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(
            f"at: {text!r} is not an ISO 8601 time, e.g. 2026-12-24T18:00:00+01:00."
        ) from None
    return moment


async def schedule_change(conn: AsyncConnection, request: ChangeRequest) -> sa.Row[Any]:
    """Check and store a scheduled change; the workers apply it at its time."""
    if request.at.tzinfo is None or request.at.utcoffset() is None:
        raise InvalidInput(
            "at must carry a time zone (a Z or an offset such as +01:00): a time without "
            "one could mean any zone."
        )
    if request.at > _LATEST:
        raise InvalidInput("at must be before the year 10000.")
    if (request.data is None) == (not request.void):
        raise InvalidInput('Give either data (a merge patch) or "void": true, not both.')
    if request.data is not None:
        problem = issuing.storable_problem(request.data, "data")
        if problem:
            raise InvalidInput(problem + ".")
        if not request.data:
            raise InvalidInput("data must change something: it is an empty merge patch.")
    by_pass = request.pass_type_id is not None or request.serial_number is not None
    if by_pass == (request.template is not None):
        raise InvalidInput(
            "Name the passes either by pass_type_id and serial_number, or by template "
            "(with an optional where)."
        )
    values: dict[str, Any] = {
        "data": None if request.data is None else dict(request.data),
        "void": request.void,
        "due_at_ms": int(request.at.timestamp() * 1000),
        "created_at_ms": issuing.now_ms(),
    }
    if by_pass:
        if request.pass_type_id is None or request.serial_number is None:
            raise InvalidInput("Give both pass_type_id and serial_number.")
        if request.where is not None:
            raise InvalidInput("where selects passes of a template: give it with template.")
        found = await issuing.get_pass_or_404(conn, request.pass_type_id, request.serial_number)
        if found.voided:
            raise Conflict(f"Pass {found.serial_number!r} is voided; it can no longer change.")
        values.update(pass_type_id=found.pass_type_id, serial_number=found.serial_number)
    else:
        assert request.template is not None
        template_row = await issuing.get_template_or_404(conn, request.template)
        where = dict(request.where or {})
        _check_where(where)
        values.update(template_id=template_row.id, matching=where)
    change_id = await scheduled_changes.insert(conn, values)
    row = await scheduled_changes.get(conn, change_id)
    assert row is not None
    return row


def _check_where(where: Mapping[str, Any]) -> None:
    for key, value in where.items():
        if not key or any(not part for part in key.split(".")):
            raise InvalidInput(f"where: {key!r} is not a dotted key such as member.level.")
        if key == "voided" and not isinstance(value, bool):
            raise InvalidInput("where.voided must be true or false.")
        if isinstance(value, dict | list):
            raise InvalidInput(f"where.{key} must be a string, number, boolean or null.")
    problem = issuing.storable_problem(dict(where), "where")
    if problem:
        raise InvalidInput(problem + ".")


async def get_change_or_404(conn: AsyncConnection, change_id: int) -> sa.Row[Any]:
    row = await scheduled_changes.get(conn, change_id)
    if row is None:
        raise NotFound(f"No scheduled change {change_id}.")
    return row


async def cancel_change(conn: AsyncConnection, change_id: int) -> sa.Row[Any]:
    """Cancel a pending change; 409 once it was applied, failed or cancelled."""
    await get_change_or_404(conn, change_id)
    cancelled = await scheduled_changes.cancel(conn, change_id, now_ms=issuing.now_ms())
    if cancelled is None:
        current = await get_change_or_404(conn, change_id)
        raise Conflict(
            f"Scheduled change {change_id} is {current.status}; only a pending change can "
            "be cancelled."
        )
    return cancelled


async def list_changes(
    conn: AsyncConnection, *, status: str | None, after_id: int | None, limit: int
) -> list[sa.Row[Any]]:
    return await scheduled_changes.list_changes(conn, status=status, after_id=after_id, limit=limit)


async def template_names(conn: AsyncConnection) -> dict[int, str]:
    return {row.id: row.name for row in await templates.list_templates(conn)}


def change_view(row: sa.Row[Any], template_names: Mapping[int, str]) -> dict[str, Any]:
    """A scheduled change as the API and the CLI show it."""
    template = None
    if row.template_id is not None:
        template = template_names.get(row.template_id, str(row.template_id))
    return {
        "id": row.id,
        "status": row.status,
        "at": _iso_ms(row.due_at_ms),
        "pass_type_id": row.pass_type_id,
        "serial_number": row.serial_number,
        "template": template,
        "where": row.matching,
        "data": row.data,
        "void": row.void,
        "created_at": _iso_ms(row.created_at_ms),
        "finished_at": _iso_ms(row.finished_at_ms),
        "error": row.error,
        "passes_changed": row.passes_changed,
        "passes_failed": row.passes_failed,
        "failures": row.failures or [],
    }


def _iso_ms(value: int | None) -> str | None:
    if value is None:
        return None
    moment = dt.datetime.fromtimestamp(value / 1000, dt.UTC)
    text = moment.isoformat(timespec="milliseconds" if value % 1000 else "seconds")
    return text.replace("+00:00", "Z")


# --- applying (the workers) ---------------------------------------------------------------


async def apply_due_change(database: Database, builder: issuing.PassBuilder) -> bool:
    """Apply the earliest due change, if any; True when one was claimed.

    One transaction: the claim, the passes' new versions and pushes, and the outcome. A
    change whose result is invalid is rolled back and then recorded as failed with the
    reason, so nothing of it reaches a device.
    """
    try:
        async with database.transaction() as conn:
            row = await scheduled_changes.claim_due(conn, now_ms=issuing.now_ms())
            if row is None:
                return False
            try:
                async with conn.begin_nested():
                    outcome = await _apply(conn, builder, row)
            except PasshouseError as error:
                outcome = _Outcome(FAILED, error=error.message)
            except Exception as error:
                if isinstance(error, sa.exc.DBAPIError) or database_fault(error) is not None:
                    raise  # the database failed (or went away): the change stays pending
                # A bug must not hold back every change due after this one.
                log.exception("scheduled_change_crashed", change_id=row.id)
                outcome = _Outcome(
                    FAILED, error=f"Internal error ({type(error).__name__}); it has been logged."
                )
            finished = await scheduled_changes.finish(
                conn,
                row.id,
                status=outcome.status,
                now_ms=issuing.now_ms(),
                error=outcome.error,
                passes_changed=outcome.changed,
                passes_failed=outcome.failed,
                failures=outcome.failures or None,
            )
            if not finished:
                # Someone else finished (or cancelled) it meanwhile; the claim's lock makes
                # this unreachable, and if it ever is, nothing of this attempt is kept.
                raise _AlreadyFinished
    except _AlreadyFinished:
        return True
    log.info(
        "scheduled_change_finished",
        change_id=row.id,
        status=outcome.status,
        passes_changed=outcome.changed,
        passes_failed=outcome.failed,
        error=outcome.error,
    )
    return True


class _AlreadyFinished(Exception):
    pass


@dataclass(slots=True)
class _Outcome:
    status: str
    changed: int = 0
    failed: int = 0
    error: str | None = None
    failures: list[dict[str, str]] | None = None


async def _apply(conn: AsyncConnection, builder: issuing.PassBuilder, row: sa.Row[Any]) -> _Outcome:
    if row.pass_type_id is not None:
        changed = await _apply_to_pass(conn, builder, row, row.pass_type_id, row.serial_number)
        return _Outcome(APPLIED, changed=int(changed))
    template_row = await templates.get_template(conn, row.template_id)
    if template_row is None:
        raise NotFound(f"Template {row.template_id} no longer exists.")
    where: dict[str, Any] = dict(row.matching or {})
    outcome = _Outcome(APPLIED, failures=[])
    assert outcome.failures is not None
    after_id = None
    while True:
        page = await passes.list_passes(
            conn, template_id=template_row.id, after_id=after_id, limit=500
        )
        for pass_row in page:
            if not _matches(pass_row, where) or (pass_row.voided and not row.void):
                continue
            try:
                # A savepoint each: a pass that fails leaves the others' changes intact.
                async with conn.begin_nested():
                    changed = await _apply_to_pass(
                        conn, builder, row, pass_row.pass_type_id, pass_row.serial_number
                    )
            except (InvalidInput, Conflict) as error:
                outcome.failed += 1
                if len(outcome.failures) < MAX_FAILURES_LISTED:
                    outcome.failures.append(
                        {"serial_number": pass_row.serial_number, "reason": error.message}
                    )
                continue
            outcome.changed += int(changed)
        if len(page) < 500:
            break
        after_id = page[-1].id
    if outcome.failed and not outcome.changed:
        first = outcome.failures[0]
        outcome.status = FAILED
        outcome.error = (
            f"None of the matching passes could be changed ({outcome.failed} failed); "
            f"{first['serial_number']}: {first['reason']}"
        )
    return outcome


async def _apply_to_pass(
    conn: AsyncConnection,
    builder: issuing.PassBuilder,
    row: sa.Row[Any],
    pass_type_id: str,
    serial_number: str,
) -> bool:
    if row.void:
        _, changed = await issuing.void_pass(
            conn, pass_type_id, serial_number, actor=SCHEDULER, cause="scheduled_change"
        )
        return changed
    _, changed = await issuing.change_pass_data(
        conn,
        builder,
        pass_type_id,
        serial_number,
        row.data,
        merge=True,
        actor=SCHEDULER,
        cause="scheduled_change",
    )
    return changed


_MISSING = object()


def _matches(pass_row: sa.Row[Any], where: Mapping[str, Any]) -> bool:
    """Every dotted key of `where` holds exactly that value (true is not 1); "voided"
    matches the pass's state."""
    for key, expected in where.items():
        if key == "voided":
            if bool(pass_row.voided) is not expected:
                return False
            continue
        value: Any = pass_row.data
        for part in key.split("."):
            value = value.get(part, _MISSING) if isinstance(value, dict) else _MISSING
        if expected is None:
            if value is not _MISSING and value is not None:
                return False
        elif _is_number(value) and _is_number(expected):
            if value != expected:  # 2 matches 2.0
                return False
        elif type(value) is not type(expected) or value != expected:
            return False
    return True


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


async def next_change_due_ms(database: Database) -> int | None:
    async with database.reader() as conn:
        return await scheduled_changes.next_due_at_ms(conn)


# --- expiry and retirement (the workers) -------------------------------------------------


def pass_state(row: sa.Row[Any], now: int | None = None) -> dict[str, Any]:
    """The lifecycle fields of a pass view: expires_at, expired, retired."""
    now = issuing.now_seconds() if now is None else now
    expires_at = row.expires_at if row.expires_at is not None and row.expires_at >= 0 else None
    return {
        "expires_at": None if expires_at is None else issuing.iso_time(expires_at),
        "expired": pass_lifecycle.is_expired(row.expires_at, now),
        "retired": row.retired_at is not None,
    }


async def _sweeping(conn: AsyncConnection) -> bool:
    """Whether this worker does the expiry sweeps now: on PostgreSQL one worker at a time
    (a transaction-scoped advisory lock; the others skip), so a pass is voided once."""
    if conn.dialect.name != "postgresql":
        return True  # one writer at a time anyway
    locked = await conn.scalar(sa.select(sa.func.pg_try_advisory_xact_lock(_SWEEP_LOCK)))
    return bool(locked)


# Any constant of our own; only passhouse's workers take it.
_SWEEP_LOCK = 0x7061737368_0020


async def refresh_unknown_expiry(database: Database, builder: issuing.PassBuilder) -> int:
    """Render the expiry of passes whose template's date depends on pass data, after the
    template changed; returns how many."""
    async with database.transaction() as conn:
        if not await _sweeping(conn):
            return 0
        rows = await pass_lifecycle.with_unknown_expiry(conn, limit=EXPIRY_BATCH)
        if rows:
            expiries = await builder.rendered_expiries(conn, rows)
            await pass_lifecycle.set_expiries(conn, expiries)
    return len(rows)


async def void_expired(database: Database) -> int:
    """Void passes past their expiry (PASSHOUSE_VOID_EXPIRED): a version and a push each."""
    async with database.transaction() as conn:
        if not await _sweeping(conn):
            return 0
        rows = await pass_lifecycle.expired_not_voided(conn, now=issuing.now_seconds(), limit=BATCH)
        for row in rows:
            await issuing.void_pass(
                conn, row.pass_type_id, row.serial_number, actor=SCHEDULER, cause="expired"
            )
    if rows:
        log.info("expired_passes_voided", count=len(rows))
    return len(rows)


async def retire_ended(database: Database, retention_days: float) -> int:
    """Retire passes voided or expired longer than the retention period (ADR 0020)."""
    now = issuing.now_seconds()
    ended_before = now - int(retention_days * 86400)
    async with database.transaction() as conn:
        if not await _sweeping(conn):
            return 0
        rows = await pass_lifecycle.to_retire(conn, ended_before=ended_before, limit=BATCH)
        for row in rows:
            await _retire(conn, row.id, row.pass_type_id, now=now)
    if rows:
        log.info("passes_retired", count=len(rows))
    return len(rows)


async def _retire(conn: AsyncConnection, pass_id: int, pass_type_id: str, *, now: int) -> None:
    # A new version without a push: a device that asks again gets the retired file (a 200,
    # not a 304), and no device is woken for it. Its registrations go, so nothing is ever
    # pushed for it again and changed-serials no longer lists it.
    version = await pass_types.next_version(conn, pass_type_id)
    row = await passes.get_pass_by_id(conn, pass_id)
    assert row is not None
    voided = {} if row.voided else {"voided": True}  # an expired pass is voided with it
    await passes.save_new_version(
        conn,
        pass_id,
        version=version,
        now=now,
        voided=True,
        lifecycle={"retired_at": now, "voided_at": row.voided_at or now},
        change=Change("retired", SCHEDULER, {"retired": True, **voided}),
    )
    await pass_lifecycle.remove_registrations(conn, pass_id)


async def next_expiry(database: Database) -> int | None:
    async with database.reader() as conn:
        return await pass_lifecycle.next_expiry(conn)
