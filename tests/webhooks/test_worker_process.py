"""`passhouse worker` delivering webhooks, killed with SIGKILL mid fan-out: every event
still arrives, and only what was in flight at the kill arrives twice."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import sqlalchemy as sa

from passhouse.bootstrap import Runtime
from passhouse.storage import webhooks
from passhouse.storage.tables import webhook_deliveries
from passhouse.webhooks import manage
from webhooks.conftest import eventually
from webhooks.receiver import Receiver
from workers import start_worker, worker_env

EVENTS = 300
LANES = 4  # webhooks/worker.py LANES: with a concurrency of 1, at most this many in flight


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
    env = worker_env(
        database_url,
        PASSHOUSE_WEBHOOKS_ALLOW_PRIVATE="true",
        PASSHOUSE_WEBHOOK_CONCURRENCY="1",
        PASSHOUSE_WEBHOOK_LEASE_SECONDS="2",
    )

    first = await start_worker(env, tmp_path, "first")
    await eventually(lambda: len(receiver.received) >= 60, 60, "deliveries to be under way")
    first.kill()
    await first.wait()
    before_kill = len(set(receiver.event_ids()))
    receiver.delay = 0.0
    second = await start_worker(env, tmp_path, "second")
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
