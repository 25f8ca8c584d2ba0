"""Use cases for passes by the thousand: batches, CSV imports and bulk updates (ADR 0019).

A batch is one request and one transaction. An import or a bulk update is a job: the
request that creates it stores everything the job needs (an import's rows are read from
the upload and staged in the database) and the workers run it in chunks, each chunk one
transaction that makes its passes or versions, queues their pushes and moves the job's
cursor together. A worker killed mid-job loses only its uncommitted chunk, which the next
worker does again from the cursor: no row is applied twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import sqlalchemy as sa
import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from passhouse import issuing
from passhouse.errors import Conflict, InvalidInput, PasshouseError, TooLarge
from passhouse.issuing import PassBuilder, google_wallet, merge_patch, now_ms, now_seconds
from passhouse.settings import Settings
from passhouse.storage import idempotency as idempotency_store
from passhouse.storage import jobs, pass_types, passes, push_jobs, templates, webhooks
from passhouse.storage.database import Database
from passhouse.storage.faults import database_fault
from passhouse.storage.pass_versions import Actor, Change
from passhouse.storage.tables import passes as passes_table

log = structlog.get_logger("passhouse.jobs")

MAX_BATCH_ITEMS = 1_000
SERIAL_COLUMN = "serial_number"
MODES = ("create", "upsert")
# Claims of one job before it is failed: a chunk that keeps crashing its worker (or
# raising an error that is not the row's fault) must not be retried for ever.
MAX_CLAIMS = 10
HOUSEKEEPING_SECONDS = 60.0


# --- many passes in one transaction -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Item:
    """One pass to make (or, in upsert mode, to update): `seq` names it in the answer."""

    seq: int
    serial_number: str | None
    data: Mapping[str, Any]


@dataclass(slots=True)
class Applied:
    created: list[tuple[int, sa.Row[Any]]] = field(default_factory=list)
    updated: list[int] = field(default_factory=list)
    unchanged: list[int] = field(default_factory=list)
    # (seq, serial number, error)
    errors: list[tuple[int, str | None, PasshouseError]] = field(default_factory=list)


async def apply_items(
    conn: AsyncConnection,
    builder: PassBuilder,
    template_row: sa.Row[Any],
    items: Sequence[Item],
    *,
    upsert: bool,
    change: Change,
) -> Applied:
    """Create (or, with `upsert`, update) passes of one template in the caller's transaction.

    Every item is checked as POST /passes checks one; the valid ones are written with one
    INSERT, one executemany UPDATE and one INSERT ... SELECT for the pushes of the updated
    passes. Items that fail are reported with their seq and change nothing. Each pass
    written gets a history row with `change`'s cause and actor.
    """
    applied = Applied()
    pass_type_id = template_row.pass_type_id
    seen: dict[str, int] = {}
    named: list[str] = []
    for item in items:
        if item.serial_number is not None:
            named.append(item.serial_number)
    existing = await passes.existing_serials(conn, pass_type_id, sorted(set(named)))
    check = await builder.render_checker(conn, template_row)
    todo: list[tuple[Item, str]] = []
    for item in items:
        serial = item.serial_number or secrets.token_hex(8)
        problem = _item_problem(item, serial)
        if problem is not None:
            applied.errors.append((item.seq, item.serial_number, InvalidInput(problem)))
        elif serial in seen:
            message = f"serial_number {serial!r} is also item {seen[serial]} of this request."
            applied.errors.append((item.seq, serial, Conflict(message)))
        else:
            seen[serial] = item.seq
            todo.append((item, serial))
    new_values: list[tuple[int, dict[str, Any]]] = []
    # (seq, pass id, data, expires_at)
    changes: list[tuple[int, int, dict[str, Any], int | None]] = []
    old_data: dict[int, Any] = {}  # pass id -> its data before (for the history's diff)

    def check_all() -> list[tuple[Item, str, PasshouseError | None, Any]]:
        checked: list[tuple[Item, str, PasshouseError | None, Any]] = []
        for item, serial in todo:
            old = existing.get(serial)
            if old is None:
                token = secrets.token_urlsafe(24)
                render = check(serial, token, item.data)
                checked.append(
                    (
                        item,
                        serial,
                        InvalidInput(render.problem) if render.problem else None,
                        (None, token, render.expires_at),
                    )
                )
                continue
            if not upsert:
                error = Conflict(f"Pass {serial!r} of {pass_type_id!r} already exists.")
                checked.append((item, serial, error, None))
            elif old.template_id != template_row.id:
                error = Conflict(
                    f"Pass {serial!r} was made from another template; it is not changed here."
                )
                checked.append((item, serial, error, None))
            elif old.voided:
                error = Conflict(f"Pass {serial!r} is voided; it can no longer change.")
                checked.append((item, serial, error, None))
            else:
                new_data = merge_patch(old.data, item.data)
                if new_data == old.data:
                    checked.append((item, serial, None, (old, None, None)))
                    continue
                render = check(serial, old.authentication_token, new_data, old.personalization)
                checked.append(
                    (
                        item,
                        serial,
                        InvalidInput(render.problem) if render.problem else None,
                        (old, new_data, render.expires_at),
                    )
                )
        return checked

    # Rendering is CPU work: in a thread, so a worker's push lanes keep running meanwhile.
    checked = await asyncio.to_thread(check_all) if len(todo) > 50 else check_all()
    now = now_seconds()
    for item, serial, error, outcome in checked:
        if error is not None:
            applied.errors.append((item.seq, serial, error))
            continue
        old, detail, expires_at = outcome
        if old is None:
            new_values.append(
                (
                    item.seq,
                    {
                        "pass_type_id": pass_type_id,
                        "serial_number": serial,
                        "template_id": template_row.id,
                        "authentication_token": detail,
                        "share_id": secrets.token_urlsafe(16),
                        "data": dict(item.data),
                        "voided": False,
                        "modified_at": now,
                        "created_at": now,
                        # The rendered expirationDate, as issue_pass records it, so the
                        # lifecycle loop voids and retires these passes too.
                        "expires_at": expires_at,
                    },
                )
            )
        elif detail is None:
            applied.unchanged.append(item.seq)
        else:
            changes.append((item.seq, old.id, detail, expires_at))
            old_data[old.id] = old.data
    count = len(new_values) + len(changes)
    if count == 0:
        return applied
    # Taken last, as late as possible: the counter row stays locked until commit.
    versions = iter(await pass_types.next_versions(conn, pass_type_id, count))
    for _, values in new_values:
        values["version"] = next(versions)
    try:
        rows = await passes.insert_passes(conn, [values for _, values in new_values], change=change)
    except IntegrityError:
        # Another request created one of these serials since they were looked up.
        raise Conflict(
            "A pass with one of these serial numbers was created at the same moment; retry."
        ) from None
    applied.created = [(seq, row) for (seq, _), row in zip(new_values, rows, strict=True)]
    await _announce(conn, "pass.created", [row.id for row in rows])
    await google_wallet.passes_issued(conn, template_row.id, rows)
    if changes:
        await passes.save_new_data_many(
            conn,
            [(pass_id, data, next(versions), expiry) for _, pass_id, data, expiry in changes],
            now=now,
            change=change,
            old_data=old_data,
        )
        changed_ids = [pass_id for _, pass_id, _, _ in changes]
        await push_jobs.enqueue_for_passes(conn, changed_ids, now_ms=now_ms())
        await _announce(conn, "pass.updated", changed_ids)
        await google_wallet.passes_changed(conn, changed_ids)
        applied.updated = [seq for seq, _, _, _ in changes]
    return applied


def _item_problem(item: Item, serial: str) -> str | None:
    problem = issuing.storable_problem(item.data, "data")
    if problem:
        return problem + "."
    try:
        issuing._check_serial(serial)
    except InvalidInput as error:
        return error.message
    return None


async def _announce(conn: AsyncConnection, event_type: str, pass_ids: list[int]) -> None:
    """The webhook events of passes written here, in the same transaction (one statement)."""
    if pass_ids:
        await webhooks.emit_pass_events(
            conn, event_type, passes_table.c.id.in_(pass_ids), now_ms=now_ms()
        )


async def issue_batch(
    conn: AsyncConnection,
    builder: PassBuilder,
    *,
    template_ref: str,
    items: Sequence[Mapping[str, Any]],
    actor: Actor,
) -> tuple[sa.Row[Any], Applied]:
    """POST /passes/batch: the valid items are created, the others answered with why."""
    if len(items) > MAX_BATCH_ITEMS:
        raise InvalidInput(f"A batch holds at most {MAX_BATCH_ITEMS} items.")
    template_row = await issuing.get_template_or_404(conn, template_ref)
    given = [
        Item(seq=index, serial_number=item.get("serial_number"), data=item.get("data") or {})
        for index, item in enumerate(items)
    ]
    change = Change("batch_issued", actor)
    return template_row, await apply_items(
        conn, builder, template_row, given, upsert=False, change=change
    )


# --- CSV imports ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CsvLimits:
    max_bytes: int
    max_rows: int
    max_columns: int

    @classmethod
    def of(cls, settings: Settings) -> CsvLimits:
        return cls(settings.import_max_bytes, settings.import_max_rows, settings.import_max_columns)


_SERIAL = ()  # the column path of serial_number


def _columns(header: list[str], limits: CsvLimits) -> list[tuple[str, ...]]:
    """Each header cell as a data path (dotted names nest: member.name); () is the serial."""
    if len(header) > limits.max_columns:
        raise InvalidInput(
            f"The CSV has {len(header)} columns; at most {limits.max_columns} are allowed "
            "(PASSHOUSE_IMPORT_MAX_COLUMNS)."
        )
    columns: list[tuple[str, ...]] = []
    for number, raw in enumerate(header, start=1):
        name = raw.strip()
        if not name:
            raise InvalidInput(f"Column {number} of the header row has no name.")
        if name == SERIAL_COLUMN:
            path: tuple[str, ...] = _SERIAL
        else:
            path = tuple(part.strip() for part in name.split("."))
            if any(not part for part in path):
                raise InvalidInput(f"Column {name!r}: a dotted name needs text between dots.")
        if path in columns:
            raise InvalidInput(f"Column {name!r} appears twice in the header row.")
        columns.append(path)
    paths = {path for path in columns if path}
    for path in paths:
        for cut in range(1, len(path)):
            if path[:cut] in paths:
                raise InvalidInput(
                    f"Columns {'.'.join(path[:cut])!r} and {'.'.join(path)!r} both set "
                    f"{'.'.join(path[:cut])!r}: one value cannot be text and an object."
                )
    problem = issuing.storable_problem(header, "the header row")
    if problem:
        raise InvalidInput(problem + ".")
    return columns


def _row_record(number: int, cells: list[str], columns: list[tuple[str, ...]]) -> dict[str, Any]:
    record: dict[str, Any] = {
        "row_number": number,
        "serial_number": None,
        "data": None,
        "problem": None,
    }
    if len(cells) != len(columns):
        record["problem"] = f"The row has {len(cells)} fields; the header row has {len(columns)}."
        return record
    data: dict[str, Any] = {}
    serial = None
    for path, value in zip(columns, cells, strict=True):
        if value == "":
            continue  # an empty cell sets nothing (in upsert mode: keeps the stored value)
        if path == _SERIAL:
            serial = value
            continue
        target = data
        for part in path[:-1]:
            target = target.setdefault(part, {})
        target[path[-1]] = value
    if serial is not None:
        try:
            issuing._check_serial(serial)
        except InvalidInput as error:
            record["problem"] = error.message
            return record
    problem = issuing.storable_problem(data, "data")
    if problem:
        record["problem"] = problem + "."
        return record
    record["serial_number"] = serial
    record["data"] = data
    return record


class CsvRows:
    """An uploaded CSV read a chunk of rows at a time, within the limits.

    UTF-8 (a BOM is skipped), a header row, then data rows; blank lines are skipped. What
    makes the whole file unreadable (another encoding, broken quoting, too many rows or
    columns) raises InvalidInput or TooLarge; a row with the wrong number of fields is
    kept with its problem, to be reported as that row's failure.
    """

    def __init__(self, binary: BinaryIO, limits: CsvLimits) -> None:
        self._limits = limits
        self._text = io.TextIOWrapper(
            io.BufferedReader(_ClosingGuard(binary)),
            encoding="utf-8-sig",
            errors="strict",
            newline="",
        )
        self._reader = csv.reader(self._text, strict=True)
        self._record = 0  # records read, the header included
        self.rows = 0
        self.columns = _columns(self._header(), limits)

    def _next(self) -> list[str] | None:
        try:
            cells = next(self._reader, None)
        except UnicodeDecodeError:
            raise InvalidInput(
                f"The file is not UTF-8 text (at row {self._record + 1}): save it as 'CSV UTF-8'."
            ) from None
        except csv.Error as error:
            raise InvalidInput(f"Row {self._record + 1} is not valid CSV: {error}.") from None
        if cells is not None:
            self._record += 1
        return cells

    def _header(self) -> list[str]:
        while True:
            cells = self._next()
            if cells is None:
                raise InvalidInput("The file is empty: a CSV import needs a header row.")
            if any(cell.strip() for cell in cells):
                return cells

    def chunk(self, size: int) -> list[dict[str, Any]]:
        """Up to `size` row records ({row_number, serial_number, data, problem})."""
        records: list[dict[str, Any]] = []
        while len(records) < size:
            cells = self._next()
            if cells is None:
                break
            if not any(cells):
                continue
            self.rows += 1
            if self.rows > self._limits.max_rows:
                raise TooLarge(
                    f"The CSV has more than {self._limits.max_rows} data rows "
                    "(PASSHOUSE_IMPORT_MAX_ROWS); split it."
                )
            records.append(_row_record(self._record, cells, self.columns))
        return records


class _ClosingGuard(io.RawIOBase):
    """A view of a binary file that TextIOWrapper may close without closing the file."""

    def __init__(self, binary: BinaryIO) -> None:
        self._binary = binary

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._binary.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


async def create_import(
    conn: AsyncConnection,
    *,
    template_ref: str,
    mode: str,
    file: BinaryIO,
    limits: CsvLimits,
    actor: Actor,
    file_name: str | None = None,
    chunk_size: int = 1_000,
) -> int:
    """Read an uploaded CSV into a queued import job, in the caller's transaction; its id.

    The file is read a chunk at a time (in a thread) and staged in the database, so
    neither its size nor its rows are ever held in memory at once.
    """
    if mode not in MODES:
        raise InvalidInput(f"mode must be one of {', '.join(MODES)}.")
    template_row = await issuing.get_template_or_404(conn, template_ref)
    rows = await asyncio.to_thread(CsvRows, file, limits)
    job_id = await jobs.create_job(
        conn,
        kind=jobs.IMPORT,
        template_id=template_row.id,
        template_name=template_row.name,
        params={"mode": mode, "file_name": file_name, "actor": actor.as_dict()},
        total=0,
        now=now_seconds(),
    )
    while True:
        records = await asyncio.to_thread(rows.chunk, chunk_size)
        if not records:
            break
        await jobs.stage_rows(conn, job_id, records)
    if rows.rows == 0:
        raise InvalidInput("The CSV has a header row and no data rows: nothing to import.")
    await jobs.set_total(conn, job_id, rows.rows)
    return job_id


def file_size(binary: BinaryIO) -> int:
    """The size of a seekable file, read position kept."""
    position = binary.tell()
    size = binary.seek(0, io.SEEK_END)
    binary.seek(position)
    return size


def check_file_size(size: int, limits: CsvLimits) -> None:
    if size > limits.max_bytes:
        raise TooLarge(
            f"The CSV is larger than {limits.max_bytes} bytes (PASSHOUSE_IMPORT_MAX_BYTES)."
        )


def sha256_of_file(binary: BinaryIO) -> str:
    """SHA-256 of a seekable file's bytes, read in blocks; the position is rewound."""
    import hashlib

    digest = hashlib.sha256()
    binary.seek(0)
    for block in iter(lambda: binary.read(1 << 20), b""):
        digest.update(block)
    binary.seek(0)
    return digest.hexdigest()


