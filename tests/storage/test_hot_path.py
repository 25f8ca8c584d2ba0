"""The device hot path's statements have one plan, whatever the planner's statistics say.

Loaded the way a first deploy, a restore or a large import leaves a database: thousands of
passes and registrations and no statistics yet (on PostgreSQL, autovacuum is off for the
tables so it cannot analyze them behind the test's back).
"""

# The loading SQL is built from this file's constants, never from input.
# ruff: noqa: S608

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from databases import PG_ENV, loaded_database
from passhouse.storage import hot_path, sign_ahead
from passhouse.storage.database import Database
from tcp_proxy import TcpProxy

PASSES = 5_000
HALF = PASSES // 2
PT = "pass.test.plan"
OTHER_PT = "pass.test.plan.other"

# Device g holds pass g and pass g + n/2; pass g has version g. Every 10th pass is of
# another pass type, so the pass type filter matters too.
_LOAD = [
    "INSERT INTO pass_types (pass_type_id, team_id, certificate_pem, private_key_encrypted,"
    " not_after, last_version, created_at) VALUES"
    f" ('{PT}', 'T', '', {{blob}}, 0, {PASSES}, 0), ('{OTHER_PT}', 'T', '', {{blob}}, 0, 0, 0)",
    "INSERT INTO templates (id, name, pass_type_id, pass_json, created_at, updated_at)"
    f" VALUES (1, 't', '{PT}', '{{{{}}}}', 0, 0)",
    "{rows} INSERT INTO passes (id, pass_type_id, serial_number, template_id,"
    " authentication_token, share_id, data, version, modified_at, created_at)"
    f" SELECT g, CASE WHEN g % 10 = 0 THEN '{OTHER_PT}' ELSE '{PT}' END, 's' || g, 1,"
    " 'token', 'share' || g, '{{}}', g, 0, 0 FROM {source}",
    "{rows} INSERT INTO devices (id, device_library_id, created_at)"
    " SELECT g, 'device-' || g, 0 FROM {source}",
    "{rows} INSERT INTO registrations (device_id, pass_id, push_token, registered_at_ms)"
    " SELECT g, g, 'push-' || g, 0 FROM {source}"
    f" UNION ALL SELECT g, ((g - 1 + {HALF}) % {PASSES}) + 1, 'push-' || g, 0 FROM {{source}}",
    # A push queued for every device (job g for device g), and every third pass signed.
    "{rows} INSERT INTO push_jobs (id, push_token, pass_type_id, due_at_ms, created_at_ms)"
    f" SELECT g, 'push-' || g, '{PT}', 0, 0 FROM {{source}}",
    "{rows} INSERT INTO pkpass_cache (pass_id, version, build_key, data)"
    " SELECT g, g, '', {blob} FROM {source} WHERE g % 3 = 0",
]


def _load_statements(dialect: str) -> list[str]:
    if dialect == "postgresql":
        values = {"rows": "", "source": f"generate_series(1, {PASSES}) AS t(g)", "blob": "''"}
    else:
        values = {
            "rows": f"WITH RECURSIVE t(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM t WHERE g < "
            f"{PASSES})",
            "source": "t",
            "blob": "x''",
        }
    return [statement.format(**values) for statement in _LOAD]


@pytest.fixture(scope="module")
def unanalyzed_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database of its own, freshly loaded and never analyzed."""
    with loaded_database(
        tmp_path_factory.mktemp("plan"),
        "passhouse_plan",
        _load_statements,
        no_autovacuum=("passes", "devices", "registrations", "push_jobs", "pkpass_cache"),
    ) as url:
        yield url


def _expected(device: int, pass_type_id: str, since: int) -> set[tuple[str, int]]:
    if device > PASSES:
        return set()
    held = {device, ((device - 1 + HALF) % PASSES) + 1}
    of_type = {p for p in held if (p % 10 == 0) == (pass_type_id == OTHER_PT)}
    return {(f"s{p}", p) for p in of_type if p > since}


@pytest.mark.parametrize(
    ("device", "pass_type_id", "since"),
    [(7, PT, 0), (7, PT, 7), (7, PT, HALF + 7), (10, OTHER_PT, 0), (10, PT, 0), (99_999, PT, 0)],
)
async def test_changed_serials_are_the_devices_passes_above_the_tag(
    unanalyzed_url: str, device: int, pass_type_id: str, since: int
) -> None:
    hot = hot_path.open_hot_path(unanalyzed_url, pool_size=1, sqlite_write_lock=asyncio.Lock())
    try:
        found = await hot.serials_updated_since(f"device-{device}", pass_type_id, since)
    finally:
        await hot.close()

    assert len(found) == len(set(found))
    assert set(found) == _expected(device, pass_type_id, since)


def _unsigned_in(newest: int, oldest: int, shares: int, share: int) -> list[tuple[int, int]]:
    """What sign-ahead must find for the jobs newest..oldest, by the load's rules."""
    found: list[tuple[int, int]] = []
    for job in range(newest, oldest - 1, -1):
        for pass_id in (job, ((job - 1 + HALF) % PASSES) + 1):
            wanted = pass_id % 10 != 0 and pass_id % 3 != 0 and pass_id % shares == share
            if wanted and (pass_id, pass_id) not in found:
                found.append((pass_id, pass_id))
    return found


