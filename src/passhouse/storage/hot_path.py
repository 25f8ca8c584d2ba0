"""The device hot path on the database driver itself, without SQLAlchemy.

Three queries run on nearly every device request: the pass's token and version, the
serials changed since a tag, and the registration upsert. Measured on this machine
(docs/benchmarks.md), SQLAlchemy's async layer around them cost 600-700 us of CPU per read
(a thread hop per aiosqlite call; BEGIN and ROLLBACK round trips around each asyncpg
query), 60-70 % of a request. Here they are plain SQL:

- PostgreSQL: a pool of its own (storage/pg_pool.py), statements prepared once per
  connection with generic plans, reads in autocommit; the registrations of one turn of
  the event loop in one statement (ADR 0030);
- SQLite: the stdlib driver called on the event loop thread, on one connection. An
  indexed lookup takes about 5 us, far less than handing it to a thread; writes take the
  process's SQLite write lock first, so they never sleep in SQLite's busy handler behind
  another connection of this process; the registrations of one turn of the event loop
  share a transaction (ADR 0030).

These are the only copies of these statements; the rest of storage/ uses SQLAlchemy
Core for everything off the hot path.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import json
import secrets
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Generic, Protocol, TypeVar

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy.engine import make_url

from passhouse.storage.pg_pool import StatementPool
from passhouse.storage.webhooks import (
    PG_INSTALLED_CTE,
    SQLITE_INSTALLED,
    SQLITE_INSTALLED_WANTED,
    shorten_device_id,
)


@dataclass(frozen=True, slots=True)
class PassAuth:
    id: int
    authentication_token: str
    version: int
    modified_at: int
    # Retired (ADR 0020): the device gets the last file, and no registration is stored.
    retired: bool = False


@dataclass(frozen=True, slots=True)
class BuildInputs:
    """A pass as it is now, with what signing it needs, or its signed file if cached."""

    id: int
    pass_type_id: str
    serial_number: str
    template_id: int
    authentication_token: str
    data: Any
    personalization: Any
    voided: bool
    version: int
    template_revision: int
    team_id: str
    certificate_pem: str
    wwdr_pem: str | None
    private_key_encrypted: bytes
    # The signed file of this version for the build key asked for, when there is one.
    cached: bytes | None
    # Retired passes are built without the web service keys (ADR 0020).
    retired: bool = False


class Registered(enum.Enum):
    CREATED = enum.auto()
    UPDATED = enum.auto()  # it existed: its push token and time were replaced
    PASS_FULL = enum.auto()  # a new device, and the pass holds its most: nothing stored
    UNAUTHORIZED = enum.auto()  # no such pass, or not its token: nothing stored
    RETIRED = enum.auto()  # the pass is retired (ADR 0020): nothing stored


class HotPath(Protocol):
    async def pass_for_device(self, pass_type_id: str, serial_number: str) -> PassAuth | None: ...

    async def serials_updated_since(
        self, device_library_id: str, pass_type_id: str, since: int
    ) -> list[tuple[str, int]]: ...

    async def register(self, registration: Registration) -> Registered:
        """Store a registration for the pass named by its type and serial, if the token
        presented is the pass's and the pass is not retired, unless it is new and the pass
        already has `max_registrations` (0: no cap). A device already registered always
        may renew, and its transport (the app it registered through) is replaced with the
        rest. The pass is looked up in the same round trip as the write."""
        ...

    async def build_inputs(self, pass_id: int, build_key: str) -> BuildInputs | None:
        """The pass's current version and its signed file (or what building one needs)."""
        ...

    async def store_pkpass(self, pass_id: int, version: int, build_key: str, data: bytes) -> None:
        """Keep a signed file; an older version's is replaced, and so is the same version's
        built for another key (the same rule as storage.passes.store_pkpass)."""
        ...

    async def close(self) -> None: ...


