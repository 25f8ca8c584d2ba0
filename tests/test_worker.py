"""The worker's handling of each APNs outcome, with a recording sender (no network)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

import passhouse.storage.push_jobs as jobs
from passhouse.bootstrap import Runtime
from passhouse.metrics import PASS_TYPE_APNS_ERRORS, PUSH_STALLED
from passhouse.push.pacing import Pacer
from passhouse.push.sender import PushResult
from passhouse.settings import Settings
from passhouse.storage.database import Database
from passhouse.storage.tables import devices, pass_types, push_attempts, push_jobs, registrations
from passhouse.worker import backoff_seconds, batch_size, run_worker, send_due_pushes
from push.rows import World, add_pass_type, make_world

PT = "pass.test.worker"
OTHER_PT = "pass.test.worker.other"
OK = PushResult(200, latency=0.001)


class RecordingSender:
    """A PushSender that answers from a script and records every push."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self.script: dict[str, list[PushResult]] = {}
        self.forgotten: list[str] = []
        self.on_send: Callable[[str], object] | None = None

    async def send(
        self, push_token: str, pass_type_id: str, push_service_url: str = ""
    ) -> PushResult:
        self.sent.append((push_token, pass_type_id))
        if self.on_send is not None:
            await asyncio.sleep(0)
            result = self.on_send(push_token)
            if asyncio.iscoroutine(result):
                await result
        answers = self.script.get(push_token)
        if not answers:
            return OK
        return answers.pop(0) if len(answers) > 1 else answers[0]

    def stop_sending(self) -> None:
        pass

    async def forget_credentials(self, pass_type_id: str) -> None:
        self.forgotten.append(pass_type_id)

    async def aclose(self) -> None:
        pass

    def tokens(self) -> list[str]:
        return [token for token, _ in self.sent]


@pytest.fixture
def fast(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "push_backoff_base_seconds": 0.01,
            "push_backoff_max_seconds": 0.05,
            "push_max_attempts": 3,
            "push_rate_per_second": 0.0,
            "push_idle_poll_seconds": 0.01,
        }
    )


@pytest.fixture
async def world(database: Database) -> World:
    async with database.transaction() as conn:
        await add_pass_type(conn, PT)
        return await make_world(conn, PT, passes_count=4, registered_at_ms=1_000)


async def _enqueue_all(database: Database, world: World) -> None:
    async with database.transaction() as conn:
        await jobs.enqueue_for_template(conn, world.template_id, now_ms=int(time.time() * 1000))


async def _drain(database: Database, sender: RecordingSender, settings: Settings) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        await send_due_pushes(database, sender, settings)
        async with database.reader() as conn:
            if await jobs.queue_depth(conn) == 0:
                return
        await asyncio.sleep(0.01)
    raise AssertionError("the queue did not drain")


def _sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


