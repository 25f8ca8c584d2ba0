"""Webhook benchmark: a template change on 100,000 passes queues its pass.updated events,
and one endpoint receives them.

    .venv/bin/python bench/bench_webhooks.py [--passes 100000] [--sqlite]

Steps, in one run:
1. a fresh database: PostgreSQL (PASSHOUSE_BENCH_DATABASE_URL, default
   postgresql://postgres@127.0.0.1:5432/test names the server; a database
   `bench_webhooks_<random>` is made there and dropped at the end), or with --sqlite a new
   file; `--passes` passes of one template filled by set-based SQL, one webhook endpoint
   taking every event type;
2. the template change as the API does it, in one transaction: every pass bumped and one
   pass.updated event per pass queued with one INSERT ... SELECT (timed: the commit);
3. the receiver (tests/webhooks/receiver.py, HTTP/1.1, checks every signature) in its own
   process, and one `passhouse worker` process: the clock runs from the worker's start to
   the receiver having taken every event (fan-out to deliveries included).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import sqlalchemy as sa

from passhouse.storage import migrate, webhooks
from passhouse.storage.database import Database
from passhouse.storage.sealing import Sealer
from passhouse.storage.tables import pass_types, passes, templates

ROOT = Path(__file__).resolve().parent.parent
RECEIVER = ROOT / "tests" / "webhooks" / "receiver.py"
PASS_TYPE_ID = "pass.bench.webhooks"  # noqa: S105 - an identifier
SECRET_KEY = "bench-secret-key-0123456789"  # noqa: S105 - a throwaway database's key


class ReceiverProcess:
    def __init__(self, secret: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(RECEIVER), "--secret", secret], stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().split()
        assert line[0] == "PORT", line
        self.port = int(line[1])
        self.count = self.unique = self.bad = 0
        self.last_at = 0.0
        self._changed = threading.Condition()
        threading.Thread(target=self._follow, daemon=True).start()

    def _follow(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            parts = line.split()
            if parts and parts[0] == "COUNT":
                with self._changed:
                    self.count, self.unique = int(parts[1]), int(parts[2])
                    self.last_at, self.bad = float(parts[3]), int(parts[4])
                    self._changed.notify_all()

    def wait_for(self, unique: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while self.unique < unique:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"the receiver got {self.unique} of {unique} events")
                self._changed.wait(left)

    def close(self) -> None:
        self.process.terminate()
        self.process.wait()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def create_database(base_url: str) -> str:
    import asyncpg  # type: ignore[import-untyped]

    parsed = sa.make_url(base_url.replace("postgres://", "postgresql://", 1))
    name = f"bench_webhooks_{secrets.token_hex(4)}"
    admin = parsed.set(drivername="postgresql", database="postgres")
    connection = await asyncpg.connect(admin.render_as_string(hide_password=False))
    await connection.execute(f'CREATE DATABASE "{name}"')
    await connection.close()
    return parsed.set(drivername="postgresql", database=name).render_as_string(hide_password=False)


async def drop_database(url: str) -> None:
    import asyncpg

    parsed = sa.make_url(url)
    admin = parsed.set(database="postgres").render_as_string(hide_password=False)
    connection = await asyncpg.connect(admin)
    await connection.execute(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)')
    await connection.close()


async def fill(database: Database, count: int, secret: str) -> int:
    await migrate.upgrade(database)
    async with database.transaction() as conn:
        await conn.execute(
            pass_types.insert().values(
                pass_type_id=PASS_TYPE_ID,
                team_id="BENCHTEAM1",
                certificate_pem="",
                private_key_encrypted=Sealer(SECRET_KEY).seal(b"no key: no pass is signed"),
                not_after=4_000_000_000,
                created_at=0,
            )
        )
        template_id = (
            await conn.execute(
                templates.insert()
                .values(
                    name="bench",
                    pass_type_id=PASS_TYPE_ID,
                    pass_json={},
                    created_at=0,
                    updated_at=0,
                )
                .returning(templates.c.id)
            )
        ).scalar_one()
        series = (
            "generate_series(1, :n) AS s(g)"
            if database.dialect == "postgresql"
            else "(WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < :n)"
            " SELECT g FROM s)"
        )
        data = (
            "json_build_object('name', 'Member ' || g, 'points', g)"
            if database.dialect == "postgresql"
            else "json_object('name', 'Member ' || g, 'points', g)"
        )
        # Only fixed text chosen above goes into the statement; the values are bound.
        insert = (
            "INSERT INTO passes (pass_type_id, serial_number, template_id,"  # noqa: S608
            " authentication_token, share_id, data, version, modified_at, created_at)"
            f" SELECT :pt, 's' || g, :tid, 'token' || g, 'share' || g, {data}, 1, 0, 0"
            f" FROM {series}"
        )
        await conn.execute(
            sa.text(insert),
            {"pt": PASS_TYPE_ID, "tid": template_id, "n": count},
        )
        await webhooks.create_endpoint(
            conn,
            url="http://127.0.0.1:9/not-yet",
            events=["*"],
            secret_encrypted=Sealer(SECRET_KEY).seal(secret.encode()),
            now_ms=int(time.time() * 1000) - 1000,
        )
    if database.dialect == "postgresql":
        async with database.engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(sa.text("VACUUM ANALYZE"))
    return int(template_id)


async def change_template(database: Database, template_id: int) -> tuple[float, int]:
    """What a template edit does to its passes and their events, in one transaction."""
    started = time.perf_counter()
    async with database.transaction() as conn:
        await conn.execute(
            passes.update()
            .where(passes.c.template_id == template_id)
            .values(version=passes.c.version + 1)
        )
        bumped = time.perf_counter()
        queued = await webhooks.emit_pass_events(
            conn,
            "pass.updated",
            passes.c.template_id == template_id,
            now_ms=int(time.time() * 1000),
        )
    committed = time.perf_counter()
    events = committed - bumped
    print(f"  bump {bumped - started:.2f} s, events INSERT ... SELECT + commit {events:.2f} s")
    return committed - started, queued


async def point_endpoint(database: Database, port: int) -> None:
    async with database.transaction() as conn:
        await webhooks.update_endpoint(
            conn, 1, url=f"http://127.0.0.1:{port}/hook", now_ms=int(time.time() * 1000)
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--passes", type=int, default=100_000)
    parser.add_argument("--sqlite", action="store_true")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--queue-only", action="store_true", help="Skip the delivery step.")
    args = parser.parse_args()
    secret = "whsec_" + secrets.token_urlsafe(32)
    folder = Path(tempfile.mkdtemp(prefix="bench_webhooks_"))
    if args.sqlite:
        url = f"sqlite:///{folder / 'bench.db'}"
    else:
        base = os.environ.get(
            "PASSHOUSE_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
        )
        url = asyncio.run(create_database(base))
    print(f"database: {'SQLite' if args.sqlite else 'PostgreSQL'}, {args.passes:,} passes")

    async def prepare() -> tuple[float, int]:
        database = Database(url)
        try:
            template_id = await fill(database, args.passes, secret)
            return await change_template(database, template_id)
        finally:
            await database.dispose()

    try:
        seconds, queued = asyncio.run(prepare())
        print(f"queue {queued:,} pass.updated events: {seconds:.2f} s (one transaction)")
        if args.queue_only:
            return
        receiver = ReceiverProcess(secret)

        async def point() -> None:
            database = Database(url)
            try:
                await point_endpoint(database, receiver.port)
            finally:
                await database.dispose()

        asyncio.run(point())
        env = {k: v for k, v in os.environ.items() if not k.startswith("PASSHOUSE_")}
        env.update(
            PASSHOUSE_DATABASE_URL=url,
            PASSHOUSE_SECRET_KEY=SECRET_KEY,
            PASSHOUSE_DEV_MODE="false",
            PASSHOUSE_WEBHOOKS_ALLOW_PRIVATE="true",
            PASSHOUSE_WEBHOOK_CONCURRENCY=str(args.concurrency),
        )
        log = (folder / "worker.log").open("ab")
        started = time.time()
        worker = subprocess.Popen(
            [sys.executable, "-m", "passhouse", "worker", "--log-level", "warning"],
            env=env,
            cwd=folder,
            stdout=log,
            stderr=log,
        )
        try:
            receiver.wait_for(queued, timeout=max(600, queued / 100))
            cpu = cpu_seconds(worker.pid)
        finally:
            worker.terminate()
            worker.wait(30)
            receiver.close()
        elapsed = receiver.last_at - started
        print(
            f"delivered {receiver.unique:,} events to one endpoint in {elapsed:.1f} s:"
            f" {receiver.unique / elapsed:,.0f} events/s (worker start included);"
            f" {receiver.count - receiver.unique} duplicates, {receiver.bad} bad signatures;"
            f" worker CPU {cpu:.1f} s ({receiver.unique / cpu:,.0f} events per CPU-second)"
        )
    finally:
        if not args.sqlite:
            asyncio.run(drop_database(url))


if __name__ == "__main__":
    main()