# One round trip for a download that must sign: the pass, its template's revision, the
# pass type's credentials and the cached file of its current version, if any.
_BUILD_INPUTS = """
SELECT p.id, p.pass_type_id, p.serial_number, p.template_id, p.authentication_token,
       p.data, p.personalization, p.voided, p.version, t.revision, pt.team_id,
       pt.certificate_pem, pt.wwdr_pem, pt.private_key_encrypted,
       (SELECT c.data FROM pkpass_cache c
        WHERE c.pass_id = p.id AND c.version = p.version AND c.build_key = {1}),
       p.retired_at IS NOT NULL
FROM passes p
JOIN templates t ON t.id = p.template_id
JOIN pass_types pt ON pt.pass_type_id = p.pass_type_id
WHERE p.id = {0}
"""
_STORE_PKPASS = """
INSERT INTO pkpass_cache (pass_id, version, build_key, data) VALUES ({0}, {1}, {2}, {3})
ON CONFLICT (pass_id) DO UPDATE
    SET version = excluded.version, build_key = excluded.build_key, data = excluded.data
    WHERE pkpass_cache.version < excluded.version
       OR (pkpass_cache.version = excluded.version AND pkpass_cache.build_key <> excluded.build_key)
"""


def _build_inputs(row: Any) -> BuildInputs:
    data, personalization = row[5], row[6]
    # JSON columns: text on SQLite, and from asyncpg (no codec is set for json).
    if isinstance(data, str):
        data = json.loads(data)
    if isinstance(personalization, str):
        personalization = json.loads(personalization)
    return BuildInputs(
        id=row[0],
        pass_type_id=row[1],
        serial_number=row[2],
        template_id=row[3],
        authentication_token=row[4],
        data=data,
        personalization=personalization,
        voided=bool(row[7]),
        version=row[8],
        template_revision=row[9],
        team_id=row[10],
        certificate_pem=row[11],
        wwdr_pem=row[12],
        private_key_encrypted=bytes(row[13]),
        cached=None if row[14] is None else bytes(row[14]),
        retired=bool(row[15]),
    )


_SELECT_DEVICE_AUTH = (
    "SELECT id, authentication_token, version, modified_at, retired_at IS NOT NULL FROM passes "
    "WHERE pass_type_id = {0} AND serial_number = {1}"
)
# Changed serials, written so the only plan is the device's row, then its registrations
# (primary key prefix), then each registered pass by id: O(the device's registrations)
# whatever the statistics say (ADR 0013). Joined freely, PostgreSQL without statistics
# starts from every pass of the type above the tag instead.
# PostgreSQL: the device id is an InitPlan; OFFSET 0 keeps the LATERAL subquery from being
# flattened and the pass type and tag filters from being pushed into it, so pk_passes is
# the only index it can use.
_PG_SERIALS_SINCE = """
SELECT p.serial_number, p.version
FROM registrations r
CROSS JOIN LATERAL (
    SELECT serial_number, version, pass_type_id FROM passes WHERE id = r.pass_id OFFSET 0
) p
WHERE r.device_id = (SELECT id FROM devices WHERE device_library_id = $1)
  AND p.pass_type_id = $2 AND p.version > $3
"""
# SQLite: each pass is a correlated scalar subquery on its rowid and the device id one on
# its unique index; SQLite plans such single-table lookups without consulting statistics.
# INDEXED BY pins the registrations scan to the primary key (device_id, pass_id): stale
# statistics (say, from an empty table) otherwise make a full scan look cheaper.
_SQLITE_SERIALS_SINCE = """
SELECT serial_number, version FROM (
    SELECT (SELECT serial_number FROM passes
            WHERE id = r.pass_id AND pass_type_id = ?2 AND version > ?3) AS serial_number,
           (SELECT version FROM passes WHERE id = r.pass_id) AS version
    FROM registrations r INDEXED BY sqlite_autoindex_registrations_1
    WHERE r.device_id = (SELECT id FROM devices WHERE device_library_id = ?1)
)
WHERE serial_number IS NOT NULL
"""


def _pg(sql: str, count: int) -> str:
    return sql.format(*(f"${i}" for i in range(1, count + 1)))


def _sqlite(sql: str, count: int) -> str:
    return sql.format(*(f"?{i}" for i in range(1, count + 1)))


_SQLITE_DEVICE_AUTH = _sqlite(_SELECT_DEVICE_AUTH, 2)