async def _until(check: Callable[[], Awaitable[bool]], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def _attempts(database: Database) -> list[tuple[str, str, str | None]]:
    async with database.reader() as conn:
        rows = await conn.execute(
            sa.select(
                push_attempts.c.push_token, push_attempts.c.outcome, push_attempts.c.reason
            ).order_by(push_attempts.c.id)
        )
        return [tuple(row) for row in rows]


async def test_a_delivered_push_leaves_the_queue(
    database: Database, fast: Settings, world: World
) -> None:
    sender = RecordingSender()
    await _enqueue_all(database, world)

    claimed = await send_due_pushes(database, sender, fast)

    assert claimed == 4
    assert sorted(sender.tokens()) == sorted(world.tokens)
    async with database.reader() as conn:
        assert await jobs.queue_depth(conn) == 0
        stats = await jobs.push_stats(conn, int(time.time() * 1000))
    assert (stats["sent"], stats["failed"]) == (4, 0)


async def test_a_change_while_sending_tells_the_device_again(
    database: Database, fast: Settings, world: World
) -> None:
    sender = RecordingSender()
    await _enqueue_all(database, world)

    async def change_first_pass(token: str) -> None:
        if token == world.tokens[0] and sender.tokens().count(token) == 1:
            async with database.transaction() as conn:
                await jobs.enqueue_for_pass(conn, world.pass_ids[0], now_ms=1)

    sender.on_send = change_first_pass
    await _drain(database, sender, fast)

    assert sender.tokens().count(world.tokens[0]) == 2
    assert all(sender.tokens().count(token) == 1 for token in world.tokens[1:])


async def test_410_forgets_registrations_made_before_its_timestamp(
    database: Database, fast: Settings, world: World
) -> None:
    sender = RecordingSender()
    gone, kept = world.tokens[0], world.tokens[1]
    # `kept` registered again after APNs' timestamp: the device came back.
    async with database.transaction() as conn:
        await conn.execute(
            registrations.update()
            .where(registrations.c.push_token == kept)
            .values(registered_at_ms=9_000)
        )
    sender.script[gone] = [PushResult(410, "Unregistered", 5_000)]
    sender.script[kept] = [PushResult(410, "Unregistered", 5_000)]
    await _enqueue_all(database, world)

    await _drain(database, sender, fast)

    async with database.reader() as conn:
        tokens = (await conn.execute(sa.select(registrations.c.push_token))).scalars().all()
        device_count = await conn.scalar(sa.select(sa.func.count()).select_from(devices))
    assert sorted(tokens) == sorted(world.tokens[1:])
    assert device_count == 3
    assert (gone, "device_gone", "Unregistered") in await _attempts(database)


async def test_400_bad_device_token_forgets_the_token(
    database: Database, fast: Settings, world: World
) -> None:
    sender = RecordingSender()
    sender.script[world.tokens[2]] = [PushResult(400, "BadDeviceToken")]
    await _enqueue_all(database, world)

    await _drain(database, sender, fast)

    async with database.reader() as conn:
        tokens = (await conn.execute(sa.select(registrations.c.push_token))).scalars().all()
    assert world.tokens[2] not in tokens
    assert len(tokens) == 3


@pytest.mark.parametrize(
    "answer",
    [PushResult(410, "Unregistered", 5_000), PushResult(400, "BadDeviceToken")],
    ids=["410", "400"],
)
async def test_a_dead_token_is_forgotten_only_for_the_pass_type_pushed(
    database: Database, fast: Settings, world: World, answer: PushResult
) -> None:
    sender = RecordingSender()
    token = world.tokens[0]
    async with database.transaction() as conn:
        await add_pass_type(conn, OTHER_PT)
        other = await make_world(conn, OTHER_PT, passes_count=1, token_prefix="other")
        # The same phone (same push token) also holds a pass of another pass type.
        await conn.execute(
            registrations.update()
            .where(registrations.c.pass_id == other.pass_ids[0])
            .values(push_token=token)
        )
    sender.script[token] = [answer]
    async with database.transaction() as conn:
        await jobs.enqueue_for_pass(conn, world.pass_ids[0], now_ms=int(time.time() * 1000))

    await _drain(database, sender, fast)

    async with database.reader() as conn:
        left = (
            (
                await conn.execute(
                    sa.select(registrations.c.pass_id).where(registrations.c.push_token == token)
                )
            )
            .scalars()
            .all()
        )
    assert sender.sent == [(token, PT)]
    assert left == [other.pass_ids[0]]


@pytest.mark.parametrize(
    ("base", "cap"), [(1.0, 60.0), (30.0, 3600.0), (0.05, 0.2)], ids=["1s-1m", "30s-1h", "tests"]
)
def test_backoff_doubles_per_failure_up_to_the_cap(
    settings: Settings, base: float, cap: float
) -> None:
    configured = settings.model_copy(
        update={"push_backoff_base_seconds": base, "push_backoff_max_seconds": cap}
    )

    for attempts in range(40):
        ceiling = min(cap, base * 2.0**attempts)
        delays = [backoff_seconds(configured, attempts) for _ in range(50)]

        # Jitter takes up to half: each delay lies in [ceiling / 2, ceiling].
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays), (attempts, delays)


