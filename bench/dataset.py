"""A large passhouse database built set-based, for bench_search.py and bench_stats.py;
at the end, the set-up bench_web.py and bench_e2e.py share.

Pass g (1..N) of template 1 + g % 4 has the serial m<g, 7 digits> and the data
{"name": "<first> <last>", "member": g, "tier": gold|silver|bronze, "city": "city<g % 50>"}:
400 first names (about N / 400 passes each), up to 8,000 last names (about N / 8,000
each), three tiers (a third each), 50 cities. Its search terms are written by the same
set-based SQL, in the words storage.search.terms_of makes of that data (checked on a
sample). Registrations: `registrations` rows spread over the first passes (two devices
per pass), each counted in the hour it happened, and a year of hourly counters.

Times: passes were issued over the last 365 days (pass g at now - (N - g) * span / N).
"""

# The SQL below is built from this file's constants and integers, never from input.
# ruff: noqa: S608

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from passhouse import devmode, issuing
from passhouse.pkpass.devcerts import DevCredentials
from passhouse.storage import migrate, pass_versions, search
from passhouse.storage.database import Database
from passhouse.storage.sealing import Sealer

PT = "pass.bench.search"
TEMPLATES = 4
SYLLABLES = "kamirotesunalipevodaxiguzebofawycejholur"  # 20 two-letter syllables
DAY = 86_400
YEAR = 365 * DAY


def _syllable(expression: str) -> str:
    return f"substr('{SYLLABLES}', (({expression}) % 20) * 2 + 1, 2)"


def first_name_sql() -> str:
    return f"{_syllable('g')} || {_syllable('g / 20')} || 'a'"


def last_name_sql() -> str:
    return f"{_syllable('g * 7')} || {_syllable('g / 400')} || {_syllable('g / 8000')}"