# A batch of registrations in one statement, one round trip and one commit. Parameters:
# arrays of equal length, one element per registration: $1 device library id, $2 pass
# type id, $3 serial number, $4 SHA-256 of the token presented, $5 push token, $6 time
# (ms), $7 transport, $8 push service URL, $9 the shortened device id for the webhook
# event, $10 the pass's cap (0: none). No (device, pass) pair appears twice (the caller
# sends a repeat in the next statement). Every row comes back as (n, pass id, retired,
# created): pass id NULL when no pass has that serial and token; created true for a new
# registration, false for a renewal, NULL when nothing was stored (retired, or full for
# a new device).
#
# - located: the pass, if the token is its own, its template, and whether it is retired;
#   the rest of the statement reads the pass from here.
# - room: whether each may be stored. A renewal always may; a new device while the pass
#   holds fewer than its cap, counting the batch's earlier new devices for that pass.
# - device: the devices row, created or found (the no-op DO UPDATE makes RETURNING give
#   an existing row's id).
# - registered: the upsert; xmax = 0 tells a fresh insert from an update.
# - a fresh one (a new install) is counted in its hour's counter, recorded as the pass's
#   first install if it is, and records its pass.installed event when some webhook takes
#   it (storage/webhooks.py); a renewal writes nothing more.
#
# Each pass and device is read by a correlated subquery on its unique index (OFFSET 0
# keeps a LATERAL subquery from being flattened into a join the planner could hash):
# O(the batch) whatever the statistics say (ADR 0013). Rows are locked in key order, so
# two processes' batches cannot deadlock on each other.
_PG_REGISTER_BATCH_SQL = """
WITH input AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::text[],
                         $6::bigint[], $7::text[], $8::text[], $9::text[], $10::int[])
        WITH ORDINALITY AS i(device_library_id, pass_type_id, serial_number, token_digest,
                             push_token, now_ms, transport, push_service_url, device_short,
                             cap, n)
), located AS (
    SELECT i.*, p.id AS pass_id, p.template_id, p.retired
    FROM input i
    LEFT JOIN LATERAL (
        SELECT id, template_id, retired_at IS NOT NULL AS retired FROM passes
        WHERE pass_type_id = i.pass_type_id AND serial_number = i.serial_number
          AND sha256(convert_to(authentication_token, 'UTF8')) = i.token_digest
        OFFSET 0
    ) AS p ON true
), known AS (
    SELECT l.*, EXISTS (
        SELECT 1 FROM registrations r
        WHERE r.device_id = (SELECT d.id FROM devices d
                             WHERE d.device_library_id = l.device_library_id)
          AND r.pass_id = l.pass_id
    ) AS renewal
    FROM located l
    WHERE l.pass_id IS NOT NULL AND NOT l.retired
), room AS (
    SELECT k.*, k.renewal OR k.cap = 0 OR (
        (SELECT count(*) FROM (SELECT 1 FROM registrations h
                               WHERE h.pass_id = k.pass_id LIMIT k.cap) AS held)
        + row_number() OVER (PARTITION BY k.pass_id, k.renewal ORDER BY k.n)
    ) <= k.cap AS ok
    FROM known k
), device AS (
    INSERT INTO devices (device_library_id, created_at)
    SELECT device_library_id, min(now_ms) / 1000 FROM room WHERE ok
    GROUP BY device_library_id ORDER BY device_library_id
    ON CONFLICT (device_library_id) DO UPDATE SET device_library_id = EXCLUDED.device_library_id
    RETURNING id, device_library_id
), registered AS (
    INSERT INTO registrations
        (device_id, pass_id, push_token, registered_at_ms, transport, push_service_url)
    SELECT d.id, r.pass_id, r.push_token, r.now_ms, r.transport, r.push_service_url
    FROM room r JOIN device d ON d.device_library_id = r.device_library_id
    WHERE r.ok
    ORDER BY d.id, r.pass_id
    ON CONFLICT (device_id, pass_id) DO UPDATE
        SET push_token = EXCLUDED.push_token, registered_at_ms = EXCLUDED.registered_at_ms,
            transport = EXCLUDED.transport, push_service_url = EXCLUDED.push_service_url
    RETURNING (xmax = 0) AS created, device_id, pass_id
), outcome AS (
    SELECT l.n, l.pass_id, l.pass_type_id, l.template_id, l.serial_number, l.retired,
           l.now_ms, l.device_short, reg.created
    FROM located l
    LEFT JOIN device d ON d.device_library_id = l.device_library_id
    LEFT JOIN registered reg ON reg.device_id = d.id AND reg.pass_id = l.pass_id
), installs AS (
    SELECT o.*, row_number() OVER (PARTITION BY o.pass_id ORDER BY o.n) AS nth
    FROM outcome o
    WHERE o.created
), counted AS (
    INSERT INTO stats_counters (pass_type_id, template_id, bucket, installs)
    SELECT pass_type_id, template_id, now_ms / 1000 - now_ms / 1000 % 3600, count(*)
    FROM installs GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (pass_type_id, template_id, bucket)
        DO UPDATE SET installs = stats_counters.installs + EXCLUDED.installs
), first_install AS (
    INSERT INTO pass_first_installs (pass_id, at_ms)
    SELECT pass_id, min(now_ms) FROM installs GROUP BY pass_id ORDER BY pass_id
    ON CONFLICT (pass_id) DO NOTHING
){installed}
SELECT n, pass_id, retired, created FROM outcome
"""
_PG_REGISTER_BATCH = _PG_REGISTER_BATCH_SQL.format(installed=PG_INSTALLED_CTE)