async def test_each_retry_waits_twice_as_long_up_to_the_cap(
    database: Database, fast: Settings, world: World
) -> None:
    settings = fast.model_copy(
        update={
            "push_backoff_base_seconds": 1.0,
            "push_backoff_max_seconds": 4.0,
            "push_max_attempts": 6,
        }
    )
    sender = RecordingSender()
    sender.script[world.tokens[0]] = [PushResult(503, "ServiceUnavailable")]
    async with database.transaction() as conn:
        await jobs.enqueue_for_pass(conn, world.pass_ids[0], now_ms=int(time.time() * 1000))

    waits = []
    for _ in range(5):
        before = int(time.time() * 1000)
        await send_due_pushes(database, sender, settings)
        after = int(time.time() * 1000)
        async with database.transaction() as conn:
            due = (await conn.execute(sa.select(push_jobs.c.due_at_ms))).scalar_one()
            # Due now, so the next attempt need not wait out the backoff.
            await conn.execute(push_jobs.update().values(due_at_ms=0))
        waits.append((due - after, due - before))

    for attempt, (shortest, longest) in enumerate(waits):
        ceiling_ms = min(4.0, 2.0**attempt) * 1000
        assert ceiling_ms / 2 <= longest, (attempt, waits)
        assert shortest <= ceiling_ms, (attempt, waits)


@pytest.mark.parametrize("status", [429, 500, 503, None])
async def test_temporary_failures_are_retried_with_backoff(
    database: Database, fast: Settings, world: World, status: int | None
) -> None:
    sender = RecordingSender()
    token = world.tokens[0]
    sender.script[token] = [PushResult(status, "TryLater"), PushResult(200)]
    await _enqueue_all(database, world)

    before = int(time.time() * 1000)
    await send_due_pushes(database, sender, fast)
    async with database.reader() as conn:
        row = (await conn.execute(sa.select(push_jobs.c.attempts, push_jobs.c.due_at_ms))).one()
    await _drain(database, sender, fast)

    assert row.attempts == 1
    # Backoff for the first failure: between half and all of the base delay.
    assert before + 5 <= row.due_at_ms <= int(time.time() * 1000) + 10
    assert sender.tokens().count(token) == 2


async def test_a_push_that_keeps_failing_is_recorded_as_failed(
    database: Database, fast: Settings, world: World
) -> None:
    sender = RecordingSender()
    sender.script[world.tokens[0]] = [PushResult(503, "ServiceUnavailable")]
    await _enqueue_all(database, world)

    await _drain(database, sender, fast)

    assert sender.tokens().count(world.tokens[0]) == fast.push_max_attempts
    async with database.reader() as conn:
        stats = await jobs.push_stats(conn, int(time.time() * 1000))
    assert stats["failed_by_reason"] == {"ServiceUnavailable": 1}
    assert stats["sent"] == 3


async def test_403_holds_the_pass_type_until_its_certificate_is_replaced(
    database: Database, fast: Settings, world: World
) -> None:
    sender = RecordingSender()
    for token in world.tokens:
        sender.script[token] = [PushResult(403, "BadCertificate"), PushResult(200)]
    await _enqueue_all(database, world)

    # The gauge is process-global: start from no sample, or another test's 1 would do.
    PASS_TYPE_APNS_ERRORS.clear()

    await send_due_pushes(database, sender, fast)
    again = await send_due_pushes(database, sender, fast)

    assert again == 0
    assert sender.forgotten == [PT]
    assert _sample("passhouse_pass_type_apns_blocked", pass_type_id=PT) == 1
    async with database.reader() as conn:
        error = await conn.scalar(sa.select(pass_types.c.apns_error))
        held = (await conn.execute(sa.select(push_jobs.c.attempts))).scalars().all()
        stats = await jobs.push_stats(conn, int(time.time() * 1000) + 1)
    assert error == "403 BadCertificate"
    assert held == [0, 0, 0, 0]
    assert stats["blocked_pass_types"][0]["apns_error"] == "403 BadCertificate"

    async with database.transaction() as conn:
        await jobs.clear_apns_error(conn, PT)
    await _drain(database, sender, fast)

    assert len(sender.sent) == 8


