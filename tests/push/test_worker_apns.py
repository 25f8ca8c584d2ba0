"""The worker against the fake APNs server: fan-out, outcomes, several workers, kill -9."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

import passhouse.storage.push_jobs as jobs
from certs import renewed_certificate
from passhouse import issuing
from passhouse.bootstrap import Runtime
from passhouse.push.apns import ApnsSender, make_sender
from passhouse.settings import Settings
from passhouse.storage import pass_versions
from passhouse.storage.database import Database
from passhouse.storage.sealing import Sealer
from passhouse.storage.tables import pass_types, push_jobs, registrations
from passhouse.worker import heartbeat_seconds, run_worker, send_due_pushes
from push import fake_apns as fake
from push.conftest import PASS_TYPE_ID, Pki, add_real_pass_type, requires_postgres
from push.fake_apns import FakeApns
from push.rows import SECRET_KEY, World, make_world
from workers import start_worker, worker_env


@pytest.fixture
async def sender(
    database: Database, settings: Settings, sealer: Sealer
) -> AsyncIterator[ApnsSender]:
    apns = make_sender(settings, database, sealer)
    try:
        yield apns
    finally:
        await apns.aclose()


async def _world(database: Database, pki: Pki, count: int) -> World:
    async with database.transaction() as conn:
        await add_real_pass_type(conn, pki)
        world = await make_world(conn, PASS_TYPE_ID, passes_count=count)
        await jobs.enqueue_for_template(conn, world.template_id, now_ms=int(time.time() * 1000))
    return world


async def _depth(database: Database) -> int:
    async with database.reader() as conn:
        return await jobs.queue_depth(conn)


async def _eventually(check: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def _drain(database: Database, sender: ApnsSender, settings: Settings) -> None:
    deadline = time.monotonic() + 20
    while await _depth(database):
        assert time.monotonic() < deadline, "the queue did not drain"
        if not await send_due_pushes(database, sender, settings):
            await asyncio.sleep(0.02)


async def test_a_template_change_reaches_every_device_once(
    database: Database, settings: Settings, sender: ApnsSender, fake_apns: FakeApns, pki: Pki
) -> None:
    world = await _world(database, pki, 300)

    await _drain(database, sender, settings)

    assert sorted(fake_apns.tokens()) == sorted(world.tokens)


async def test_every_outcome_through_the_real_client(
    database: Database, settings: Settings, sender: ApnsSender, fake_apns: FakeApns, pki: Pki
) -> None:
    world = await _world(database, pki, 6)
    gone, bad, throttled, unavailable, kept = world.tokens[:5]
    fake_apns.answer(gone, fake.unregistered(int(time.time() * 1000) + 60_000))
    fake_apns.answer(bad, fake.BAD_DEVICE_TOKEN)
    fake_apns.answer(throttled, fake.TOO_MANY_REQUESTS, fake.OK)
    fake_apns.answer(unavailable, fake.SERVICE_UNAVAILABLE, fake.SERVICE_UNAVAILABLE, fake.OK)

    await _drain(database, sender, settings)

    async with database.reader() as conn:
        left = set((await conn.execute(sa.select(registrations.c.push_token))).scalars())
        stats = await jobs.push_stats(conn, int(time.time() * 1000))
    assert left == set(world.tokens) - {gone, bad}
    assert kept in fake_apns.tokens()
    assert fake_apns.tokens().count(unavailable) == 1
    assert stats["sent"] == 4
    assert stats["retried"] == 3
    assert stats["failed_by_reason"] == {"Unregistered": 1, "BadDeviceToken": 1}


async def test_pushes_cut_off_by_goaway_are_sent_on_a_new_connection(
    database: Database, settings: Settings, sender: ApnsSender, fake_apns: FakeApns, pki: Pki
) -> None:
    fake_apns.goaway_after = 40
    world = await _world(database, pki, 300)

    await _drain(database, sender, settings)

    assert set(fake_apns.tokens()) == set(world.tokens)
    assert fake_apns.goaways >= 5


async def test_a_403_holds_pushes_until_a_new_certificate_is_uploaded(
    database: Database, settings: Settings, sender: ApnsSender, fake_apns: FakeApns, pki: Pki
) -> None:
    fake_apns.default = fake.BAD_CERTIFICATE
    world = await _world(database, pki, 20)
    await send_due_pushes(database, sender, settings)
    held = await send_due_pushes(database, sender, settings)
    async with database.reader() as conn:
        error = await conn.scalar(sa.select(pass_types.c.apns_error))
    cert_pem, key_pem = renewed_certificate(pki.credentials)

    fake_apns.default = fake.OK
    # What an issuer does: upload the renewed certificate (the admin API's use case).
    async with database.transaction() as conn:
        await issuing.save_pass_type(
            conn,
            Sealer(SECRET_KEY),
            issuing.Credentials(
                certificate_pem=cert_pem,
                private_key_pem=key_pem,
                wwdr_pem=pki.credentials.wwdr_cert_pem,
            ),
            actor=pass_versions.CLI,
        )
    resumed = await send_due_pushes(database, sender, settings)
    await _drain(database, sender, settings)

    assert (error, held) == ("403 BadCertificate", 0)
    assert resumed == 20
    assert set(fake_apns.tokens()) == set(world.tokens)


async def test_the_worker_sends_again_after_every_apns_outage_without_a_restart(
    database: Database, settings: Settings, fake_apns: FakeApns, pki: Pki, sealer: Sealer
) -> None:
    patient = settings.model_copy(
        update={
            "push_max_attempts": 1000,
            "push_backoff_base_seconds": 0.2,
            "push_backoff_max_seconds": 1.0,
        }
    )
    async with database.transaction() as conn:
        await add_real_pass_type(conn, pki)
        world = await make_world(conn, PASS_TYPE_ID, passes_count=50)
    stop = asyncio.Event()
    worker = asyncio.create_task(
        run_worker(Runtime(settings=patient, database=database, sealer=sealer), stop)
    )

    async def enqueue() -> None:
        async with database.transaction() as conn:
            await jobs.enqueue_for_template(conn, world.template_id, now_ms=int(time.time() * 1000))

    async def all_failed_once() -> bool:
        async with database.reader() as conn:
            attempts = (await conn.execute(sa.select(push_jobs.c.attempts))).scalars().all()
        return len(attempts) == 50 and min(attempts) >= 1

    def delivered_since(start: int) -> Callable[[], bool]:
        def check() -> bool:
            received = fake_apns.received[start:]
            return {p.token for p in received if p.status == 200} == set(world.tokens)

        return check

    try:
        # Connections open and in use first, as on a running server.
        await enqueue()
        await _eventually(delivered_since(0), 20, "warm-up")
        for cycle in range(1, 6):
            await fake_apns.close()
            await enqueue()
            deadline = time.monotonic() + 30
            while not await all_failed_once():
                assert time.monotonic() < deadline, f"cycle {cycle}: pushes not tried while down"
                await asyncio.sleep(0.05)
            start = len(fake_apns.received)
            await fake_apns.start()
            up = time.monotonic()

            # Each push is due again within the longest backoff; 10 s more for a busy host.
            within = patient.push_backoff_max_seconds + 10
            await _eventually(
                delivered_since(start), within, f"cycle {cycle}: every push after APNs came back"
            )
            assert time.monotonic() - up < within
    finally:
        stop.set()
        await asyncio.wait_for(worker, 20)
    assert await _depth(database) == 0


# --- separate worker processes (PostgreSQL) ----------------------------------------------


def _worker_env(settings: Settings, database_url: str, **extra: str) -> dict[str, str]:
    return worker_env(
        database_url,
        PASSHOUSE_APNS_URL=settings.apns_url,
        PASSHOUSE_APNS_CA_FILE=str(settings.apns_ca_file),
        PASSHOUSE_PUSH_RATE_PER_SECOND="0",
        PASSHOUSE_PUSH_POLL_INTERVAL_SECONDS="0.2",
        **extra,
    )


async def test_several_workers_share_the_queue_and_send_each_push_once(
    database: Database,
    database_url: str,
    settings: Settings,
    fake_apns: FakeApns,
    pki: Pki,
    tmp_path: Path,
) -> None:
    requires_postgres(database)
    world = await _world(database, pki, 3000)
    env = _worker_env(settings, database_url, PASSHOUSE_PUSH_BATCH_SIZE="50")

    workers = [await start_worker(env, tmp_path, f"worker{i}") for i in range(3)]
    try:
        await _eventually(lambda: fake_apns.count >= 3000, 60, "every push")
        await asyncio.sleep(0.5)  # any duplicate would arrive now
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        codes = [await asyncio.wait_for(worker.wait(), 20) for worker in workers]

    assert sorted(fake_apns.tokens()) == sorted(world.tokens)  # each exactly once
    assert fake_apns.connections >= 3  # really several processes
    assert codes == [0, 0, 0]
    assert await _depth(database) == 0


async def test_kill_9_mid_fan_out_loses_no_push_and_repeats_only_the_last_moment(
    database: Database,
    database_url: str,
    settings: Settings,
    fake_apns: FakeApns,
    pki: Pki,
    tmp_path: Path,
) -> None:
    requires_postgres(database)
    world = await _world(database, pki, 400)
    # The default lease; one connection of 5 streams makes the in-flight count known.
    env = _worker_env(
        settings,
        database_url,
        PASSHOUSE_APNS_CONNECTIONS_PER_PASS_TYPE="1",
        PASSHOUSE_APNS_STREAMS_PER_CONNECTION="5",
    )
    defaults = Settings(_env_file=None)
    fake_apns.delay = 0.1  # 50 pushes a second: the kill lands mid-batch, 6 s into it

    first = await start_worker(env, tmp_path, "first")
    await _eventually(lambda: fake_apns.count >= 300, 60, "the fan-out to be well under way")
    first.kill()
    await first.wait()
    killed_at = time.monotonic()
    sent_before_kill = fake_apns.count
    fake_apns.delay = 0.0
    second = await start_worker(env, tmp_path, "second")
    try:
        await _eventually(lambda: set(fake_apns.tokens()) >= set(world.tokens), 90, "recovery")
        recovered_after = time.monotonic() - killed_at
        await asyncio.sleep(0.5)  # any late duplicate would arrive now
    finally:
        second.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(second.wait(), 20)

    tokens = fake_apns.tokens()
    repeated = len(tokens) - len(set(tokens))
    assert sent_before_kill < len(world.tokens)
    # The dead worker's lease (10 s) runs out within 10 s of the kill; 10 s more for
    # starting a worker on a busy host. A whole-batch lease of 60 s took over a minute.
    assert defaults.push_lease_seconds == 10
    assert recovered_after < defaults.push_lease_seconds + 10
    # Only what was unrecorded at the kill goes out twice: the 5 on the wire and at most
    # one heartbeat's worth of answers (50/s); the whole batch sent so far was 300.
    assert repeated <= 5 + 50 * heartbeat_seconds(defaults) + 20
    assert code == 0
    assert await _depth(database) == 0
