"""The worker against the fake APNs server: fan-out, outcomes, several workers, kill -9."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa

import passhouse.storage.push_jobs as jobs
from passhouse import issuing
from passhouse.push.apns import ApnsSender, make_sender
from passhouse.settings import Settings
from passhouse.storage.database import Database
from passhouse.storage.sealing import Sealer
from passhouse.storage.tables import pass_types, registrations
from passhouse.worker import send_due_pushes
from push import fake_apns as fake
from push.conftest import PASS_TYPE_ID, Pki, add_real_pass_type, requires_postgres
from push.fake_apns import FakeApns
from push.rows import SECRET_KEY, World, make_world


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


def _renewed(pki: Pki) -> tuple[bytes, bytes]:
    """A new certificate and key for the same pass type, from the same issuer (a renewal)."""
    old = x509.load_pem_x509_certificate(pki.credentials.cert_pem)
    issuer_key = serialization.load_pem_private_key(pki.credentials.wwdr_key_pem, None)
    assert isinstance(issuer_key, rsa.RSAPrivateKey)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    builder = (
        x509.CertificateBuilder()
        .subject_name(old.subject)
        .issuer_name(old.issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(old.not_valid_before_utc)
        .not_valid_after(old.not_valid_after_utc)
    )
    for extension in old.extensions:
        builder = builder.add_extension(extension.value, extension.critical)
    cert = builder.sign(issuer_key, hashes.SHA256())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


async def test_a_403_holds_pushes_until_a_new_certificate_is_uploaded(
    database: Database, settings: Settings, sender: ApnsSender, fake_apns: FakeApns, pki: Pki
) -> None:
    fake_apns.default = fake.BAD_CERTIFICATE
    world = await _world(database, pki, 20)
    await send_due_pushes(database, sender, settings)
    held = await send_due_pushes(database, sender, settings)
    async with database.reader() as conn:
        error = await conn.scalar(sa.select(pass_types.c.apns_error))
    cert_pem, key_pem = _renewed(pki)

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
        )
    resumed = await send_due_pushes(database, sender, settings)
    await _drain(database, sender, settings)

    assert (error, held) == ("403 BadCertificate", 0)
    assert resumed == 20
    assert set(fake_apns.tokens()) == set(world.tokens)


# --- separate worker processes (PostgreSQL) ----------------------------------------------


def _worker_env(settings: Settings, database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PASSHOUSE_")}
    env.update(
        PASSHOUSE_DATABASE_URL=database_url,
        PASSHOUSE_SECRET_KEY=SECRET_KEY,
        PASSHOUSE_DEV_MODE="false",
        PASSHOUSE_APNS_URL=settings.apns_url,
        PASSHOUSE_APNS_CA_FILE=str(settings.apns_ca_file),
        PASSHOUSE_PUSH_RATE_PER_SECOND="0",
        PASSHOUSE_PUSH_POLL_INTERVAL_SECONDS="0.2",
        **extra,
    )
    return env


async def _start_worker(env: dict[str, str], cwd: Path, name: str) -> asyncio.subprocess.Process:
    log = (cwd / f"{name}.log").open("ab")
    try:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "passhouse", "worker", env=env, cwd=cwd, stdout=log, stderr=log
        )
    finally:
        log.close()


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

    workers = [await _start_worker(env, tmp_path, f"worker{i}") for i in range(3)]
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


async def test_kill_9_mid_fan_out_loses_no_push(
    database: Database,
    database_url: str,
    settings: Settings,
    fake_apns: FakeApns,
    pki: Pki,
    tmp_path: Path,
) -> None:
    requires_postgres(database)
    world = await _world(database, pki, 400)
    env = _worker_env(
        settings,
        database_url,
        PASSHOUSE_PUSH_LEASE_SECONDS="3",
        PASSHOUSE_APNS_CONNECTIONS_PER_PASS_TYPE="1",
        PASSHOUSE_APNS_STREAMS_PER_CONNECTION="5",
    )
    fake_apns.delay = 0.1  # about 50 pushes a second: the kill lands mid fan-out

    first = await _start_worker(env, tmp_path, "first")
    await _eventually(lambda: fake_apns.count >= 60, 30, "the fan-out to start")
    first.kill()
    await first.wait()
    sent_before_kill = fake_apns.count
    fake_apns.delay = 0.0
    second = await _start_worker(env, tmp_path, "second")
    try:
        await _eventually(lambda: set(fake_apns.tokens()) >= set(world.tokens), 60, "recovery")
    finally:
        second.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(second.wait(), 20)

    assert sent_before_kill < len(world.tokens)
    assert code == 0
    assert await _depth(database) == 0