def first_name(g: int) -> str:
    def syl(n: int) -> str:
        return SYLLABLES[(n % 20) * 2 : (n % 20) * 2 + 2]

    return syl(g) + syl(g // 20) + "a"


def last_name(g: int) -> str:
    def syl(n: int) -> str:
        return SYLLABLES[(n % 20) * 2 : (n % 20) * 2 + 2]

    return syl(g * 7) + syl(g // 400) + syl(g // 8000)


TIER = "CASE g % 3 WHEN 0 THEN 'gold' WHEN 1 THEN 'silver' ELSE 'bronze' END"


def _series(dialect: str, count: int, start: int = 1) -> tuple[str, str]:
    """(a WITH prefix, a FROM source) yielding g from start to start + count - 1."""
    if dialect == "postgresql":
        return "", f"generate_series({start}, {start + count - 1}) AS t(g)"
    return (
        f"WITH RECURSIVE t(g) AS (SELECT {start} UNION ALL SELECT g + 1 FROM t"
        f" WHERE g < {start + count - 1})",
        "t",
    )


def build_statements(dialect: str, passes: int, registrations: int, now: int) -> list[str]:
    created = f"({now} - CAST({passes} - g AS BIGINT) * {YEAR} / {passes})"
    serial = (
        "'m' || lpad(g::text, 7, '0')" if dialect == "postgresql" else "'m' || printf('%07d', g)"
    )
    data = (
        '\'{"name": "\' || ' + first_name_sql() + " || ' ' || " + last_name_sql() + " || "
        '\'", "member": \' || g || \', "tier": "\' || ' + TIER + " || "
        '\'", "city": "city\' || (g % 50) || \'"}\''
    )
    if dialect == "postgresql":
        data = f"({data})::json"
    blob = "''" if dialect == "postgresql" else "x''"
    with_p, source_p = _series(dialect, passes)
    holders = registrations // 2
    with_r, source_r = _series(dialect, holders)
    statements = [
        "INSERT INTO pass_types (pass_type_id, team_id, certificate_pem, private_key_encrypted,"
        f" not_after, last_version, created_at) VALUES ('{PT}', 'T', '', {blob}, 0,"
        f" {passes}, 0)",
        *(
            "INSERT INTO templates (id, name, pass_type_id, pass_json, created_at, updated_at)"
            f" VALUES ({n}, 'template-{n}', '{PT}', '{{}}', 0, 0)"
            for n in range(1, TEMPLATES + 1)
        ),
        f"{with_p} INSERT INTO passes (id, pass_type_id, serial_number, template_id,"
        " authentication_token, share_id, data, voided, version, modified_at, created_at)"
        f" SELECT g, '{PT}', {serial}, 1 + g % {TEMPLATES},"
        f" 'token' || g, 'share' || g, {data}, g % 100 = 0, g, {created}, {created}"
        f" FROM {source_p}",
        # The same words terms_of makes of that data: the serial, both names, the member
        # number, the tier and the city (distinct per pass: a last name never equals a
        # first name, which ends in "a" after two syllables, nor the other words).
        f"{with_p} INSERT INTO pass_search_terms (term, pass_id)"
        f" SELECT DISTINCT term, g FROM ("
        f"  SELECT {serial} AS term, g FROM {source_p}"
        f"  UNION ALL SELECT {first_name_sql()}, g FROM {source_p}"
        f"  UNION ALL SELECT {last_name_sql()}, g FROM {source_p}"
        f"  UNION ALL SELECT '' || g, g FROM {source_p}"
        f"  UNION ALL SELECT {TIER}, g FROM {source_p}"
        f"  UNION ALL SELECT 'city' || (g % 50), g FROM {source_p}"
        ") AS words",
        f"{with_r} INSERT INTO devices (id, device_library_id, created_at)"
        f" SELECT g, 'device-' || g, 0 FROM {source_r}",
        # Device g holds passes g and g + holders/2 (mod holders): two devices per pass.
        f"{with_r} INSERT INTO registrations (device_id, pass_id, push_token, registered_at_ms)"
        f" SELECT g, g, 'push-' || g, ({created}) * 1000 + 60000 FROM {source_r}"
        f" UNION ALL SELECT g, ((g - 1 + {holders // 2}) % {holders}) + 1, 'push-' || g,"
        f"  ({created}) * 1000 + 120000 FROM {source_r}",
        f"{with_r} INSERT INTO pass_first_installs (pass_id, at_ms)"
        f" SELECT g, ({created}) * 1000 + 60000 FROM {source_r}",
        # What the counters hold after such a year: issued, voided and installs per hour.
        "INSERT INTO stats_counters (pass_type_id, template_id, bucket, issued, voided,"
        " installs, updated)"
        " SELECT pass_type_id, template_id, bucket, sum(issued), sum(voided), sum(installs), 0"
        " FROM ("
        "  SELECT pass_type_id, template_id, created_at - created_at % 3600 AS bucket,"
        "   1 AS issued, CASE WHEN voided THEN 1 ELSE 0 END AS voided, 0 AS installs"
        "  FROM passes"
        "  UNION ALL SELECT p.pass_type_id, p.template_id,"
        "   r.registered_at_ms / 1000 - (r.registered_at_ms / 1000) % 3600, 0, 0, 1"
        "  FROM registrations r JOIN passes p ON p.id = r.pass_id"
        " ) AS events GROUP BY pass_type_id, template_id, bucket",
    ]
    return statements


@asynccontextmanager
async def fresh_database(dialect: str, pg_url: str, folder: str) -> AsyncIterator[str]:
    """A new empty database: a file in `folder`, or one on the server of `pg_url`."""
    if dialect == "sqlite":
        path = Path(folder) / f"bench_{secrets.token_hex(4)}.db"
        try:
            yield f"sqlite:///{path}"
        finally:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)  # noqa: ASYNC240
        return
    parsed = sa.make_url(pg_url)
    admin = parsed.set(drivername="postgresql", database="postgres").render_as_string(
        hide_password=False
    )
    name = f"passhouse_bench_{secrets.token_hex(4)}"

    async def run_admin(sql: str) -> None:
        import asyncpg  # type: ignore[import-untyped]

        connection = await asyncpg.connect(admin)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    await run_admin(f'CREATE DATABASE "{name}"')
    try:
        yield parsed.set(drivername="postgresql", database=name).render_as_string(
            hide_password=False
        )
    finally:
        await run_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@asynccontextmanager
async def built(
    dialect: str, *, passes: int, registrations: int, pg_url: str, folder: str
) -> AsyncIterator[str]:
    """A fresh database of that size (its URL), dropped or deleted on exit."""
    async with fresh_database(dialect, pg_url, folder) as url:
        started = time.perf_counter()
        database = Database(url)
        try:
            await migrate.upgrade(database)
            async with database.transaction() as conn:
                if dialect == "postgresql":
                    for table in ("passes", "pass_search_terms", "registrations"):
                        await conn.execute(
                            sa.text(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
                        )
                for statement in build_statements(dialect, passes, registrations, int(time.time())):
                    await conn.execute(sa.text(statement))
            await _check_terms(database, passes)
        finally:
            await database.dispose()
        print(
            f"# built {passes:,} passes and {registrations:,} registrations on {dialect}"
            f" in {time.perf_counter() - started:.0f} s (never analyzed)",
            flush=True,
        )
        yield url


async def _check_terms(database: Database, passes: int) -> None:
    """The SQL above wrote the words the application would write."""
    sample = sorted({1, 2, 3, passes // 3, passes // 2, passes})
    async with database.reader() as conn:
        for g in sample:
            row = (
                await conn.execute(
                    sa.text("SELECT serial_number, data FROM passes WHERE id = :g"), {"g": g}
                )
            ).one()
            data = json.loads(row.data) if isinstance(row.data, str) else row.data
            stored = set(
                (
                    await conn.execute(
                        sa.text("SELECT term FROM pass_search_terms WHERE pass_id = :g"),
                        {"g": g},
                    )
                ).scalars()
            )
            assert stored == set(search.terms_of(row.serial_number, data)), (g, stored)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# --- shared by bench_web.py and bench_e2e.py: fresh databases, the pass type, CPU -----------

TEAM_ID = "BENCHTEAM1"
SECRET_KEY = "bench-secret-key-" + secrets.token_hex(8)
ADMIN_TOKEN = "bench-admin-token-" + secrets.token_hex(8)
CLK_TCK = os.sysconf("SC_CLK_TCK")


async def _pg_admin(url: str, sql: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(url)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


async def new_database(
    kind: str, pg_url: str, workdir: Path, label: str
) -> tuple[str, Callable[[], Awaitable[None]]]:
    """(url, async drop) of a new empty database: a file in `workdir`, or a database made
    on the server of `pg_url` (any database there; it is not touched). For benchmarks that
    keep their database across several steps; `fresh_database` is the context manager."""
    if kind == "sqlite":

        async def nothing() -> None:
            pass

        return f"sqlite:///{workdir / label}.db", nothing
    parsed = sa.make_url(pg_url)
    maintenance = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"passhouse_bench_{label}_{secrets.token_hex(3)}"
    await _pg_admin(maintenance, f'CREATE DATABASE "{name}"')
    url = parsed.set(drivername="postgresql", database=name).render_as_string(hide_password=False)

    async def drop() -> None:
        await _pg_admin(maintenance, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return url, drop


async def add_pass_type_and_template(
    conn: AsyncConnection, pass_type_id: str, creds: DevCredentials
) -> int:
    """The pass type with the dev credentials and the demo template "bench" (real images)."""
    await issuing.save_pass_type(
        conn,
        Sealer(SECRET_KEY),
        issuing.Credentials(
            certificate_pem=creds.cert_pem,
            private_key_pem=creds.key_pem,
            wwdr_pem=creds.wwdr_cert_pem,
        ),
        actor=pass_versions.CLI,
    )
    template_id = await issuing.create_template(
        conn,
        name="bench",
        pass_type_id=pass_type_id,
        pass_json=devmode.DEMO_PASS_JSON,
        assets=devmode.demo_assets(),
    )
    return int(template_id)


async def vacuum_analyze(database: Database) -> None:
    """PostgreSQL: statistics for the freshly loaded rows (no-op on SQLite; see `settle`)."""
    if database.dialect == "postgresql":
        async with database.engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(sa.text("VACUUM ANALYZE"))


def settle_sqlite(url: str, *, analyze: bool = True) -> None:
    """SQLite: ANALYZE (unless told not to) and fold the WAL into the file."""
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
            if analyze:
                db.execute("ANALYZE")
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def family_cpu(pid: int) -> float:
    """utime + stime of a process and its descendants still running, in seconds
    (`serve --workers N` spawns N children)."""
    parents: dict[int, tuple[int, int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    family = {pid}
    while True:
        more = {p for p, (ppid, _) in parents.items() if ppid in family} - family
        if not more:
            break
        family |= more
    return sum(parents[p][1] for p in family if p in parents) / CLK_TCK


def postgres_cpu_seconds() -> float:
    """CPU seconds of all local PostgreSQL processes, reaped backends included (via the
    postmaster's cutime/cstime). Counts every database on that server, not only ours."""
    ticks = 0
    procs: dict[int, tuple[str, int, int, int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat.rsplit(")", 1)[1].split()
        own = int(fields[11]) + int(fields[12])
        children = int(fields[13]) + int(fields[14])
        procs[int(entry.name)] = (name, int(fields[1]), own, children)
    for name, ppid, own, children in procs.values():
        if name != "postgres":
            continue
        ticks += own
        if procs.get(ppid, ("",))[0] != "postgres":  # the postmaster
            ticks += children
    return ticks / CLK_TCK