_SQLITE_COUNT_INSTALL = (
    "INSERT INTO stats_counters (pass_type_id, template_id, bucket, installs) "
    "SELECT pass_type_id, template_id, ?, 1 FROM passes WHERE id = ? "
    "ON CONFLICT (pass_type_id, template_id, bucket) DO UPDATE SET installs = installs + 1"
)
_SQLITE_FIRST_INSTALL = (
    "INSERT INTO pass_first_installs (pass_id, at_ms) VALUES (?, ?) "
    "ON CONFLICT (pass_id) DO NOTHING"
)


def _hour_of(now_ms: int) -> int:
    """The counter bucket of a moment: the start of its hour in Unix seconds (as
    storage.analytics.bucket_of)."""
    seconds = now_ms // 1000
    return seconds - seconds % 3600


# Compared against when a pass does not exist, so both refusals take the same time.
_NO_TOKEN = secrets.token_urlsafe(24)


def token_matches(presented: str, stored: str | None) -> bool:
    """The token a device presented is the pass's (`stored`, None for no such pass): in
    constant time, and the same work whether or not the pass exists."""
    same = secrets.compare_digest(presented.encode(), (stored or _NO_TOKEN).encode())
    return same and stored is not None


# CASE, not OR: SQLite evaluates both sides of an OR, and CASE counts only for a device
# not registered yet.
_SQLITE_FULL = """
SELECT CASE WHEN EXISTS (
    SELECT 1 FROM registrations r JOIN devices d ON d.id = r.device_id
    WHERE d.device_library_id = ?1 AND r.pass_id = ?2
) THEN 0 ELSE (SELECT count(*) FROM (SELECT 1 FROM registrations WHERE pass_id = ?2 LIMIT ?3)) >= ?3
END
"""


StoredFile = tuple[int, int, str, bytes]  # pass id, version, build key, signed bytes
ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")
WorkT = TypeVar("WorkT")


@dataclass(frozen=True, slots=True)
class Registration:
    pass_type_id: str
    serial_number: str
    # The token the device presented; compared with the pass's own in constant time on
    # SQLite, and as SHA-256 digests on PostgreSQL (equal digests say nothing of a prefix).
    presented_token: str
    device_library_id: str
    push_token: str
    now_ms: int
    max_registrations: int
    transport: str
    push_service_url: str


class _GroupCommit(Generic[ItemT, ResultT]):
    """Writes of one turn of the event loop made in one transaction: each caller waits for
    the commit of the batch it joined and gets its own item's result. A commit is the
    dearest part of a small write (on SQLite, a WAL append of every page it touched;
    on PostgreSQL, a WAL flush), so concurrent writers share it.

    `write` gets the batch in arrival order and returns one result per item, in the same
    order; an item's result may be the exception that item alone raised."""

    def __init__(self, write: Callable[[list[ItemT]], Awaitable[list[ResultT | Exception]]]):
        self._write = write
        self._pending: list[ItemT] = []
        self._committed: asyncio.Future[list[ResultT | Exception]] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, item: ItemT) -> ResultT:
        index = len(self._pending)
        self._pending.append(item)
        committed = self._committed
        if committed is None:
            loop = asyncio.get_running_loop()
            committed = self._committed = loop.create_future()
            task = loop.create_task(self._flush(committed))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        result = (await asyncio.shield(committed))[index]
        if isinstance(result, Exception):
            raise result
        return result

    async def _flush(self, committed: asyncio.Future[list[ResultT | Exception]]) -> None:
        await asyncio.sleep(0)  # the writers of this turn of the loop join in
        batch, self._pending, self._committed = self._pending, [], None
        try:
            results = await self._write(batch)
        except asyncio.CancelledError:
            committed.cancel()
            raise
        except Exception as error:
            committed.set_exception(error)
            committed.exception()  # read here: every caller may have gone meanwhile
        else:
            committed.set_result(results)


