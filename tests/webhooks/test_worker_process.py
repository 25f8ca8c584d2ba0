"""`passhouse worker` delivering webhooks, killed with SIGKILL mid fan-out: every event
still arrives, and only what was in flight at the kill arrives twice."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import sqlalchemy as sa

from conftest import SECRET_KEY
from passhouse.bootstrap import Runtime
from passhouse.storage import webhooks
from passhouse.storage.tables import webhook_deliveries
from passhouse.webhooks import manage
from webhooks.conftest import eventually
from webhooks.receiver import Receiver

EVENTS = 300
LANES = 4  # webhooks/worker.py LANES: with a concurrency of 1, at most this many in flight


def _env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PASSHOUSE_")}
    env.update(
        PASSHOUSE_DATABASE_URL=database_url,
        PASSHOUSE_SECRET_KEY=SECRET_KEY,
        PASSHOUSE_DEV_MODE="false",
        PASSHOUSE_WEBHOOKS_ALLOW_PRIVATE="true",
        **extra,
    )
    return env


async def _start(env: dict[str, str], cwd: Path, name: str) -> asyncio.subprocess.Process:
    log = (cwd / f"{name}.log").open("ab")
    try:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "passhouse", "worker", env=env, cwd=cwd, stdout=log, stderr=log
        )
    finally:
        log.close()


async def test_kill_9_mid_fan_out_loses_no_event(
    runtime: Runtime, database_url: str, receiver: Receiver, tmp_path: Path
) -> None:
    created = await manage.create_webhook(runtime, url=receiver.url, events=["*"])
    receiver.secret = created["secret"]
    now = int(time.time() * 1000)
    async with runtime.database.transaction() as conn:
        for n in range(EVENTS):
            await webhooks.emit(conn, "pass.updated", {"n": n}, now_ms=now)
    receiver.delay = 0.02  # one request at a time: about 40 a second, so the kill lands mid-way
    env = _env(database_url, PASSHOUSE_WEBHOOK_CONCURRENCY="1", PASSHOUSE_WEBHOOK_LEASE_SECONDS="2")

    first = await _start(env, tmp_path, "first")
    await eventually(lambda: len(receiver.received) >= 60, 60, "deliveries to be under way")
    first.kill()
    await first.wait()
    before_kill = len(set(receiver.event_ids()))
    receiver.delay = 0.0
    second = await _start(env, tmp_path, "second")
    try:
        await eventually(
            lambda: len(set(receiver.event_ids())) >= EVENTS, 90, "every event after the kill"
        )
        await asyncio.sleep(0.5)  # a late duplicate would arrive now
    finally:
        second.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(second.wait(), 20)

    ids = receiver.event_ids()
    assert before_kill < EVENTS
    assert receiver.bad_signatures == []
    assert len(set(ids)) == EVENTS
    # At most what was on the wire at the kill (one per lane) arrives twice.
    assert len(ids) - len(set(ids)) <= LANES
    assert sorted(r.event["data"]["n"] for r in receiver.received if r.event)[-1] == EVENTS - 1
    assert code == 0
    async with runtime.database.reader() as conn:
        states: dict[str, int] = dict(
            (
                await conn.execute(
                    sa.select(webhook_deliveries.c.state, sa.func.count()).group_by(
                        webhook_deliveries.c.state
                    )
                )
            ).all()
        )
    assert states == {"delivered": EVENTS}