# --- bulk updates -----------------------------------------------------------------------


def _where_paths(where: Mapping[str, Any]) -> list[tuple[tuple[str, ...], Any]]:
    """(dotted data paths with their values, voided) of a bulk update's `where`."""
    paths = []
    for key, value in where.items():
        if key == "voided":
            if not isinstance(value, bool):
                raise InvalidInput("where.voided must be true or false.")
            if value:
                raise InvalidInput(
                    "where.voided is true: a voided pass can no longer change, so no pass "
                    "would match. Use false (or leave it out) to change the passes in use."
                )
            continue
        path = tuple(key.split("."))
        if any(not part for part in path):
            raise InvalidInput(f"where key {key!r}: a dotted name needs text between dots.")
        paths.append((path, value))
    return paths


def _same(a: Any, b: Any) -> bool:
    """JSON equality: true is not 1, and 1 is 1.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


_MISSING = object()


def matches(data: Any, paths: Sequence[tuple[tuple[str, ...], Any]]) -> bool:
    for path, expected in paths:
        value = data
        for part in path:
            value = value.get(part, _MISSING) if isinstance(value, dict) else _MISSING
        if value is _MISSING or not _same(value, expected):
            return False
    return True


async def create_bulk_update(
    conn: AsyncConnection,
    *,
    template_ref: str,
    where: Mapping[str, Any],
    data: Mapping[str, Any],
    actor: Actor,
) -> int:
    """Queue a job that merges `data` into every pass of a template matching `where`."""
    template_row = await issuing.get_template_or_404(conn, template_ref)
    _where_paths(where)
    problem = issuing.storable_problem(data, "data") or issuing.storable_problem(where, "where")
    if problem:
        raise InvalidInput(problem + ".")
    if not data:
        raise InvalidInput("data is empty: a bulk update needs a merge patch to apply.")
    total, upper_id = await passes.count_template_candidates(conn, template_row.id)
    return await jobs.create_job(
        conn,
        kind=jobs.BULK_UPDATE,
        template_id=template_row.id,
        template_name=template_row.name,
        # Passes made after the job was created are left alone: they are newer than it.
        params={
            "where": dict(where),
            "data": dict(data),
            "upper_id": upper_id,
            # Who asked: the versions the workers make later are theirs (ADR 0029).
            "actor": actor.as_dict(),
        },
        total=total,
        now=now_seconds(),
    )


# --- running jobs -----------------------------------------------------------------------


async def _import_chunk(
    conn: AsyncConnection,
    builder: PassBuilder,
    job: sa.Row[Any],
    template_row: sa.Row[Any],
    limit: int,
) -> bool:
    found = await jobs.next_rows(conn, job.id, after=job.cursor, limit=limit)
    if found is None:
        return False
    rows, until = found
    errors: list[tuple[int, str | None, str]] = []
    items = []
    for row in rows:
        if row.problem is not None:
            errors.append((row.row_number, row.serial_number, row.problem))
        else:
            items.append(Item(row.row_number, row.serial_number, row.data or {}))
    applied = await apply_items(
        conn,
        builder,
        template_row,
        items,
        upsert=job.params.get("mode") == "upsert",
        change=Change("csv_import", job_actor(job)),
    )
    errors.extend((seq, serial, error.message) for seq, serial, error in applied.errors)
    await jobs.record_chunk(
        conn,
        job.id,
        cursor=until,
        done=len(rows),
        created=len(applied.created),
        updated=len(applied.updated),
        unchanged=len(applied.unchanged),
        errors=sorted(errors, key=lambda error: error[0]),
    )
    return True


async def _bulk_update_chunk(
    conn: AsyncConnection,
    builder: PassBuilder,
    job: sa.Row[Any],
    template_row: sa.Row[Any],
    limit: int,
) -> bool:
    params = job.params
    found = await passes.template_candidates(
        conn, template_row.id, after_id=job.cursor, upper_id=params["upper_id"], limit=limit
    )
    if found is None:
        return False
    candidates, until = found
    paths = _where_paths(params["where"])
    patch = params["data"]
    check = await builder.render_checker(conn, template_row)

    old_data = {row.id: row.data for row in candidates}

    def plan() -> tuple[
        list[tuple[int, dict[str, Any], int | None]], int, list[tuple[int, str, str]]
    ]:
        changes, unchanged, errors = [], 0, []
        for row in candidates:
            if not matches(row.data, paths):
                continue
            new_data = merge_patch(row.data, patch)
            if new_data == row.data:
                unchanged += 1
                continue
            render = check(
                row.serial_number, row.authentication_token, new_data, row.personalization
            )
            if render.problem:
                errors.append((row.id, row.serial_number, render.problem))
            else:
                changes.append((row.id, new_data, render.expires_at))
        return changes, unchanged, errors

    changes, unchanged, errors = await asyncio.to_thread(plan)
    if changes:
        versions = await pass_types.next_versions(conn, template_row.pass_type_id, len(changes))
        await passes.save_new_data_many(
            conn,
            [
                (pid, data, v, expiry)
                for (pid, data, expiry), v in zip(changes, versions, strict=True)
            ],
            now=now_seconds(),
            change=Change("bulk_update", job_actor(job)),
            old_data=old_data,
        )
        changed_ids = [pid for pid, _, _ in changes]
        # One INSERT ... SELECT per chunk: a push per device holding a changed pass.
        await push_jobs.enqueue_for_passes(conn, changed_ids, now_ms=now_ms())
        await _announce(conn, "pass.updated", changed_ids)
        await google_wallet.passes_changed(conn, changed_ids)
    await jobs.record_chunk(
        conn,
        job.id,
        cursor=until,
        done=len(candidates),
        updated=len(changes),
        unchanged=unchanged,
        errors=errors,
    )
    return True


def job_actor(job: sa.Row[Any]) -> Actor:
    """Who created a job (stored with it); a job queued before the history was kept is
    the server's."""
    stored = job.params.get("actor")
    if not isinstance(stored, dict):
        return Actor("system")
    return Actor(stored["kind"], stored.get("key_id"), stored.get("name"))