async def _together_or_alone(
    batch: list[Registration],
    write: Callable[[list[Registration]], Awaitable[list[Registered]]],
    failure: type[Exception],
) -> list[Registered | Exception]:
    """The batch in one write. If that fails on a database error (a constraint, a
    deadlock), each registration is written on its own, so one cannot take the others
    with it. A lost connection is not such an error: it fails them all, as it would
    have failed each."""
    try:
        together: list[Registered | Exception] = []
        together += await write(batch)
        return together
    except failure:
        if len(batch) == 1:
            raise
    results: list[Registered | Exception] = []
    for registration in batch:
        try:
            results += await write([registration])
        except failure as error:
            results.append(error)
    return results


def _outcome(pass_id: int | None, retired: bool, created: bool | None) -> Registered:
    if pass_id is None:
        return Registered.UNAUTHORIZED
    if retired:
        return Registered.RETIRED
    if created is None:
        return Registered.PASS_FULL
    return Registered.CREATED if created else Registered.UPDATED


def _without_repeats(batch: list[Registration]) -> list[list[int]]:
    """The batch's indexes in rounds, each holding a (device, pass) pair at most once;
    a pair's repeats go in later rounds, in arrival order."""
    rounds: list[list[int]] = []
    seen: dict[tuple[str, str, str], int] = {}
    for index, registration in enumerate(batch):
        key = (
            registration.device_library_id,
            registration.pass_type_id,
            registration.serial_number,
        )
        round_ = seen.get(key, -1) + 1
        seen[key] = round_
        if round_ == len(rounds):
            rounds.append([])
        rounds[round_].append(index)
    return rounds


def _in_pass_order(rows: list[StoredFile]) -> list[StoredFile]:
    """A batch of files is written in pass id order, so two processes never lock rows in
    opposite orders (PostgreSQL would abort one as a deadlock)."""
    return sorted(rows, key=lambda row: (row[0], row[1]))


class PostgresHotPath:
    def __init__(self, dsn: str, *, pool_size: int, connect_timeout: float = 10.0) -> None:
        self._dsn = dsn
        self._pool_size = pool_size
        self._connect_timeout = connect_timeout
        self._pool = self._new_pool()
        self._files: _GroupCommit[StoredFile, None] = _GroupCommit(self._store_files)
        self._registrations: _GroupCommit[Registration, Registered] = _GroupCommit(
            self._register_batch
        )

    def _new_pool(self) -> StatementPool:
        # Generic plans only: PostgreSQL otherwise re-plans the registration batch at every
        # call (0.4-0.9 ms of planning against 0.1-0.5 ms of work, docs/benchmarks.md). The
        # plan tests check every statement here with its generic plan (ADR 0013).
        settings = {"plan_cache_mode": "force_generic_plan"}

        async def connect() -> Any:
            return await asyncpg.connect(
                self._dsn, timeout=self._connect_timeout, server_settings=settings
            )

        return StatementPool(connect, self._pool_size)

    async def pass_for_device(self, pass_type_id: str, serial_number: str) -> PassAuth | None:
        row = await self._pool.fetchrow(_pg(_SELECT_DEVICE_AUTH, 2), pass_type_id, serial_number)
        return None if row is None else PassAuth(row[0], row[1], row[2], row[3], bool(row[4]))

    async def serials_updated_since(
        self, device_library_id: str, pass_type_id: str, since: int
    ) -> list[tuple[str, int]]:
        rows = await self._pool.fetch(_PG_SERIALS_SINCE, device_library_id, pass_type_id, since)
        return [(row[0], row[1]) for row in rows]

    async def register(self, registration: Registration) -> Registered:
        return await self._registrations.submit(registration)

    async def _register_batch(self, batch: list[Registration]) -> list[Registered | Exception]:
        return await _together_or_alone(batch, self._register_rows, asyncpg.PostgresError)

    async def _register_rows(self, batch: list[Registration]) -> list[Registered]:
        results: list[Registered] = [Registered.UNAUTHORIZED] * len(batch)
        # A device registering for one pass twice in a batch: the repeat goes in the next
        # statement (one statement cannot upsert a row twice).
        for indexes in _without_repeats(batch):
            rows = [batch[i] for i in indexes]
            found = await self._pool.fetch(
                _PG_REGISTER_BATCH,
                [r.device_library_id for r in rows],
                [r.pass_type_id for r in rows],
                [r.serial_number for r in rows],
                [hashlib.sha256(r.presented_token.encode()).digest() for r in rows],
                [r.push_token for r in rows],
                [r.now_ms for r in rows],
                [r.transport for r in rows],
                [r.push_service_url for r in rows],
                [shorten_device_id(r.device_library_id) for r in rows],
                [r.max_registrations for r in rows],
            )
            for n, pass_id, retired, created in found:
                results[indexes[n - 1]] = _outcome(pass_id, retired, created)
        return results

    async def build_inputs(self, pass_id: int, build_key: str) -> BuildInputs | None:
        row = await self._pool.fetchrow(_pg(_BUILD_INPUTS, 2), pass_id, build_key)
        return None if row is None else _build_inputs(row)

    async def store_pkpass(self, pass_id: int, version: int, build_key: str, data: bytes) -> None:
        await self._files.submit((pass_id, version, build_key, data))

    async def _store_files(self, rows: list[StoredFile]) -> list[Exception | None]:
        # One transaction (asyncpg wraps executemany in one when none is open).
        await self._pool.executemany(_pg(_STORE_PKPASS, 4), _in_pass_order(rows))
        return [None] * len(rows)

    async def close(self) -> None:
        pool, self._pool = self._pool, self._new_pool()
        await pool.close()


