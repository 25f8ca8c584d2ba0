"""What the version history adds to a template change of 100,000 passes, on PostgreSQL.

    .venv/bin/python bench/bench_history.py [--passes 100000] [--rounds 3]

In one run, on a fresh database (PASSHOUSE_BENCH_DATABASE_URL names the server, default
postgresql://postgres@127.0.0.1:5432/test; a database `bench_history_<random>` is made
there and dropped at the end) holding --passes passes of one template (inserted with
set-based SQL, then ANALYZE), each round is three transactions, committed, in turn:

- bump: the template change's UPDATE alone, as storage.passes.bump_template_passes wrote
  it before the history (version and Last-Modified);
- history: bump_template_passes as it is now: the UPDATE (with history_seq), one INSERT
  ... SELECT of a history row per pass, and the prune (which finds nothing to drop while
  the passes are under the limit);
- at the limit: the same with HISTORY_LIMIT lowered to 1 for the round, so that, as for a
  pass already holding 100 versions, every pass also drops its oldest row.

For each it prints the wall time and the CPU time of the PostgreSQL backend that ran it
(from /proc, so the server must run on this machine), the median over the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import secrets
import statistics
import time
from collections.abc import Awaitable, Callable

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

import dataset  # type: ignore[import-not-found]  # the sibling module, first on sys.path
from passhouse import devmode, issuing
from passhouse.pkpass.devcerts import make_dev_credentials
from passhouse.storage import pass_types, pass_versions, passes, templates
from passhouse.storage.database import Database
from passhouse.storage.migrate import upgrade
from passhouse.storage.pass_versions import Change
from passhouse.storage.tables import pass_versions as history_table
from passhouse.storage.tables import passes as passes_table

PASS_TYPE_ID = "pass.bench.history"  # noqa: S105 - an identifier


async def _admin(server: str, sql: str) -> None:
    import asyncpg  # type: ignore[import-untyped]

    admin = sa.make_url(server).set(drivername="postgresql", database="postgres")
    connection = await asyncpg.connect(admin.render_as_string(hide_password=False))
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def _backend_cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _setup(database: Database, count: int) -> int:
    credentials = make_dev_credentials(PASS_TYPE_ID, "BENCHTEAM1")
    async with database.transaction() as conn:
        template_id = int(await dataset.add_pass_type_and_template(conn, PASS_TYPE_ID, credentials))
        await conn.execute(
            sa.text(
                "INSERT INTO passes (pass_type_id, serial_number, template_id,"
                " authentication_token, share_id, data, voided, version, modified_at,"
                " created_at, history_seq)"
                " SELECT :pt, 's' || n, :t, md5(n::text), md5('share' || n),"
                " json_build_object('name', 'Member ' || n, 'balance', n), false, 1,"
                " 1700000000, 1700000000, 0 FROM generate_series(1, :count) AS n"
            ),
            {"pt": PASS_TYPE_ID, "t": template_id, "count": count},
        )
    async with database.engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(sa.text("VACUUM ANALYZE passes"))
    return template_id


async def _timed(
    database: Database, action: Callable[[AsyncConnection], Awaitable[int]]
) -> tuple[float, float, int]:
    """(wall seconds, backend CPU seconds, passes changed) of one committed transaction."""
    async with database.transaction() as conn:
        pid = int(await conn.scalar(sa.text("SELECT pg_backend_pid()")) or 0)
        cpu = _backend_cpu_seconds(pid)
        start = time.perf_counter()
        changed = await action(conn)
    wall = time.perf_counter() - start  # the commit included
    return wall, _backend_cpu_seconds(pid) - cpu, changed


async def main(count: int, rounds: int) -> None:
    server = os.environ.get(
        "PASSHOUSE_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
    )
    name = f"bench_history_{secrets.token_hex(4)}"
    await _admin(server, f'CREATE DATABASE "{name}"')
    url = sa.make_url(server).set(drivername="postgresql", database=name)
    database = Database(url.render_as_string(hide_password=False), pool_size=2, hot_pool_size=1)
    try:
        await upgrade(database)
        template_id = await _setup(database, count)

        async def bump(conn: AsyncConnection, change: Change | None) -> int:
            await templates.replace_template(
                conn,
                template_id,
                name="bench",
                pass_json=devmode.DEMO_PASS_JSON,
                assets=devmode.demo_assets(),
                now=issuing.now_seconds(),
            )
            version = await pass_types.next_version(conn, PASS_TYPE_ID)
            now = issuing.now_seconds()
            if change is None:  # the UPDATE a template change made before the history
                result = await conn.execute(
                    passes_table.update()
                    .where(passes_table.c.template_id == template_id)
                    .values(version=version, modified_at=passes._next_modified_at(now))
                )
                return int(result.rowcount)
            return await passes.bump_template_passes(
                conn, template_id, version=version, now=now, change=change
            )

        change = Change(
            "template_changed",
            pass_versions.CLI,
            {"template": {"id": template_id, "name": "bench", "revision": 2}},
        )
        results: dict[str, list[tuple[float, float]]] = {
            "bump": [],
            "history": [],
            "at the limit": [],
        }
        limit = pass_versions.HISTORY_LIMIT
        for _ in range(rounds):
            for label in results:
                # At the limit (1 here): every pass already holds a row, so each drops one.
                setattr(pass_versions, "HISTORY_LIMIT", 1 if label == "at the limit" else limit)  # noqa: B010
                recorded = None if label == "bump" else change
                wall, cpu, changed = await _timed(
                    database, functools.partial(bump, change=recorded)
                )
                assert changed == count, changed
                results[label].append((wall, cpu))
        setattr(pass_versions, "HISTORY_LIMIT", limit)  # noqa: B010
        async with database.reader() as conn:
            rows = await conn.scalar(sa.select(sa.func.count()).select_from(history_table))
        print(f"{count} passes, {rounds} rounds; history rows at the end: {rows}")
        base_wall = statistics.median(w for w, _ in results["bump"])
        base_cpu = statistics.median(c for _, c in results["bump"])
        for label, values in results.items():
            wall = statistics.median(w for w, _ in values)
            cpu = statistics.median(c for _, c in values)
            print(
                f"{label:>13}: {wall:6.2f} s wall ({wall / base_wall:4.2f}x), "
                f"{cpu:6.2f} s backend CPU ({cpu / base_cpu:4.2f}x), "
                f"{count / cpu:9.0f} passes per backend CPU-second"
            )
        print(f"load average: {os.getloadavg()}")
    finally:
        await database.dispose()
        await _admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--passes", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.passes, args.rounds))
