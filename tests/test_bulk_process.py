"""Imports run by real `passhouse worker` processes, one killed with SIGKILL mid-job, and
`passhouse pass import` on the command line."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from conftest import SECRET_KEY
from passhouse import bulk
from passhouse.bootstrap import Runtime
from passhouse.cli import main
from passhouse.storage import jobs, pass_versions
from passhouse.storage.tables import job_errors, passes

ROWS = 3000
CHUNK = 25


def worker_env(runtime: Runtime) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PASSHOUSE_")}
    return env | {
        "PASSHOUSE_DATABASE_URL": runtime.settings.database_url,
        "PASSHOUSE_SECRET_KEY": SECRET_KEY,
        "PASSHOUSE_PUBLIC_URL": runtime.settings.public_url,
        "PASSHOUSE_DATA_DIR": str(runtime.settings.data_dir),
        "PASSHOUSE_DEV_MODE": "false",
        "PASSHOUSE_JOB_CHUNK_SIZE": str(CHUNK),
        "PASSHOUSE_JOB_LEASE_SECONDS": "2",
        "PASSHOUSE_JOB_POLL_SECONDS": "0.1",
    }


def start_worker(runtime: Runtime, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "passhouse", "worker", "--log-level", "warning"],
            env=worker_env(runtime),
            stdout=out,
            stderr=out,
        )


async def job_row(runtime: Runtime, job_id: int) -> Any:
    async with runtime.database.reader() as conn:
        return await jobs.get_job(conn, job_id)


async def pass_count(runtime: Runtime) -> int:
    async with runtime.database.reader() as conn:
        return int(await conn.scalar(sa.select(sa.func.count()).select_from(passes)) or 0)


async def wait_for(runtime: Runtime, job_id: int, ready: Any, what: str, within: float) -> Any:
    deadline = time.monotonic() + within
    while True:
        row = await job_row(runtime, job_id)
        if ready(row):
            return row
        assert time.monotonic() < deadline, f"{what}: {dict(row._mapping)}"
        await asyncio.sleep(0.05)


@pytest.mark.slow
async def test_a_worker_killed_mid_import_leaves_every_row_imported_exactly_once(
    runtime: Runtime, template: str, tmp_path: Path
) -> None:
    # No serial column: a row applied twice would be a second pass, not a conflict.
    text = "name,balance\n" + "".join(f"Row {i},{i}\n" for i in range(ROWS))
    async with runtime.database.transaction() as conn:
        job_id = await bulk.create_import(
            conn,
            template_ref=template,
            mode="create",
            file=io.BytesIO(text.encode()),
            limits=bulk.CsvLimits.of(runtime.settings),
            actor=pass_versions.CLI,
        )
    log = tmp_path / "worker.log"
    first = start_worker(runtime, log)
    try:
        await wait_for(runtime, job_id, lambda r: r.done >= 10 * CHUNK, "no progress", 120)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    killed = await job_row(runtime, job_id)
    assert killed.status == jobs.RUNNING
    assert 0 < killed.done < ROWS, "the worker finished before it was killed"
    # Each committed chunk made its passes together with its progress; nothing else stays.
    assert killed.done % CHUNK == 0
    assert await pass_count(runtime) == killed.done == killed.created == killed.cursor - 1

    second = start_worker(runtime, log)
    try:
        done = await wait_for(
            runtime, job_id, lambda r: r.status != jobs.RUNNING, "not finished", 300
        )
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=60)
    assert done.status == jobs.DONE
    assert (done.total, done.done, done.created, done.failed) == (ROWS, ROWS, ROWS, 0)
    assert done.claims == 2  # the job was taken over once, after the lease ran out
    async with runtime.database.reader() as conn:
        names = (await conn.execute(sa.select(passes.c.data))).scalars().all()
        failures = await conn.scalar(sa.select(sa.func.count()).select_from(job_errors))
    assert sorted(data["name"] for data in names) == sorted(f"Row {i}" for i in range(ROWS))
    assert failures == 0
    assert "Traceback" not in log.read_text()


def test_the_cli_imports_a_csv_and_lists_the_failed_rows(
    runtime: Runtime, template: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in worker_env(runtime).items():
        monkeypatch.setenv(name, value)
    csv_file = tmp_path / "members.csv"
    csv_file.write_text("serial_number,name,balance\ncli-1,Ada,1\ncli-2,,2\ncli-3,Bo,3\n")
    result = CliRunner().invoke(main, ["pass", "import", str(csv_file), "--template", template])
    assert result.exit_code == 1, result.output
    assert "2 created, 0 updated, 0 unchanged, 1 failed" in result.output
    assert "row 3 (cli-2):" in result.output
    assert asyncio.run(_count(runtime.settings.database_url)) == 2
    csv_file.write_text("serial_number,balance\ncli-1,50\n")
    again = CliRunner().invoke(
        main, ["pass", "import", str(csv_file), "--template", template, "--mode", "upsert"]
    )
    assert again.exit_code == 0, again.output
    assert "0 created, 1 updated" in again.output
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"name\n\xff\xfe\n")
    refused = CliRunner().invoke(main, ["pass", "import", str(bad), "--template", template])
    assert refused.exit_code == 1
    assert "not UTF-8" in refused.output


async def _count(url: str) -> int:
    from passhouse.storage.database import Database

    database = Database(url)
    try:
        async with database.reader() as conn:
            return int(await conn.scalar(sa.select(sa.func.count()).select_from(passes)) or 0)
    finally:
        await database.dispose()