class SqliteHotPath:
    def __init__(self, path: str, write_lock: asyncio.Lock) -> None:
        self._path = path
        self._write_lock = write_lock
        # One connection reads and writes. SQLite drops a connection's page cache whenever
        # another connection has committed, so a reader beside the writer re-read its
        # pages after every registration (a pass lookup cost 13 us instead of 4-5). No
        # read can see a write half done: a write transaction never spans an await.
        self._connection: sqlite3.Connection | None = None
        self._files: _GroupCommit[StoredFile, None] = _GroupCommit(self._store_files)
        self._registrations: _GroupCommit[Registration, Registered] = _GroupCommit(
            self._register_batch
        )

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        connection.execute("PRAGMA busy_timeout=5000")
        connection.execute("PRAGMA foreign_keys=ON")
        connection.execute("PRAGMA synchronous=NORMAL")
        return connection

    def _db(self) -> sqlite3.Connection:
        if self._connection is None:
            self._connection = self._connect()
        return self._connection

    async def pass_for_device(self, pass_type_id: str, serial_number: str) -> PassAuth | None:
        row = self._db().execute(_SQLITE_DEVICE_AUTH, (pass_type_id, serial_number)).fetchone()
        return None if row is None else PassAuth(row[0], row[1], row[2], row[3], bool(row[4]))

    async def serials_updated_since(
        self, device_library_id: str, pass_type_id: str, since: int
    ) -> list[tuple[str, int]]:
        cursor = self._db().execute(_SQLITE_SERIALS_SINCE, (device_library_id, pass_type_id, since))
        return [(serial, version) for serial, version in cursor.fetchall()]

    async def register(self, registration: Registration) -> Registered:
        return await self._registrations.submit(registration)

    async def _register_batch(self, batch: list[Registration]) -> list[Registered | Exception]:
        return await _together_or_alone(batch, self._register_rows, sqlite3.Error)

    async def _register_rows(self, batch: list[Registration]) -> list[Registered]:
        async with self._write_lock:
            return self._write(partial(_sqlite_register_all, batch=batch))

    async def build_inputs(self, pass_id: int, build_key: str) -> BuildInputs | None:
        row = self._db().execute(_sqlite(_BUILD_INPUTS, 2), (pass_id, build_key)).fetchone()
        return None if row is None else _build_inputs(row)

    async def store_pkpass(self, pass_id: int, version: int, build_key: str, data: bytes) -> None:
        await self._files.submit((pass_id, version, build_key, data))

    async def _store_files(self, rows: list[StoredFile]) -> list[Exception | None]:
        async with self._write_lock:
            self._write(lambda db: db.executemany(_sqlite(_STORE_PKPASS, 4), _in_pass_order(rows)))
        return [None] * len(rows)

    def _write(self, work: Callable[[sqlite3.Connection], WorkT]) -> WorkT:
        """`work` in one write transaction; the caller holds the write lock."""
        writer = self._db()
        writer.execute("BEGIN IMMEDIATE")
        try:
            result = work(writer)
        except BaseException:
            writer.execute("ROLLBACK")
            raise
        writer.execute("COMMIT")
        return result

    async def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _sqlite_register_all(db: sqlite3.Connection, batch: list[Registration]) -> list[Registered]:
    # Whether some webhook takes pass.installed, asked once for the batch.
    installed_wanted = bool(db.execute(SQLITE_INSTALLED_WANTED).fetchone()[0])
    return [_sqlite_register_one(db, r, installed_wanted=installed_wanted) for r in batch]