@pytest.mark.parametrize(("before", "window"), [(None, 40), (HALF + 3, 40), (30, 40)])
async def test_sign_ahead_finds_the_unsigned_passes_of_a_window_of_the_queue(
    unanalyzed_url: str, before: int | None, window: int
) -> None:
    database = Database(unanalyzed_url)
    try:
        async with database.reader() as conn:
            found = await sign_ahead.unsigned_pending(
                conn, before_job_id=before, share=1, shares=2, window=window
            )
    finally:
        await database.dispose()

    newest = PASSES if before is None else before - 1
    oldest = max(newest - window + 1, 1)
    assert found.unsigned == _unsigned_in(newest, oldest, 2, 1)
    assert found.next_before == (oldest if newest - oldest + 1 == window else None)


# --- PostgreSQL: EXPLAIN ----------------------------------------------------------------


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Plan nodes in the order they start reading: InitPlans first, then outer before inner."""
    children = plan.get("Plans", [])
    first = [c for c in children if c.get("Parent Relationship") == "InitPlan"]
    yield plan
    for child in first + [c for c in children if c not in first]:
        yield from _nodes(child)


async def _pg_plans(url: str, statement: str, *args: str | int) -> dict[str, dict[str, Any]]:
    """The plan of a prepared statement, custom (values known) and generic (as reused)."""
    import asyncpg  # type: ignore[import-untyped]

    dsn = sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn)
    plans: dict[str, dict[str, Any]] = {}
    try:
        never_analyzed = await connection.fetchval(
            "SELECT bool_and(reltuples < 0) FROM pg_class"
            " WHERE relname IN ('passes', 'devices', 'registrations')"
        )
        assert never_analyzed, "the test database has statistics; the test proves nothing"
        # EXECUTE takes no bind parameters; these values are the test's own constants.
        literals = ", ".join(f"'{arg}'" if isinstance(arg, str) else str(arg) for arg in args)
        for mode in ("force_custom_plan", "force_generic_plan"):
            await connection.execute(f"SET plan_cache_mode = {mode}")
            await connection.execute(f"PREPARE hot AS {statement}")
            explained = await connection.fetchval(f"EXPLAIN (FORMAT JSON) EXECUTE hot({literals})")
            await connection.execute("DEALLOCATE hot")
            plans[mode] = json.loads(explained)[0]["Plan"]
    finally:
        await connection.close()
    return plans


def _scans(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [node for node in _nodes(plan) if "Relation Name" in node]


def _requires(url: str, dialect: str) -> None:
    if not url.startswith(dialect):
        pytest.skip(f"a {dialect} plan (set {PG_ENV} for PostgreSQL)")


async def test_postgres_changed_serials_start_from_the_device_without_statistics(
    unanalyzed_url: str,
) -> None:
    _requires(unanalyzed_url, "postgresql")

    plans = await _pg_plans(unanalyzed_url, hot_path._PG_SERIALS_SINCE, "device-7", PT, 7)

    for mode, plan in plans.items():
        scans = _scans(plan)
        first = scans[0]
        assert (first["Relation Name"], first.get("Index Name")) == (
            "devices",
            "uq_devices_device_library_id",
        ), f"{mode}: starts from {first['Relation Name']}"
        by_table = {scan["Relation Name"]: scan for scan in scans}
        registrations = by_table["registrations"]
        index_scan = registrations if "Index Name" in registrations else registrations["Plans"][0]
        assert index_scan["Index Name"] == "pk_registrations", mode
        assert "device_id =" in index_scan["Index Cond"], mode
        passes = [scan for scan in scans if scan["Relation Name"] == "passes"]
        assert [(scan["Node Type"], scan["Index Name"]) for scan in passes] == [
            ("Index Scan", "pk_passes")
        ], mode
        assert passes[0]["Index Cond"] == "(id = r.pass_id)", mode


async def test_postgres_pass_lookup_uses_the_serial_index_without_statistics(
    unanalyzed_url: str,
) -> None:
    _requires(unanalyzed_url, "postgresql")

    plans = await _pg_plans(unanalyzed_url, hot_path._pg(hot_path._SELECT_DEVICE_AUTH, 2), PT, "s7")

    for mode, plan in plans.items():
        assert (plan["Node Type"], plan["Index Name"]) == (
            "Index Scan",
            "uq_passes_type_serial",
        ), mode
        assert "serial_number" in plan["Index Cond"], mode


async def test_postgres_registration_batch_reads_by_index_without_statistics(
    unanalyzed_url: str,
) -> None:
    """A batch: a renewal (device-7 holds pass 7), a new device, and a device new to a pass."""
    _requires(unanalyzed_url, "postgresql")
    digest = "\\x" + hashlib.sha256(b"token").hexdigest()
    batch = {
        "devices": "{device-7,device-new,device-8}",
        "pass types": f"{{{PT},{PT},{PT}}}",
        "serials": "{s7,s7,s9}",
        "token digests": f'{{"{digest}","{digest}","{digest}"}}',
        "tokens": "{a,b,c}",
        "times": "{0,0,0}",
        "transports": "{apns,apns,apns}",
        "urls": '{"","",""}',
        "shortened": "{d7,dn,d8}",
        "caps": "{10000,10000,0}",
    }

    plans = await _pg_plans(unanalyzed_url, hot_path._PG_REGISTER_BATCH, *batch.values())

    for mode, plan in plans.items():
        read = [
            (scan["Relation Name"], scan["Node Type"])
            for scan in _scans(plan)
            if scan["Relation Name"] in ("passes", "devices", "registrations")
            and scan["Node Type"] != "ModifyTable"
        ]
        assert read, mode
        # A bitmap heap scan is driven by its index (the pass's registrations, to the cap).
        indexed = ("Index Scan", "Index Only Scan", "Bitmap Heap Scan")
        assert all(node in indexed for _, node in read), (mode, read)


async def test_postgres_device_requests_send_no_session_reset(unanalyzed_url: str) -> None:
    """asyncpg resets a connection as it goes back to its pool (`RESET ALL; ...`, a second
    round trip per request) unless told otherwise: the hot path tells it."""
    _requires(unanalyzed_url, "postgresql")
    server = sa.make_url(unanalyzed_url)
    proxy = TcpProxy(server.host or "127.0.0.1", server.port or 5432)
    await proxy.start()
    hot = hot_path.open_hot_path(
        proxy.url(unanalyzed_url), pool_size=1, sqlite_write_lock=asyncio.Lock()
    )
    try:
        await hot.pass_for_device(PT, "s7")  # connects
        proxy.sent.clear()
        for _ in range(3):
            assert await hot.pass_for_device(PT, "s7") is not None
            assert await hot.serials_updated_since("device-7", PT, 0)
    finally:
        await hot.close()
        await proxy.stop()

    assert proxy.sent.count(b"device-7") == 3
    assert b"RESET ALL" not in proxy.sent
    assert b"UNLISTEN" not in proxy.sent


# --- SQLite: EXPLAIN QUERY PLAN -----------------------------------------------------------


def _copy_with_statistics(url: str, path: Path, statistics: str) -> Path:
    """A copy of the loaded database with statistics that make another plan look cheaper:
    "misleading" says a device id matches every device and a pass type one pass; "stale"
    says every table holds one row, as after an ANALYZE of the empty database."""
    with sqlite3.connect(url.removeprefix("sqlite:///")) as source:
        source.execute("VACUUM INTO ?", (str(path),))
    if statistics == "none":
        return path
    with sqlite3.connect(path) as db:
        db.execute("ANALYZE")
        if statistics == "stale":
            db.execute("UPDATE sqlite_stat1 SET stat = '1 1 1'")
            return path
        stats = {
            "sqlite_autoindex_devices_1": f"{PASSES} {PASSES}",
            "sqlite_autoindex_passes_1": f"{PASSES} 1 1",
            "sqlite_autoindex_registrations_1": f"{2 * PASSES} {2 * PASSES} 1",
        }
        for index, stat in stats.items():
            db.execute("UPDATE sqlite_stat1 SET stat = ? WHERE idx = ?", (stat, index))
    return path


@pytest.mark.parametrize("statistics", ["none", "misleading", "stale"])
def test_sqlite_changed_serials_start_from_the_device(
    unanalyzed_url: str, tmp_path: Path, statistics: str
) -> None:
    _requires(unanalyzed_url, "sqlite")
    path = _copy_with_statistics(unanalyzed_url, tmp_path / "copy.db", statistics)

    with sqlite3.connect(path) as db:
        plan = [
            row[3]
            for row in db.execute(
                "EXPLAIN QUERY PLAN " + hot_path._SQLITE_SERIALS_SINCE, ("device-7", PT, 7)
            )
        ]
        found = db.execute(hot_path._SQLITE_SERIALS_SINCE, ("device-7", PT, 7)).fetchall()

    searches = [step for step in plan if step.startswith(("SEARCH", "SCAN"))]
    assert searches[0] == (
        "SEARCH r USING COVERING INDEX sqlite_autoindex_registrations_1 (device_id=?)"
    ), plan
    assert "SEARCH devices USING COVERING INDEX sqlite_autoindex_devices_1" in searches[1], plan
    assert set(searches[2:]) == {"SEARCH passes USING INTEGER PRIMARY KEY (rowid=?)"}, plan
    assert set(found) == _expected(7, PT, 7)


@pytest.mark.parametrize("statistics", ["none", "misleading", "stale"])
def test_sqlite_pass_lookup_uses_the_serial_index(
    unanalyzed_url: str, tmp_path: Path, statistics: str
) -> None:
    _requires(unanalyzed_url, "sqlite")
    path = _copy_with_statistics(unanalyzed_url, tmp_path / "copy.db", statistics)

    with sqlite3.connect(path) as db:
        plan = [
            row[3]
            for row in db.execute(
                "EXPLAIN QUERY PLAN " + hot_path._sqlite(hot_path._SELECT_DEVICE_AUTH, 2),
                (PT, "s7"),
            )
        ]

    assert plan == [
        "SEARCH passes USING INDEX sqlite_autoindex_passes_1 (pass_type_id=? AND serial_number=?)"
    ]


# --- Sign-ahead: a window of the queue, then lookups by index --------------------------


async def test_postgres_sign_ahead_reads_a_window_of_the_queue_then_by_index(
    unanalyzed_url: str,
) -> None:
    _requires(unanalyzed_url, "postgresql")
    statement = sign_ahead._PG_UNSIGNED
    for number, name in enumerate(("before", "window", "shares", "share"), start=1):
        statement = statement.replace(f":{name}", f"${number}")

    plans = await _pg_plans(unanalyzed_url, statement, 2**63 - 1, 500, 2, 1)

    for mode, plan in plans.items():
        window = next(node for node in _nodes(plan) if node.get("Subplan Name") == "CTE w")
        assert window["Node Type"] == "Limit", mode
        assert {scan["Relation Name"] for scan in _scans(window)} == {"push_jobs"}, mode
        lookups = {
            (scan["Relation Name"], scan.get("Index Name") or scan["Plans"][0]["Index Name"])
            for scan in _scans(plan)
            if scan["Relation Name"] != "push_jobs"
        }
        assert lookups == {
            ("registrations", "ix_registrations_push_token"),
            ("passes", "pk_passes"),
            ("pkpass_cache", "pk_pkpass_cache"),
        }, mode


# With statistics saying the queue holds one row ("stale"), SQLite reads the window by a
# full scan of push_jobs, as it would any table it believes that small; passhouse never
# writes SQLite statistics.
@pytest.mark.parametrize("statistics", ["none", "misleading"])
def test_sqlite_sign_ahead_reads_a_window_of_the_queue_then_by_index(
    unanalyzed_url: str, tmp_path: Path, statistics: str
) -> None:
    _requires(unanalyzed_url, "sqlite")
    path = _copy_with_statistics(unanalyzed_url, tmp_path / "copy.db", statistics)
    values = {"before": 2**63 - 1, "window": 500, "shares": 2, "share": 1}

    with sqlite3.connect(path) as db:
        plan = [
            row[3]
            for row in db.execute("EXPLAIN QUERY PLAN " + sign_ahead._SQLITE_UNSIGNED, values)
        ]

    steps = [step for step in plan if step.startswith(("SEARCH", "SCAN"))]
    assert steps == [
        "SEARCH push_jobs USING INTEGER PRIMARY KEY (rowid<?)",
        "SCAN w",
        "SEARCH r USING INDEX ix_registrations_push_token (push_token=?) LEFT-JOIN",
        "SEARCH p USING INTEGER PRIMARY KEY (rowid=?)",
        "SEARCH c USING INTEGER PRIMARY KEY (rowid=?)",
    ], plan