_CHUNKS = {jobs.IMPORT: _import_chunk, jobs.BULK_UPDATE: _bulk_update_chunk}

Progress = Callable[[sa.Row[Any]], None]


async def run_job(
    database: Database,
    builder: PassBuilder,
    settings: Settings,
    job_id: int,
    token: str,
    *,
    stop: asyncio.Event | None = None,
    progress: Progress | None = None,
) -> None:
    """Run a claimed job a chunk (one transaction) at a time until it is done, or the
    lease is lost, or `stop` is set (the job is then handed back)."""
    lease_ms = int(settings.job_lease_seconds * 1000)
    while True:
        if stop is not None and stop.is_set():
            async with database.transaction() as conn:
                await jobs.release(conn, job_id, token)
            return
        async with database.transaction() as conn:
            job = await jobs.hold(conn, job_id, token, until_ms=now_ms() + lease_ms)
            if job is None:
                return  # taken over by another worker (our lease ran out), or finished
            if job.claims > MAX_CLAIMS:
                await jobs.finish(
                    conn,
                    job_id,
                    status=jobs.FAILED,
                    now=now_seconds(),
                    error=f"Stopped after {MAX_CLAIMS} attempts. Last error: {job.error}",
                )
                return
            template_row = await templates.get_template(conn, job.template_id)
            if template_row is None:
                await jobs.finish(
                    conn,
                    job_id,
                    status=jobs.FAILED,
                    now=now_seconds(),
                    error=f"The template {job.template_name!r} was deleted.",
                )
                return
            chunk = _CHUNKS[job.kind]
            more = await chunk(conn, builder, job, template_row, settings.job_chunk_size)
            if not more:
                await jobs.finish(conn, job_id, status=jobs.DONE, now=now_seconds())
        if progress is not None:
            async with database.reader() as conn:
                current = await jobs.get_job(conn, job_id)
            if current is not None:
                progress(current)
        if not more:
            log.info("job_done", job_id=job_id, kind=job.kind)
            return