async def test_pacing_limits_the_push_rate(
    database: Database, fast: Settings, world: World
) -> None:
    sender = RecordingSender()
    async with database.transaction() as conn:
        more = await make_world(conn, PT, passes_count=16, token_prefix="more")
        await jobs.enqueue_for_template(conn, more.template_id, now_ms=0)
    pacer = Pacer(overall=100.0, per_pass_type=0.0)

    started = time.monotonic()
    await send_due_pushes(database, sender, fast, pacer=pacer)
    elapsed = time.monotonic() - started

    assert len(sender.sent) == 16
    # 16 pushes at 100/s, after a burst of up to 5: at least 0.1 s.
    assert elapsed >= 0.1


async def test_the_worker_wakes_soon_after_a_change_and_stops_on_request(
    runtime: Runtime, fast: Settings, world: World
) -> None:
    sender = RecordingSender()
    pushed = asyncio.Event()
    sender.on_send = lambda _token: pushed.set()
    # PostgreSQL: a 5 s fallback poll, so only the NOTIFY can wake the worker in time.
    slow_poll = fast.model_copy(update={"push_poll_interval_seconds": 5.0})
    runtime = Runtime(settings=slow_poll, database=runtime.database, sealer=runtime.sealer)
    stop = asyncio.Event()
    task = asyncio.create_task(run_worker(runtime, stop, sender=sender))
    await asyncio.sleep(0.2)

    started = time.monotonic()
    async with runtime.database.transaction() as conn:
        await jobs.enqueue_for_pass(conn, world.pass_ids[0], now_ms=int(time.time() * 1000))
    await asyncio.wait_for(pushed.wait(), 5)
    woke_after = time.monotonic() - started
    stop.set()
    await asyncio.wait_for(task, 5)

    assert sender.tokens() == [world.tokens[0]]
    assert woke_after < 1.0


def test_a_paced_batch_fits_well_within_its_lease(fast: Settings) -> None:
    paced = fast.model_copy(
        update={"push_lease_seconds": 60.0, "push_concurrency": 4, "push_batch_size": 500}
    )

    size = batch_size(paced, Pacer(overall=10.0, per_pass_type=0.0))

    # Four lanes of `size` pushes at 10/s take a quarter of the lease at most.
    assert size * 4 / 10.0 <= 60.0 / 4
    assert batch_size(paced, Pacer(overall=0.0, per_pass_type=0.0)) == 500


async def test_a_pass_shows_the_recent_attempts_to_its_devices(
    database: Database, fast: Settings, world: World
) -> None:
    sender = RecordingSender()
    token = world.tokens[0]
    sender.script[token] = [PushResult(503, "ServiceUnavailable"), PushResult(200)]
    await _enqueue_all(database, world)

    await _drain(database, sender, fast)

    async with database.reader() as conn:
        attempts = await jobs.recent_attempts_for_pass(conn, world.pass_ids[0])
        other = await jobs.recent_attempts_for_pass(conn, world.pass_ids[1])
    assert [(a["push_token"], a["outcome"], a["status"]) for a in attempts] == [
        (token, "delivered", 200),
        (token, "retry", 503),
    ]
    assert [a["push_token"] for a in other] == [world.tokens[1]]


async def test_stats_report_the_age_of_the_oldest_pending_push(
    database: Database, world: World
) -> None:
    async with database.transaction() as conn:
        await jobs.enqueue_for_pass(conn, world.pass_ids[0], now_ms=1_000)
        await jobs.enqueue_for_pass(conn, world.pass_ids[1], now_ms=5_000)

    async with database.reader() as conn:
        stats = await jobs.push_stats(conn, now_ms=11_000)

    assert stats["queue_depth"] == 2
    assert stats["due_now"] == 2
    assert stats["oldest_pending_age_seconds"] == 10.0


