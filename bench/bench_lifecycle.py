"""The lifecycle loop's every-second lookups at 1,000,000 passes, fresh and unanalyzed.

    .venv/bin/python bench/bench_lifecycle.py [--db sqlite|postgresql|both] \
        [--passes 1000000] [--small 10000] [--runs 200]

Each worker asks these once a second (due scheduled change, next one, expired passes not
voided, next expiry, passes with unknown expiry, passes voided before the retention
cutoff), so their cost must not grow with the number of passes. For each database, two
fresh databases are filled by set-based SQL right after the migrations (no ANALYZE:
what a server has after an upgrade or a bulk import): `--small` and `--passes` passes,
half of them with an expiry in the future, 10 % expired, 10 % voided long ago, 10 %
voided recently, and 10,000 pending scheduled changes. It prints each lookup's median and
p99 in milliseconds on both, and the ratio. PASSHOUSE_BENCH_DATABASE_URL (default
postgresql://postgres@127.0.0.1:5432/test) names the PostgreSQL server; a database
`bench_lifecycle_<random>` is made there and dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from passhouse.storage import migrate, pass_lifecycle, scheduled_changes
from passhouse.storage.database import Database

NOW = 1_800_000_000
DAY = 86400


def lookups() -> dict[str, sa.Select[Any]]:
    return {
        "due scheduled change": scheduled_changes.due_query(NOW * 1000),
        "next scheduled change": scheduled_changes.next_due_query(),
        "expired, not voided": pass_lifecycle.expired_query(NOW, 200),
        "next expiry": pass_lifecycle.next_expiry_query(),
        "expiry unknown": pass_lifecycle.unknown_expiry_query(200),
        "voided before the cutoff": pass_lifecycle.voided_before_query(NOW - 30 * DAY, 200),
    }


def _series(dialect: str, count: str) -> str:
    if dialect == "postgresql":
        return f"SELECT g FROM generate_series(1, {count}) AS g"  # noqa: S608 - our constants
    return (
        f"WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < {count}) "  # noqa: S608
        "SELECT g FROM s"
    )


async def fill(database: Database, count: int) -> None:
    await migrate.upgrade(database)
    dialect = database.dialect
    concat = "||"
    async with database.transaction() as conn:
        await conn.execute(
            sa.text(
                "INSERT INTO pass_types (pass_type_id, team_id, certificate_pem, "
                "private_key_encrypted, not_after, created_at) "
                "VALUES ('pass.bench.lifecycle', 'T', '', :key, 0, 0)"
            ),
            {"key": b"x"},
        )
        await conn.execute(
            sa.text(
                "INSERT INTO templates (name, pass_type_id, pass_json, created_at, updated_at) "
                "VALUES ('bench', 'pass.bench.lifecycle', '{}', 0, 0)"
            )
        )
        # g % 10: 0-4 expire in the future, 5 expired, 6 voided long ago, 7 voided recently,
        # 8-9 never expire.
        voided = "(g % 10 IN (6, 7))"
        await conn.execute(
            sa.text(
                "INSERT INTO passes (pass_type_id, serial_number, template_id, "  # noqa: S608
                "authentication_token, share_id, data, voided, version, modified_at, "
                "created_at, expires_at, voided_at) "
                f"SELECT 'pass.bench.lifecycle', 's' {concat} g, 1, 't' {concat} g, "
                f"'h' {concat} g, '{{}}', {voided}, 1, 0, 0, "
                f"CASE WHEN g % 10 < 5 THEN {NOW} + g WHEN g % 10 = 5 THEN {NOW} - g "
                "ELSE NULL END, "
                f"CASE WHEN g % 10 = 6 THEN {NOW - 90 * DAY} + g % 1000 "
                f"WHEN g % 10 = 7 THEN {NOW} - g % 1000 ELSE NULL END "
                f"FROM ({_series(dialect, str(count))}) AS series"
            )
        )
        await conn.execute(
            sa.text(
                "INSERT INTO scheduled_changes (status, pass_type_id, serial_number, void, "  # noqa: S608
                "due_at_ms, created_at_ms) "
                f"SELECT 'pending', 'pass.bench.lifecycle', 's' {concat} g, {voided}, "
                f"(CAST({NOW} AS BIGINT) + g) * 1000, 0 "
                f"FROM ({_series(dialect, '10000')}) AS series"
            )
        )


async def measure(database: Database, runs: int) -> dict[str, list[float]]:
    timings: dict[str, list[float]] = {name: [] for name in lookups()}
    async with database.reader() as conn:
        for _ in range(runs):
            for name, query in lookups().items():
                started = time.perf_counter()
                (await conn.execute(query)).all()
                timings[name].append((time.perf_counter() - started) * 1000)
    return timings


@contextlib.asynccontextmanager
async def fresh(dialect: str) -> AsyncIterator[Database]:
    if dialect == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            database = Database(f"sqlite:///{Path(folder) / 'bench.db'}")
            try:
                yield database
            finally:
                await database.dispose()
        return
    server = os.environ.get(
        "PASSHOUSE_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
    )
    name = f"bench_lifecycle_{secrets.token_hex(4)}"
    admin = Database(server)
    async with admin.engine.connect() as conn:
        await (await conn.execution_options(isolation_level="AUTOCOMMIT")).execute(
            sa.text(f"CREATE DATABASE {name}")
        )
    database = Database(str(sa.make_url(server).set(database=name)))
    try:
        yield database
    finally:
        await database.dispose()
        async with admin.engine.connect() as conn:
            await (await conn.execution_options(isolation_level="AUTOCOMMIT")).execute(
                sa.text(f"DROP DATABASE {name}")
            )
        await admin.dispose()


def _p99(values: list[float]) -> float:
    return sorted(values)[max(0, int(len(values) * 0.99) - 1)]


async def run(dialect: str, passes: int, small: int, runs: int) -> None:
    results = {}
    for count in (small, passes):
        async with fresh(dialect) as database:
            started = time.perf_counter()
            await fill(database, count)
            filled = time.perf_counter() - started
            results[count] = await measure(database, runs)
        print(f"{dialect}: {count:,} passes filled in {filled:.1f} s (not analyzed)")
    print(f"{'lookup':<26} {'small ms (p50/p99)':>20} {'large ms (p50/p99)':>20} {'ratio':>6}")
    for name in lookups():
        a, b = results[small][name], results[passes][name]
        ratio = statistics.median(b) / statistics.median(a)
        print(
            f"{name:<26} {statistics.median(a):>9.3f} / {_p99(a):<8.3f}"
            f" {statistics.median(b):>9.3f} / {_p99(b):<8.3f} {ratio:>6.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--passes", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    for dialect in ("sqlite", "postgresql") if args.db == "both" else (args.db,):
        asyncio.run(run(dialect, args.passes, args.small, args.runs))


if __name__ == "__main__":
    main()
