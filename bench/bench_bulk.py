"""Bulk jobs on PostgreSQL: a 100,000-row CSV import, then a bulk update of every pass.

    .venv/bin/python bench/bench_bulk.py [--rows 100000] [--chunk 1000]

Steps, in one run:
1. a fresh PostgreSQL database (PASSHOUSE_BENCH_DATABASE_URL, default
   postgresql://postgres@127.0.0.1:5432/test names the server; a new database
   `bench_bulk_<random>` is made there and dropped at the end), migrated, with a pass type
   (throwaway certificate) and the demo template;
2. a CSV of --rows rows (serial_number, name, balance, member.tier) read into an import
   job as POST /api/v1/imports does (staged in the request's transaction), then run by the
   workers' job code (bulk.claim_job + bulk.run_claimed, PASSHOUSE_JOB_CHUNK_SIZE rows per
   transaction) until done: passes/s from the upload to the last commit;
3. every pass registered on its own device (set-based SQL, not analyzed afterwards), then
   a bulk update matching every pass (`where` on member.tier): seconds from the job's
   creation to its last commit, and the pushes it queued (one per device).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

import dataset  # type: ignore[import-not-found]  # the sibling module, first on sys.path
from passhouse import bulk, issuing
from passhouse.pkpass.devcerts import make_dev_credentials
from passhouse.settings import Settings
from passhouse.storage import jobs, migrate, pass_versions
from passhouse.storage.database import Database
from passhouse.storage.sealing import Sealer
from passhouse.storage.tables import devices, passes, push_jobs, registrations

PASS_TYPE_ID = "pass.bench.bulk"  # noqa: S105 - an identifier
SECRET_KEY = dataset.SECRET_KEY


async def create_database(server: str) -> str:
    import asyncpg  # type: ignore[import-untyped]

    parsed = sa.make_url(server)
    name = f"bench_bulk_{secrets.token_hex(4)}"
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


async def run_all_jobs(database: Database, settings: Settings) -> None:
    builder = issuing.PassBuilder(Sealer(SECRET_KEY), settings.web_service_url)
    while (claimed := await bulk.claim_job(database, settings)) is not None:
        await bulk.run_claimed(database, builder, settings, *claimed)


async def job_counts(database: Database, job_id: int) -> dict[str, int]:
    async with database.reader() as conn:
        job = await jobs.get_job(conn, job_id)
    assert job is not None
    assert job.status == jobs.DONE, job.status
    return {k: int(getattr(job, k)) for k in ("total", "done", "created", "updated", "failed")}


async def main(rows: int, chunk: int) -> None:
    server = os.environ.get(
        "PASSHOUSE_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
    )
    url = await create_database(server)
    settings = Settings(
        _env_file=None, database_url=url, job_chunk_size=chunk, public_url="https://bench.test"
    )
    database = Database(url, pool_size=4, hot_pool_size=1)
    try:
        await migrate.upgrade(database)
        credentials = make_dev_credentials(PASS_TYPE_ID, "BENCHTEAM1")
        async with database.transaction() as conn:
            await dataset.add_pass_type_and_template(conn, PASS_TYPE_ID, credentials)
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "members.csv"
            with path.open("w") as out:
                out.write("serial_number,name,balance,member.tier\n")
                for i in range(rows):
                    out.write(f"m-{i:07d},Member {i},{i % 1000},gold\n")
            size = path.stat().st_size
            started = time.perf_counter()
            cpu_started = time.process_time()
            with path.open("rb") as file:
                async with database.transaction() as conn:
                    job_id = await bulk.create_import(
                        conn,
                        template_ref="bench",
                        mode="create",
                        file=file,
                        actor=pass_versions.CLI,
                        limits=bulk.CsvLimits.of(settings),
                    )
        staged = time.perf_counter()
        await run_all_jobs(database, settings)
        imported = time.perf_counter()
        cpu = time.process_time() - cpu_started
        counts = await job_counts(database, job_id)
        assert counts["created"] == rows, counts
        total = imported - started
        print(f"CSV: {rows} rows, {size / 1e6:.1f} MB; chunks of {chunk} rows")
        print(f"import: staged in {staged - started:.2f} s, run in {imported - staged:.2f} s")
        print(f"import: {rows} passes in {total:.2f} s = {rows / total:,.0f} passes/s")
        print(f"import: {cpu:.2f} CPU-s in this process = {rows / cpu:,.0f} passes per CPU-s")
        print(f"load average: {os.getloadavg()[0]:.1f}")

        async with database.transaction() as conn:
            await conn.execute(
                devices.insert().from_select(
                    ["device_library_id", "created_at"],
                    sa.select(sa.literal("device-") + passes.c.serial_number, sa.literal(0)),
                )
            )
            await conn.execute(
                registrations.insert().from_select(
                    ["device_id", "pass_id", "push_token", "registered_at_ms"],
                    sa.select(
                        devices.c.id,
                        passes.c.id,
                        sa.literal("token-") + passes.c.serial_number,
                        sa.literal(0, sa.BigInteger),
                    ).join(
                        passes, devices.c.device_library_id == "device-" + passes.c.serial_number
                    ),
                )
            )
        started = time.perf_counter()
        cpu_started = time.process_time()
        async with database.transaction() as conn:
            job_id = await bulk.create_bulk_update(
                conn,
                template_ref="bench",
                where={"member.tier": "gold"},
                data={"offer": "Double points this week"},
                actor=pass_versions.CLI,
            )
        await run_all_jobs(database, settings)
        updated = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        counts = await job_counts(database, job_id)
        async with database.reader() as conn:
            queued = await conn.scalar(sa.select(sa.func.count()).select_from(push_jobs))
        assert counts["updated"] == rows, counts
        assert queued == rows, queued
        print(
            f"bulk update: {rows} passes changed and {queued} pushes queued in {updated:.2f} s "
            f"= {rows / updated:,.0f} passes/s"
        )
        print(f"bulk update: {cpu:.2f} CPU-s in this process = {rows / cpu:,.0f} per CPU-s")
        print(f"load average: {os.getloadavg()[0]:.1f}")
    finally:
        await database.dispose()
        await drop_database(url)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--chunk", type=int, default=1000)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.rows, arguments.chunk))