async def claim_job(
    database: Database, settings: Settings, *, job_id: int | None = None
) -> tuple[int, str] | None:
    """Lease the next job that nobody runs (or `job_id`); (job id, lease token)."""
    token = secrets.token_hex(16)
    async with database.transaction() as conn:
        job = await jobs.claim(
            conn,
            now_ms=now_ms(),
            lease_ms=int(settings.job_lease_seconds * 1000),
            token=token,
            job_id=job_id,
        )
    return None if job is None else (int(job.id), token)


async def run_claimed(
    database: Database,
    builder: PassBuilder,
    settings: Settings,
    job_id: int,
    token: str,
    *,
    stop: asyncio.Event | None = None,
    progress: Progress | None = None,
) -> None:
    """run_job, recording an unexpected error on the job (the lease then runs out and the
    job is tried again, up to MAX_CLAIMS times)."""
    try:
        await run_job(database, builder, settings, job_id, token, stop=stop, progress=progress)
    except Exception as error:
        log.exception("job_chunk_failed", job_id=job_id)
        with contextlib.suppress(Exception):
            async with database.transaction() as conn:
                await jobs.record_error(conn, job_id, f"{type(error).__name__}: {error}")
        raise


async def housekeeping(database: Database, settings: Settings) -> None:
    """Forget finished jobs past their keep time, and idempotency keys past 24 h."""
    now = now_seconds()
    async with database.transaction() as conn:
        await jobs.prune(conn, finished_before=now - settings.job_keep_seconds)
        await idempotency_store.prune(conn, created_before=now - settings.idempotency_keep_seconds)


