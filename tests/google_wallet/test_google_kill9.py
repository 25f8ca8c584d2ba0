"""kill -9 of a worker process in the middle of a Google sync loses nothing."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import httpx
import sqlalchemy as sa

from google_wallet.fake_google import FakeGoogle
from google_wallet.test_google_api import issue, make_template
from passhouse.bootstrap import Runtime
from passhouse.settings import Settings
from passhouse.storage.tables import google_objects, google_sync_jobs
from workers import start_worker, worker_env

PASSES = 150


async def _eventually(check: object, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():  # type: ignore[operator]
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def test_kill_9_mid_sync_loses_nothing(
    admin: httpx.AsyncClient,
    runtime: Runtime,
    settings: Settings,
    database_url: str,
    pass_type: str,
    issuer: str,
    fake_google: FakeGoogle,
    tmp_path: Path,
) -> None:
    await make_template(admin, pass_type)
    for i in range(PASSES):
        await issue(admin, f"k{i}")
    env = worker_env(
        database_url,
        PASSHOUSE_PUBLIC_URL=settings.public_url,
        PASSHOUSE_GOOGLE_API_URL=settings.google_api_url,
        PASSHOUSE_GOOGLE_CA_FILE=str(settings.google_ca_file),
        # 50 writes a second: the kill lands in the middle of the fan-out.
        PASSHOUSE_GOOGLE_RATE_PER_SECOND="50",
        PASSHOUSE_PUSH_LEASE_SECONDS="2",
    )
    first = await start_worker(env, tmp_path, "first")

    async def under_way() -> bool:
        return len(fake_google.objects) >= 40

    await _eventually(under_way, 60, "the sync to be under way")
    first.send_signal(signal.SIGKILL)
    await first.wait()
    assert len(fake_google.objects) < PASSES
    # A change made while no worker runs is written too, with its newest state.
    await admin.patch(f"/api/v1/passes/{pass_type}/k0", json={"data": {"balance": 500}})
    second = await start_worker(env, tmp_path, "second")

    async def all_synced() -> bool:
        async with runtime.database.reader() as conn:
            queued = await conn.scalar(sa.select(sa.func.count()).select_from(google_sync_jobs))
            synced = await conn.scalar(
                sa.select(sa.func.count())
                .select_from(google_objects)
                .where(google_objects.c.status == "synced")
            )
        return queued == 0 and synced == PASSES

    try:
        await _eventually(all_synced, 90, "every object to be synced")
    finally:
        second.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(second.wait(), 20)
    assert code == 0
    assert len(fake_google.objects) == PASSES
    k0 = (await admin.get(f"/api/v1/passes/{pass_type}/k0")).json()["google"]
    assert fake_google.objects[k0["object_id"]]["loyaltyPoints"]["balance"] == {"string": "500"}
    assert k0["up_to_date"] is True