async def test_a_batch_slower_than_its_lease_keeps_it_and_records_answers_as_they_come(
    database: Database, fast: Settings, world: World
) -> None:
    leased = fast.model_copy(update={"push_lease_seconds": 2.0})
    sender = RecordingSender()
    release = asyncio.Event()
    slow = world.tokens[0]

    async def hold_the_first(token: str) -> None:
        if token == slow:
            await release.wait()

    sender.on_send = hold_the_first
    await _enqueue_all(database, world)
    claimed_at = int(time.time() * 1000)
    batch = asyncio.create_task(send_due_pushes(database, sender, leased))

    async def only_the_slow_one_left() -> bool:
        async with database.reader() as conn:
            rows = (await conn.execute(sa.select(push_jobs.c.push_token))).scalars().all()
        return rows == [slow]

    async def lease_renewed() -> bool:
        async with database.reader() as conn:
            due = await conn.scalar(sa.select(push_jobs.c.due_at_ms))
        return due is not None and due > claimed_at + 2000 + 100

    # The three quick answers are recorded while the slow push is still out...
    await _until(only_the_slow_one_left, 10, "answers recorded mid-batch")
    await _until(lease_renewed, 10, "the lease renewed")
    await asyncio.sleep(max(0.0, (claimed_at + 2050) / 1000 - time.time()))
    # ...and past its first lease the slow push is still not another worker's to send.
    other_worker = await send_due_pushes(database, RecordingSender(), leased)
    release.set()
    await asyncio.wait_for(batch, 10)

    assert other_worker == 0
    assert sorted(sender.tokens()) == sorted(world.tokens)
    async with database.reader() as conn:
        assert await jobs.queue_depth(conn) == 0


async def test_the_watchdog_reports_a_worker_stuck_on_pushes_it_cannot_finish(
    runtime: Runtime, fast: Settings, world: World
) -> None:
    watched = fast.model_copy(
        update={"push_stall_seconds": 0.3, "push_lease_seconds": 1.0, "push_concurrency": 1}
    )
    runtime = Runtime(settings=watched, database=runtime.database, sealer=runtime.sealer)
    sender = RecordingSender()
    release = asyncio.Event()

    async def hang(_token: str) -> None:
        await release.wait()  # a sender bug: no answer, ever

    sender.on_send = hang
    PUSH_STALLED.set(0)
    await _enqueue_all(runtime.database, world)
    stop = asyncio.Event()

    async def stalled_by_the_database() -> bool:
        async with runtime.database.reader() as conn:
            progress = await jobs.push_progress(
                conn, now_ms=int(time.time() * 1000), stall_seconds=0.3
            )
        return not progress.ok

    async def logged(event: str, reason: str = "") -> bool:
        return any(entry["event"] == event and reason in entry.get("reason", "") for entry in logs)

    with capture_logs() as logs:
        task = asyncio.create_task(run_worker(runtime, stop, sender=sender))
        try:
            # On a loaded machine the first report may be "due and nothing sent yet" (the
            # worker has not claimed the batch): the hung batch's report follows it.
            await _until(
                lambda: logged("push_worker_stalled", "no answer"), 10, "the stall to be logged"
            )
            gauge_when_stuck = _sample("passhouse_push_stalled")
            # The stuck batch's lease is left to run out: its pushes are due again, and
            # any process reading the database (stats, /metrics) sees the stall.
            await _until(stalled_by_the_database, 10, "the stall to show in the database")
            release.set()
            await _until(lambda: logged("push_worker_sending_again"), 10, "the recovery")

            async def drained_and_calm() -> bool:
                async with runtime.database.reader() as conn:
                    depth = await jobs.queue_depth(conn)
                return depth == 0 and _sample("passhouse_push_stalled") == 0

            # Under load a tick can still see a retried push due for 0.3 s: wait for the
            # queue to drain and the gauge to settle rather than sampling it once.
            await _until(drained_and_calm, 10, "the queue to drain and the gauge to clear")
        finally:
            release.set()
            stop.set()
            await asyncio.wait_for(task, 10)

    [stalled] = [
        entry
        for entry in logs
        if entry["event"] == "push_worker_stalled" and "no answer" in entry["reason"]
    ][:1]
    assert stalled["log_level"] == "error"
    assert gauge_when_stuck == 1
    assert _sample("passhouse_push_stalled") == 0
    async with runtime.database.reader() as conn:
        assert await jobs.queue_depth(conn) == 0