def _sqlite_register_one(
    db: sqlite3.Connection, registration: Registration, *, installed_wanted: bool
) -> Registered:
    found = db.execute(
        _SQLITE_DEVICE_AUTH, (registration.pass_type_id, registration.serial_number)
    ).fetchone()
    if not token_matches(registration.presented_token, found[1] if found else None):
        return Registered.UNAUTHORIZED
    if found[4]:
        return Registered.RETIRED
    pass_id, device_library_id = found[0], registration.device_library_id
    cap = registration.max_registrations
    if cap and _sqlite_full(db, pass_id, device_library_id, cap):
        return Registered.PASS_FULL
    target = (registration.push_token, registration.transport, registration.push_service_url)
    if not _sqlite_register(db, pass_id, device_library_id, target, registration.now_ms):
        return Registered.UPDATED
    if installed_wanted:
        db.execute(
            SQLITE_INSTALLED, (shorten_device_id(device_library_id), registration.now_ms, pass_id)
        )
    return Registered.CREATED


def _sqlite_full(db: sqlite3.Connection, pass_id: int, device_library_id: str, cap: int) -> bool:
    """A new device for a pass that holds `cap` registrations."""
    full: int = db.execute(_SQLITE_FULL, (device_library_id, pass_id, cap)).fetchone()[0]
    return bool(full)


def _sqlite_register(
    db: sqlite3.Connection,
    pass_id: int,
    device_library_id: str,
    target: tuple[str, str, str],
    now_ms: int,
) -> bool:
    """`target`: the push token, transport and push service URL."""
    push_token, transport, push_service_url = target
    found = db.execute(
        "INSERT INTO devices (device_library_id, created_at) VALUES (?, ?) "
        "ON CONFLICT (device_library_id) DO NOTHING RETURNING id",
        (device_library_id, now_ms // 1000),
    ).fetchall()
    if not found:
        found = db.execute(
            "SELECT id FROM devices WHERE device_library_id = ?", (device_library_id,)
        ).fetchall()
    device_id = found[0][0]
    inserted = db.execute(
        "INSERT INTO registrations (device_id, pass_id, push_token, registered_at_ms, "
        "transport, push_service_url) VALUES (?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (device_id, pass_id) DO NOTHING RETURNING device_id",
        (device_id, pass_id, push_token, now_ms, transport, push_service_url),
    ).fetchall()
    if inserted:
        db.execute(_SQLITE_COUNT_INSTALL, (_hour_of(now_ms), pass_id))
        db.execute(_SQLITE_FIRST_INSTALL, (pass_id, now_ms))
        return True
    db.execute(
        "UPDATE registrations SET push_token = ?, registered_at_ms = ?, transport = ?, "
        "push_service_url = ? WHERE device_id = ? AND pass_id = ?",
        (push_token, now_ms, transport, push_service_url, device_id, pass_id),
    )
    return False


def open_hot_path(
    url: str, *, pool_size: int, sqlite_write_lock: asyncio.Lock, connect_timeout: float = 10.0
) -> HotPath:
    """The hot path for a database URL (any of the forms Database accepts)."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1))
    if parsed.drivername.startswith("sqlite"):
        return SqliteHotPath(parsed.database or ":memory:", sqlite_write_lock)
    dsn = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    return PostgresHotPath(dsn, pool_size=pool_size, connect_timeout=connect_timeout)
