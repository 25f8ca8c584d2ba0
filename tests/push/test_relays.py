"""The Android apps' push relays: the worker against loopback fakes of each relay."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncConnection

import passhouse.storage.push_jobs as jobs
from passhouse.bootstrap import Runtime
from passhouse.push import transports
from passhouse.push.apns import make_sender
from passhouse.push.relays import make_relay_senders
from passhouse.push.sender import PushSender
from passhouse.settings import Settings
from passhouse.storage.database import Database
from passhouse.storage.sealing import Sealer
from passhouse.storage.tables import devices, push_attempts, push_jobs, registrations
from passhouse.worker import Senders, run_worker, send_due_pushes
from push.conftest import PASS_TYPE_ID, Pki, add_real_pass_type, requires_postgres
from push.fake_apns import FakeApns
from push.fake_relays import PASS2U, PASSWALLET, PASSWORKS, WALLETPASSES, FakeRelay
from push.rows import SECRET_KEY, World, make_world

PASS2U_KEY = "pass2u-test-key"
PASSWORKS_KEY = "passworks-wallet-app-key"
WALLETPASSES_KEY = "walletpasses-test-key"


@pytest.fixture
async def relays(pki: Pki) -> AsyncIterator[dict[str, FakeRelay]]:
    cert, key = pki.server_cert_pem, pki.server_key_pem
    fakes = {
        WALLETPASSES: FakeRelay(WALLETPASSES, WALLETPASSES_KEY, cert, key),
        PASS2U: FakeRelay(PASS2U, PASS2U_KEY, cert, key),
        PASSWORKS: FakeRelay(PASSWORKS, PASSWORKS_KEY, cert, key),
        # PassWallet's published push service is plain http.
        PASSWALLET: FakeRelay(PASSWALLET),
    }
    for fake in fakes.values():
        await fake.start()
    try:
        yield fakes
    finally:
        for fake in fakes.values():
            await fake.stop()


@pytest.fixture
def relay_settings(settings: Settings, relays: dict[str, FakeRelay], pki: Pki) -> Settings:
    return settings.model_copy(
        update={
            "relay_walletpasses_url": relays[WALLETPASSES].url,
            "relay_walletpasses_api_key": SecretStr(WALLETPASSES_KEY),
            "relay_pass2u_url": relays[PASS2U].url,
            "relay_pass2u_api_key": SecretStr(PASS2U_KEY),
            "relay_passworks_url": relays[PASSWORKS].url,
            "relay_passworks_api_key": SecretStr(PASSWORKS_KEY),
            "relay_ca_file": pki.ca_file,
            "relay_timeout_seconds": 10.0,  # a loaded CI machine is slow, not a relay down
            "passwallet_push_hosts": ("127.0.0.1",),
        }
    )


@pytest.fixture
async def senders(
    database: Database, relay_settings: Settings, sealer: Sealer
) -> AsyncIterator[dict[str, PushSender]]:
    made: dict[str, PushSender] = {
        transports.APNS: make_sender(relay_settings, database, sealer),
        **make_relay_senders(relay_settings),
    }
    try:
        yield made
    finally:
        for sender in made.values():
            await sender.aclose()


async def _register_as(
    conn: AsyncConnection, world: World, transport: str, *, push_service_url: str = ""
) -> list[str]:
    """Register one more device per pass of the world, through `transport`."""
    tokens = []
    for pass_id in world.pass_ids:
        token = f"{transport}-{secrets.token_hex(8)}"
        device_id = (
            await conn.execute(
                devices.insert()
                .values(device_library_id=f"dev-{token}", created_at=0)
                .returning(devices.c.id)
            )
        ).scalar_one()
        await conn.execute(
            registrations.insert().values(
                device_id=device_id,
                pass_id=pass_id,
                push_token=token,
                registered_at_ms=1_000,
                transport=transport,
                push_service_url=push_service_url,
            )
        )
        tokens.append(token)
    return tokens


async def _world_of(
    database: Database, pki: Pki, relays: dict[str, FakeRelay], count: int
) -> tuple[World, dict[str, list[str]]]:
    """`count` passes, each on one iPhone and on one phone of each Android app."""
    async with database.transaction() as conn:
        await add_real_pass_type(conn, pki)
        world = await make_world(conn, PASS_TYPE_ID, passes_count=count)
        tokens = {transports.APNS: world.tokens}
        for transport in (WALLETPASSES, PASS2U, PASSWORKS):
            tokens[transport] = await _register_as(conn, world, transport)
        tokens[PASSWALLET] = await _register_as(
            conn, world, PASSWALLET, push_service_url=relays[PASSWALLET].url
        )
    return world, tokens


async def _enqueue(database: Database, world: World) -> int:
    async with database.transaction() as conn:
        return await jobs.enqueue_for_template(
            conn, world.template_id, now_ms=int(time.time() * 1000)
        )


async def _depth(database: Database) -> int:
    async with database.reader() as conn:
        return await jobs.queue_depth(conn)


async def _drain(database: Database, senders: Senders, settings: Settings) -> None:
    deadline = time.monotonic() + 20
    while await _depth(database):
        assert time.monotonic() < deadline, "the queue did not drain"
        if not await send_due_pushes(database, senders, settings):
            await asyncio.sleep(0.02)


async def _outcomes(database: Database, transport: str) -> list[str]:
    async with database.reader() as conn:
        rows = await conn.execute(
            sa.select(push_attempts.c.outcome)
            .where(push_attempts.c.transport == transport)
            .order_by(push_attempts.c.id)
        )
        return list(rows.scalars())


async def test_a_change_reaches_every_device_once_through_its_own_transport(
    database: Database,
    relay_settings: Settings,
    senders: Senders,
    relays: dict[str, FakeRelay],
    fake_apns: FakeApns,
    pki: Pki,
) -> None:
    world, tokens = await _world_of(database, pki, relays, 30)

    queued = await _enqueue(database, world)
    await _drain(database, senders, relay_settings)

    assert queued == 5 * 30
    assert sorted(fake_apns.tokens()) == sorted(tokens[transports.APNS])
    for kind, fake in relays.items():
        assert sorted(fake.tokens()) == sorted(tokens[kind]), kind
        # Batched: the 30 pushes of one claimed batch went out in one call per relay.
        assert len(fake.received) == 1, kind
        assert {r.pass_type_id for r in fake.received} == {PASS_TYPE_ID}
    assert relays[PASSWALLET].received[0].path == "/PassWallet/v1/pushUpdates"
    assert relays[PASS2U].received[0].headers["x-api-key"] == PASS2U_KEY
    assert relays[PASSWORKS].received[0].headers["authorization"] == PASSWORKS_KEY


async def test_lists_are_cut_at_the_batch_size(
    database: Database,
    relay_settings: Settings,
    database_url: str,
    relays: dict[str, FakeRelay],
    pki: Pki,
) -> None:
    world, tokens = await _world_of(database, pki, relays, 25)
    small = relay_settings.model_copy(update={"relay_batch_size": 10})
    relay_only = make_relay_senders(small)
    await _enqueue(database, world)
    async with database.transaction() as conn:  # only the relays' pushes in this test
        await conn.execute(push_jobs.delete().where(push_jobs.c.transport == transports.APNS))

    try:
        await _drain(database, relay_only, small)
    finally:
        for sender in relay_only.values():
            await sender.aclose()

    for kind, fake in relays.items():
        assert sorted(len(r.tokens) for r in fake.received) == [5, 10, 10], kind
        assert sorted(fake.tokens()) == sorted(tokens[kind])


async def test_a_relay_that_is_down_gets_its_pushes_when_it_is_back(
    database: Database,
    relay_settings: Settings,
    senders: Senders,
    relays: dict[str, FakeRelay],
    pki: Pki,
) -> None:
    world, tokens = await _world_of(database, pki, relays, 5)
    passworks, pass2u = relays[PASSWORKS], relays[PASS2U]
    await passworks.stop()  # connection refused
    pass2u.status = 503  # up, but failing
    await _enqueue(database, world)

    await send_due_pushes(database, senders, relay_settings)
    retried = {
        PASSWORKS: await _outcomes(database, PASSWORKS),
        PASS2U: await _outcomes(database, PASS2U),
    }
    await passworks.start()
    pass2u.status = 200
    await _drain(database, senders, relay_settings)

    assert retried == {PASSWORKS: ["retry"] * 5, PASS2U: ["retry"] * 5}
    assert sorted(passworks.tokens()) == sorted(tokens[PASSWORKS])
    assert sorted(pass2u.tokens()) == sorted(tokens[PASS2U])
    assert sorted(pass2u.tokens(503)) == sorted(tokens[PASS2U])
    assert (await _outcomes(database, PASSWORKS))[5:] == ["delivered"] * 5


async def test_a_gone_token_loses_its_registration_and_the_rest_of_the_list_is_sent(
    database: Database,
    relay_settings: Settings,
    senders: Senders,
    relays: dict[str, FakeRelay],
    pki: Pki,
) -> None:
    world, tokens = await _world_of(database, pki, relays, 4)
    gone = tokens[WALLETPASSES][1]
    relays[WALLETPASSES].gone = {gone}
    await _enqueue(database, world)

    await _drain(database, senders, relay_settings)

    async with database.reader() as conn:
        left = set((await conn.execute(sa.select(registrations.c.push_token))).scalars())
    assert gone not in left
    assert set(tokens[WALLETPASSES]) - {gone} <= left
    # The list was refused whole, then resent one token at a time.
    assert sorted(relays[WALLETPASSES].tokens()) == sorted(set(tokens[WALLETPASSES]) - {gone})
    assert relays[WALLETPASSES].tokens(410).count(gone) >= 2
    # (A retry, if a call timed out on a loaded machine, is no outcome of the gone token.)
    outcomes = [o for o in await _outcomes(database, WALLETPASSES) if o != "retry"]
    assert sorted(outcomes) == ["delivered"] * 3 + ["device_gone"]


async def test_a_relay_without_its_key_is_skipped_and_its_pushes_kept_until_it_has_one(
    database: Database,
    relay_settings: Settings,
    relays: dict[str, FakeRelay],
    fake_apns: FakeApns,
    pki: Pki,
    sealer: Sealer,
) -> None:
    world, tokens = await _world_of(database, pki, relays, 3)
    # Parked for 5 minutes: only the next worker's start can send them within the test.
    relay_settings = relay_settings.model_copy(update={"push_backoff_max_seconds": 300.0})
    keyless = relay_settings.model_copy(update={"relay_pass2u_api_key": None})
    await _enqueue(database, world)
    stop = asyncio.Event()
    runtime = Runtime(settings=keyless, database=database, sealer=sealer)
    worker = asyncio.create_task(run_worker(runtime, stop))
    try:
        deadline = time.monotonic() + 20
        while len(relays[PASSWORKS].tokens()) < 3 or await _stats_skipped(database) < 3:
            assert time.monotonic() < deadline, "the other transports were not sent"
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await worker
    async with database.reader() as conn:
        stats = await jobs.push_stats(conn, int(time.time() * 1000))
        parked = (
            await conn.execute(
                sa.select(push_jobs.c.attempts).where(push_jobs.c.transport == PASS2U)
            )
        ).scalars()
        parked_attempts = list(parked)

    # Set the key, start a worker: the kept pushes go out at once.
    stop = asyncio.Event()
    runtime = Runtime(settings=relay_settings, database=database, sealer=sealer)
    worker = asyncio.create_task(run_worker(runtime, stop))
    try:
        deadline = time.monotonic() + 20
        while await _depth(database):
            assert time.monotonic() < deadline, "the parked pushes were not sent"
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await worker

    assert parked_attempts == [jobs.PARKED] * 3
    assert stats["parked"] == 3
    assert stats["queue_depth"] == 3
    assert stats["transports"][PASS2U]["skipped"] == 3
    assert stats["skipped_by_reason"] == {
        "pass2u: RelayNotConfigured: set PASSHOUSE_RELAY_PASS2U_API_KEY": 3
    }
    assert sorted(relays[PASS2U].tokens()) == sorted(tokens[PASS2U])
    assert sorted(relays[WALLETPASSES].tokens()) == sorted(tokens[WALLETPASSES])


async def _stats_skipped(database: Database) -> int:
    async with database.reader() as conn:
        return int((await jobs.push_stats(conn, int(time.time() * 1000)))["skipped"])


async def test_a_refused_key_parks_the_relay_instead_of_failing_its_tokens(
    database: Database,
    relay_settings: Settings,
    senders: Senders,
    relays: dict[str, FakeRelay],
    pki: Pki,
) -> None:
    world, _ = await _world_of(database, pki, relays, 2)
    relays[PASSWORKS].api_key = "a-rotated-key"
    await _enqueue(database, world)

    await send_due_pushes(database, senders, relay_settings)

    async with database.reader() as conn:
        reasons = (
            await conn.execute(
                sa.select(push_attempts.c.reason).where(push_attempts.c.transport == PASSWORKS)
            )
        ).scalars()
        attempts = (
            await conn.execute(
                sa.select(push_jobs.c.attempts).where(push_jobs.c.transport == PASSWORKS)
            )
        ).scalars()
        kept = list(attempts)
        reason_list = list(reasons)
    assert kept == [jobs.PARKED] * 2
    assert all(r.startswith("KeyRejected: 401") for r in reason_list), reason_list
    assert await _outcomes(database, PASSWORKS) == ["skipped"] * 2


@pytest.mark.parametrize(
    ("push_service_url", "allowed"),
    [
        ("http://10.0.0.1/PassWallet", ("127.0.0.1",)),
        ("http://169.254.169.254/latest", ("127.0.0.1",)),
        # A listed name that resolves to a loopback address not listed as an address.
        ("http://localhost:{port}/PassWallet", ("localhost",)),
    ],
)
async def test_a_push_service_not_allowed_at_send_time_is_never_called(
    database: Database,
    relay_settings: Settings,
    relays: dict[str, FakeRelay],
    pki: Pki,
    push_service_url: str,
    allowed: tuple[str, ...],
) -> None:
    fake = relays[PASSWALLET]
    async with database.transaction() as conn:
        await add_real_pass_type(conn, pki)
        world = await make_world(conn, PASS_TYPE_ID, passes_count=1)
        await conn.execute(registrations.delete())
        url = push_service_url.format(port=fake.port)
        await _register_as(conn, world, PASSWALLET, push_service_url=url)
    strict = relay_settings.model_copy(update={"passwallet_push_hosts": allowed})
    relay_only = make_relay_senders(strict)
    await _enqueue(database, world)

    try:
        await send_due_pushes(database, relay_only, strict)
    finally:
        for sender in relay_only.values():
            await sender.aclose()

    async with database.reader() as conn:
        reasons = list(
            (await conn.execute(sa.select(push_attempts.c.reason, push_attempts.c.outcome))).all()
        )
    assert fake.received == []
    assert len(reasons) == 1
    assert reasons[0][1] == "failed"
    assert reasons[0][0].startswith("PushServiceRefused:"), reasons


async def test_passwallet_over_https_checks_the_certificate_of_the_pinned_address(
    database: Database, relay_settings: Settings, pki: Pki
) -> None:
    fake = FakeRelay(PASSWALLET, cert_pem=pki.server_cert_pem, key_pem=pki.server_key_pem)
    await fake.start()
    async with database.transaction() as conn:
        await add_real_pass_type(conn, pki)
        world = await make_world(conn, PASS_TYPE_ID, passes_count=2)
        await conn.execute(registrations.delete())
        tokens = await _register_as(conn, world, PASSWALLET, push_service_url=fake.url)
    relay_only = make_relay_senders(relay_settings)
    await _enqueue(database, world)

    try:
        await _drain(database, relay_only, relay_settings)
    finally:
        await fake.stop()
        for sender in relay_only.values():
            await sender.aclose()

    assert sorted(fake.tokens()) == sorted(tokens)
    assert fake.received[0].headers["host"] == f"127.0.0.1:{fake.port}"


async def test_kill_9_of_a_worker_mid_relay_fan_out_loses_no_push(
    database: Database,
    database_url: str,
    relay_settings: Settings,
    relays: dict[str, FakeRelay],
    pki: Pki,
    tmp_path: Path,
) -> None:
    requires_postgres(database)
    async with database.transaction() as conn:
        await add_real_pass_type(conn, pki)
        world = await make_world(conn, PASS_TYPE_ID, passes_count=400)
        await conn.execute(registrations.update().values(transport=WALLETPASSES))
    await _enqueue(database, world)
    fake = relays[WALLETPASSES]
    fake.delay = 0.2  # calls of 5 tokens, 8 at once: about 200 pushes a second
    env = {k: v for k, v in os.environ.items() if not k.startswith("PASSHOUSE_")}
    env.update(
        PASSHOUSE_DATABASE_URL=database_url,
        PASSHOUSE_SECRET_KEY=SECRET_KEY,
        PASSHOUSE_DEV_MODE="false",
        PASSHOUSE_RELAY_WALLETPASSES_URL=fake.url,
        PASSHOUSE_RELAY_WALLETPASSES_API_KEY=WALLETPASSES_KEY,
        PASSHOUSE_RELAY_CA_FILE=str(pki.ca_file),
        PASSHOUSE_RELAY_BATCH_SIZE="5",
        PASSHOUSE_PUSH_BATCH_SIZE="100",
        PASSHOUSE_PUSH_RATE_PER_SECOND="0",
        PASSHOUSE_PUSH_POLL_INTERVAL_SECONDS="0.2",
    )

    async def start(name: str) -> asyncio.subprocess.Process:
        with (tmp_path / f"{name}.log").open("ab") as log:
            return await asyncio.create_subprocess_exec(
                sys.executable, "-m", "passhouse", "worker", env=env, stdout=log, stderr=log
            )

    async def until(check: Callable[[], bool], within: float) -> None:
        deadline = time.monotonic() + within
        while not check():
            assert time.monotonic() < deadline, (tmp_path / "first.log").read_text()[-2000:]
            await asyncio.sleep(0.02)

    first = await start("first")
    await until(lambda: len(fake.tokens()) >= 100, 60)
    first.kill()
    await first.wait()
    sent_before_kill = len(set(fake.tokens()))
    fake.delay = 0.0
    second = await start("second")
    try:
        await until(lambda: set(fake.tokens()) >= set(world.tokens), 90)
    finally:
        second.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(second.wait(), 20)

    assert sent_before_kill < len(world.tokens)
    assert set(fake.tokens()) == set(world.tokens)
    assert code == 0
    assert await _depth(database) == 0