async def run_job_worker(
    database: Database, builder: PassBuilder, settings: Settings, stop: asyncio.Event
) -> None:
    """The workers' job loop: claim a job, run it, repeat; poll while there is none."""
    last_housekeeping = 0.0
    while not stop.is_set():
        claimed = None
        try:
            if time.monotonic() - last_housekeeping >= HOUSEKEEPING_SECONDS:
                last_housekeeping = time.monotonic()
                await housekeeping(database, settings)
            claimed = await claim_job(database, settings)
            if claimed is not None:
                await run_claimed(database, builder, settings, *claimed, stop=stop)
        except Exception as error:
            fault = database_fault(error)
            if fault is None:
                log.warning("job_worker_error", exc_info=True)
            else:  # an outage is logged once, by database.outages (as the push worker does)
                database.outages.report(fault, error)
            claimed = None
        if claimed is None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(settings.job_poll_seconds):
                    await stop.wait()


# --- views ------------------------------------------------------------------------------


def job_view(job: sa.Row[Any], errors: Sequence[sa.Row[Any]], public_url: str) -> dict[str, Any]:
    return {
        "id": job.id,
        "kind": job.kind,
        "status": job.status,
        "template": job.template_name,
        "mode": job.params.get("mode") if job.kind == jobs.IMPORT else None,
        "total": job.total,
        "done": job.done,
        "created": job.created,
        "updated": job.updated,
        "unchanged": job.unchanged,
        "failed": job.failed,
        "errors": [error_view(job, error) for error in errors],
        "error": job.error if job.status == jobs.FAILED else None,
        "created_at": issuing.iso_time(job.created_at),
        "started_at": None if job.started_at is None else issuing.iso_time(job.started_at),
        "finished_at": None if job.finished_at is None else issuing.iso_time(job.finished_at),
        "url": f"{public_url}/api/v1/jobs/{job.id}",
    }


def error_view(job: sa.Row[Any], error: sa.Row[Any]) -> dict[str, Any]:
    return {
        "row": error.seq if job.kind == jobs.IMPORT else None,
        "serial_number": error.serial_number,
        "message": error.message,
    }
