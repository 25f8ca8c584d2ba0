"""The push worker: claim due pushes, send them, record what APNs answered.

Each batch is claimed in one short transaction (its rows leased) and sent outside any
transaction. While it is in flight a heartbeat records the answers that came back and
renews the lease of the pushes still out, so the lease can be short and a crash repeats
only what was on the wire; the rest is recorded in one transaction at the end. Several
batches are in flight at once so the database round trips overlap with sending. A
watchdog notices when pushes are due and nothing is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
import structlog

from passhouse import lifecycle
from passhouse.bootstrap import Runtime
from passhouse.bulk import run_job_worker
from passhouse.google_sync import run_google_sync
from passhouse.issuing import PassBuilder
from passhouse.metrics import (
    APNS_LATENCY,
    PASS_TYPE_APNS_ERRORS,
    PUSH_QUEUE_DEPTH,
    PUSH_STALLED,
    PUSHES,
)
from passhouse.push import transports
from passhouse.push.apns import make_sender
from passhouse.push.pacing import Pacer
from passhouse.push.relays import RelaySender, make_relay_senders
from passhouse.push.sender import NOT_SENT, PushOutcome, PushResult, PushSender
from passhouse.settings import Settings
from passhouse.storage import pass_types, push_jobs, webhooks
from passhouse.storage.database import Database
from passhouse.storage.faults import database_fault
from passhouse.storage.push_jobs import ClaimedPush
from passhouse.webhooks.worker import run_webhook_worker

log = structlog.get_logger("passhouse.worker")

HOUSEKEEPING_SECONDS = 10.0
# The longest the lifecycle loop sleeps: a scheduled change made in another process is
# applied at most this long after it is due (the issue asks for 2 s).
LIFECYCLE_POLL_SECONDS = 1.0

# The sender of each transport (push/transports.py); a lone sender is APNs'.
Senders = Mapping[str, PushSender]


def _senders(sender: PushSender | Senders) -> Senders:
    return sender if isinstance(sender, Mapping) else {transports.APNS: sender}


def _now_ms() -> int:
    return int(time.time() * 1000)


def backoff_seconds(settings: Settings, attempts: int) -> float:
    """Exponential backoff with jitter (half fixed, half random) after `attempts` failures."""
    ceiling = min(
        settings.push_backoff_max_seconds,
        settings.push_backoff_base_seconds * 2.0 ** min(attempts, 32),
    )
    return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not secrecy


def batch_size(settings: Settings, pacer: Pacer | None) -> int:
    size = settings.push_batch_size
    rate = pacer.slowest_rate if pacer is not None else 0.0
    if rate > 0:
        # Pushes waiting for the pacer are held from other workers: keep a paced batch to
        # about a quarter of a lease. The lanes of a worker share one pacer, so their
        # batches wait for each other.
        budget = rate * settings.push_lease_seconds / (4 * settings.push_concurrency)
        size = min(size, max(1, int(budget)))
    return size


class _Batch:
    """A claimed batch while it is sent: the pushes still out and the answers not yet
    recorded."""

    def __init__(self, claimed: Sequence[ClaimedPush]) -> None:
        self.out = {job.id: job for job in claimed}
        self.answered: list[tuple[ClaimedPush, PushResult]] = []
        self.last_answer = self.renewed_at = time.monotonic()

    def answer(self, job: ClaimedPush, result: PushResult) -> None:
        del self.out[job.id]
        self.answered.append((job, result))
        self.last_answer = time.monotonic()

    def take(self) -> list[tuple[ClaimedPush, PushResult]]:
        answered, self.answered = self.answered, []
        return answered

    def put_back(self, answered: list[tuple[ClaimedPush, PushResult]]) -> None:
        self.answered[:0] = answered


class Watchdog:
    """This worker's batches in flight, to tell a stuck worker from a busy one."""

    def __init__(self, stall_seconds: float) -> None:
        self.stall_seconds = stall_seconds
        self.batches: set[_Batch] = set()

    def stuck_batches(self) -> int:
        """Batches in flight that have had no answer at all for the stall time."""
        now = time.monotonic()
        return sum(1 for b in self.batches if now - b.last_answer >= self.stall_seconds)


async def send_due_pushes(
    database: Database,
    sender: PushSender | Senders,
    settings: Settings,
    *,
    pacer: Pacer | None = None,
    limit: int | None = None,
    stop: asyncio.Event | None = None,
    watchdog: Watchdog | None = None,
) -> int:
    """Claim one batch of due pushes, send it, and finish it; returns how many were claimed.

    Once `stop` is set, pushes of the batch that have not left yet are handed back. Each
    push goes through the sender of its transport.
    """
    senders = _senders(sender)
    now = _now_ms()
    async with database.transaction() as conn:
        claimed = await push_jobs.claim_due(
            conn,
            now_ms=now,
            lease_ms=int(settings.push_lease_seconds * 1000),
            limit=limit or batch_size(settings, pacer),
        )
    if not claimed:
        return 0
    batch = _Batch(claimed)

    async def send(job: ClaimedPush) -> None:
        batch.answer(job, await _send(senders, pacer, job, stop))

    sent = asyncio.Event()
    heartbeat = asyncio.create_task(_heartbeat(database, senders, settings, batch, sent))
    if watchdog is not None:
        watchdog.batches.add(batch)
    try:
        await asyncio.gather(*(send(job) for job in claimed))
    finally:
        sent.set()
        await heartbeat  # never mid-transaction when the batch is finished below
        if watchdog is not None:
            watchdog.batches.discard(batch)
    await _finish(database, senders, settings, batch.take())
    return len(claimed)


def heartbeat_seconds(settings: Settings) -> float:
    # Also how often answers are recorded mid-batch: at most this much sending is
    # repeated after a crash, besides what was on the wire.
    return min(1.0, settings.push_lease_seconds / 4)


async def _heartbeat(
    database: Database,
    senders: Senders,
    settings: Settings,
    batch: _Batch,
    sent: asyncio.Event,
) -> None:
    """Until the batch is sent: record its answers so far and renew the lease of the rest."""
    while not sent.is_set():
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(heartbeat_seconds(settings)):
                await sent.wait()
        if sent.is_set():
            return
        answered = batch.take()
        now = time.monotonic()
        # Renewed with two thirds of the lease still to go: margin for a late heartbeat,
        # and no UPDATE of the whole batch every second. A batch with no answer for the
        # stall time is stuck (the watchdog says so): its lease is left to run out, so
        # that another worker can send its pushes.
        stuck = now - batch.last_answer >= settings.push_stall_seconds
        renewing = not stuck and now - batch.renewed_at >= settings.push_lease_seconds / 3
        renew = list(batch.out) if renewing else []
        try:
            await _finish(database, senders, settings, answered, renew=renew)
        except Exception:  # the database went away: keep the answers for the next try
            batch.put_back(answered)
            log.warning("push_heartbeat_failed", exc_info=True)
        else:
            if renewing:
                batch.renewed_at = now


async def _send(
    senders: Senders, pacer: Pacer | None, job: ClaimedPush, stop: asyncio.Event | None
) -> PushResult:
    sender = senders.get(job.transport)
    if sender is None:
        reason = f"NoSender: this worker has no sender for {job.transport!r}"
        return PushResult(None, reason, verdict=PushOutcome.SKIPPED)
    if pacer is not None:
        await pacer.acquire(job.pass_type_id)
    if stop is not None and stop.is_set():
        return PushResult(None, NOT_SENT)
    try:
        if job.push_service_url:
            return await sender.send(job.push_token, job.pass_type_id, job.push_service_url)
        return await sender.send(job.push_token, job.pass_type_id)
    except Exception as error:  # a bug in a sender must not lose the batch's outcomes
        log.exception("push_sender_error", pass_type_id=job.pass_type_id)
        return PushResult(None, f"SenderError: {type(error).__name__}")


# One warning a minute per pass type (APNs) or transport (a relay) while it keeps
# failing: visible, never a flood.
_WARNING_INTERVAL_MS = 60_000
_last_warning: dict[tuple[str, str], int] = {}


def _warn_once_a_minute(event: str, key: str, now: int, **fields: Any) -> None:
    if now - _last_warning.get((event, key), 0) < _WARNING_INTERVAL_MS:
        return
    _last_warning[(event, key)] = now
    log.warning(event, **fields)


def _warn_retrying(job: ClaimedPush, reason: str | None, now: int) -> None:
    action = "retrying with backoff; see GET /api/v1/push/stats"
    if job.transport == transports.APNS:
        where = {"pass_type_id": job.pass_type_id}
        _warn_once_a_minute(
            "apns_push_retrying", job.pass_type_id, now, **where, reason=reason, action=action
        )
    else:
        where = {"transport": job.transport}
        _warn_once_a_minute(
            "relay_push_retrying", job.transport, now, **where, reason=reason, action=action
        )


async def _finish(
    database: Database,
    senders: Senders,
    settings: Settings,
    answered: Sequence[tuple[ClaimedPush, PushResult]],
    *,
    renew: Sequence[int] = (),
) -> None:
    """Record answers in one transaction, and renew the lease of the `renew` job ids."""
    if not answered and not renew:
        return
    now = _now_ms()
    done: list[ClaimedPush] = []
    gone: list[tuple[ClaimedPush, int]] = []
    retry: list[tuple[ClaimedPush, int]] = []
    held: list[int] = []
    parked: list[ClaimedPush] = []
    blocked: dict[str, str] = {}
    attempts: list[dict[str, Any]] = []
    counted: list[PushResult] = []
    failed: list[tuple[ClaimedPush, PushResult]] = []
    for job, result in answered:
        if result.status is None and result.reason == NOT_SENT:
            held.append(job.id)  # shutting down: due again at once, attempts unchanged
            continue
        outcome = result.outcome
        counted.append(result)
        stored = push_jobs.DELIVERED
        if outcome is PushOutcome.DELIVERED:
            done.append(job)
        elif outcome is PushOutcome.DEVICE_GONE:
            # A 400 BadDeviceToken carries no timestamp: the token is bad as of now.
            gone.append((job, result.timestamp_ms or now))
            done.append(job)
            stored = push_jobs.DEVICE_GONE
        elif outcome is PushOutcome.RETRY and job.attempts + 1 < settings.push_max_attempts:
            due = now + int(backoff_seconds(settings, max(job.attempts, 0)) * 1000)
            retry.append((job, due))
            stored = push_jobs.RETRY
            _warn_retrying(job, result.reason, now)
        elif outcome is PushOutcome.SKIPPED:
            parked.append(job)
            _warn_once_a_minute(
                "relay_push_skipped",
                job.transport,
                now,
                transport=job.transport,
                reason=result.reason,
                action="kept in the queue and tried again later; see GET /api/v1/push/stats",
            )
            if job.attempts == push_jobs.PARKED:
                continue  # recorded when it was first parked: one record, not one per look
            stored = push_jobs.SKIPPED
        elif outcome is PushOutcome.CREDENTIALS_REJECTED:
            held.append(job.id)
            blocked[job.pass_type_id] = f"{result.status} {result.reason or 'Forbidden'}"
            stored = push_jobs.BLOCKED
        else:
            # Out of attempts, or refused for good: give up (unless a newer change came).
            done.append(job)
            stored = push_jobs.FAILED
            failed.append((job, result))
        attempts.append(
            {
                "push_token": job.push_token,
                "pass_type_id": job.pass_type_id,
                "transport": job.transport,
                "outcome": stored,
                "status": result.status,
                "reason": result.reason,
                "latency_ms": round(result.latency * 1000, 3),
                "at_ms": now,
            }
        )
    async with database.transaction() as conn:
        await push_jobs.renew_lease(
            conn, renew, until_ms=now + int(settings.push_lease_seconds * 1000)
        )
        for job, unregistered_at in gone:
            await push_jobs.forget_push_token(
                conn,
                job.push_token,
                job.pass_type_id,
                unregistered_at_ms=unregistered_at,
                transport=job.transport,
            )
        await push_jobs.complete(conn, done, now_ms=now)
        await push_jobs.reschedule(conn, retry)
        await push_jobs.release(conn, held, now_ms=now)
        await push_jobs.park(
            conn, parked, until_ms=now + int(settings.push_backoff_max_seconds * 1000)
        )
        for pass_type_id, reason in blocked.items():
            await webhooks.announce_apns_blocked(conn, pass_type_id, reason, now_ms=now)
            await push_jobs.set_apns_error(conn, pass_type_id, reason, now_ms=now)
        await push_jobs.record_attempts(conn, attempts)
        await webhooks.emit_push_failures(conn, failed, now_ms=now)
    # Counted once recorded: the answers of a heartbeat that failed are recorded again.
    for result in counted:
        PUSHES.labels(result.outcome.value).inc()
        if result.status is not None and result.verdict is None:  # APNs' own answers
            APNS_LATENCY.observe(result.latency)
    for pass_type_id, reason in blocked.items():
        PASS_TYPE_APNS_ERRORS.labels(pass_type_id).set(1)
        log.error(
            "apns_credentials_rejected",
            pass_type_id=pass_type_id,
            reason=reason,
            action="pushes for this pass type are held until its certificate is replaced",
        )
        await senders[transports.APNS].forget_credentials(pass_type_id)


async def _housekeeping(database: Database, settings: Settings) -> None:
    """Refresh the queue gauges and prune old push attempts."""
    now = _now_ms()
    async with database.reader() as conn:
        PUSH_QUEUE_DEPTH.set(await push_jobs.queue_depth(conn))
        blocked = await push_jobs.blocked_pass_types(conn)
    for metric in list(PASS_TYPE_APNS_ERRORS.collect()):
        for sample in metric.samples:
            pass_type_id = sample.labels.get("pass_type_id", "")
            if pass_type_id not in blocked:
                PASS_TYPE_APNS_ERRORS.labels(pass_type_id).set(0)
    for pass_type_id, (reason, _at) in blocked.items():
        PASS_TYPE_APNS_ERRORS.labels(pass_type_id).set(1)
        log.error("apns_pass_type_blocked", pass_type_id=pass_type_id, reason=reason)
    async with database.transaction() as conn:
        await push_jobs.prune_attempts(
            conn, older_than_ms=now - settings.push_attempts_keep_seconds * 1000
        )


def watchdog_seconds(settings: Settings) -> float:
    return min(HOUSEKEEPING_SECONDS, settings.push_stall_seconds / 4)


async def _stall_reason(database: Database, settings: Settings, watchdog: Watchdog) -> str | None:
    """Why sending counts as stalled, or None: a batch of this worker has had no answer
    for the stall time, or (whoever should send them) pushes are due and none is sent."""
    stuck = watchdog.stuck_batches()
    if stuck:
        return (
            f"{stuck} batch(es) of pushes in flight have had no answer for"
            f" {settings.push_stall_seconds:g} s; their leases are left to run out"
        )
    async with database.reader() as conn:
        progress = await push_jobs.push_progress(
            conn, now_ms=_now_ms(), stall_seconds=settings.push_stall_seconds
        )
    return None if progress.ok else progress.reason


class _Doorbell:
    """Wakes idle lanes: PostgreSQL NOTIFY from enqueue, else a poll of the due index."""

    def __init__(self, database: Database, settings: Settings) -> None:
        self._database = database
        self._event = asyncio.Event()
        self._listening = False
        self._poll = settings.push_idle_poll_seconds
        self._listen_poll = settings.push_poll_interval_seconds

    def ring(self) -> None:
        self._event.set()

    async def wait_for_work(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            async with self._database.reader() as conn:
                due = await push_jobs.next_due_at(conn)
            now = _now_ms()
            if due is not None and due <= now:
                return
            timeout = self._listen_poll if self._listening else self._poll
            if due is not None:
                timeout = min(timeout, (due - now) / 1000)
            rung = False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await _first(self._event.wait(), stop.wait())
                rung = True
            self._event.clear()
            if rung:
                return  # a NOTIFY (or stop): claim at once, skip the due query

    async def listen(self, stop: asyncio.Event) -> None:
        """Keep a LISTEN connection open (PostgreSQL only); reconnect if it drops."""
        import asyncpg  # type: ignore[import-untyped]

        url = sa.make_url(self._database.url).set(drivername="postgresql")
        dsn = url.render_as_string(hide_password=False)
        while not stop.is_set():
            connection: Any = None
            try:
                connection = await asyncpg.connect(dsn)
                await connection.add_listener(
                    push_jobs.NOTIFY_CHANNEL, lambda *_: self._event.set()
                )
                self._listening = True
                self._event.set()  # anything queued while we were not listening
                while not stop.is_set() and not connection.is_closed():
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(1.0):
                            await stop.wait()
            except (OSError, asyncpg.PostgresError) as error:
                if (fault := database_fault(error)) is not None:
                    self._database.outages.report(fault, error)
                else:
                    log.warning("push_listen_failed", error=str(error))
            finally:
                self._listening = False
                if connection is not None and not connection.is_closed():
                    await connection.close()
            if not stop.is_set():
                await asyncio.sleep(1.0)


async def run_lifecycle(runtime: Runtime, stop: asyncio.Event) -> None:
    """Until `stop`: apply due scheduled changes, render expiry that a template change made
    unknown, void expired passes (PASSHOUSE_VOID_EXPIRED) and retire ended ones.

    It sleeps until the next known due time, at most LIFECYCLE_POLL_SECONDS: a change that
    is overdue after a restart is applied on the first round.
    """
    settings, database = runtime.settings, runtime.database
    builder = PassBuilder(runtime.sealer, settings.web_service_url)
    while not stop.is_set():
        wait = LIFECYCLE_POLL_SECONDS
        try:
            while not stop.is_set() and await lifecycle.apply_due_change(database, builder):
                pass
            busy = await lifecycle.refresh_unknown_expiry(database, builder)
            if settings.void_expired:
                busy += await lifecycle.void_expired(database)
            busy += await lifecycle.retire_ended(database, settings.retention_days)
            if busy:
                wait = 0.0  # a full batch may have more behind it
            else:
                wait = min(
                    wait, await _seconds_to_next(database, void_expired=settings.void_expired)
                )
        except Exception as error:  # the database went away: log, wait, carry on
            _log_failure(database, "lifecycle_failed", error)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await stop.wait()


async def _seconds_to_next(database: Database, *, void_expired: bool) -> float:
    now = time.time()
    due = [await lifecycle.next_change_due_ms(database)]
    if void_expired:
        expiry = await lifecycle.next_expiry(database)
        due.append(None if expiry is None else expiry * 1000)
    known = [value / 1000 - now for value in due if value is not None]
    return max(0.0, min(known, default=LIFECYCLE_POLL_SECONDS))


async def _first(*awaitables: Any) -> None:
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


async def run_worker(
    runtime: Runtime,
    stop: asyncio.Event,
    *,
    sender: PushSender | None = None,
    relays: Senders | None = None,
) -> None:
    """Send pushes until `stop` is set; then finish the batches in flight and return.

    `sender` is APNs' (made from the settings when None), `relays` the Android apps'
    relays (made from the settings when None).
    """
    settings, database = runtime.settings, runtime.database
    apns = sender or make_sender(settings, database, runtime.sealer)
    if relays is None:
        relays = make_relay_senders(settings)
    senders = {transports.APNS: apns, **relays}
    await _unpark_configured(database, senders)
    pacer = Pacer(settings.push_rate_per_second, settings.push_rate_per_pass_type)
    doorbell = _Doorbell(database, settings)
    watchdog = Watchdog(settings.push_stall_seconds)

    async def lane() -> None:
        while not stop.is_set():
            try:
                claimed = await send_due_pushes(
                    database, senders, settings, pacer=pacer, stop=stop, watchdog=watchdog
                )
            except Exception as error:  # the database went away: log, wait, carry on
                _log_failure(database, "push_batch_failed", error)
                claimed = 0
                await asyncio.sleep(1.0)
            if not claimed:
                try:
                    await doorbell.wait_for_work(stop)
                except Exception as error:
                    _log_failure(database, "push_poll_failed", error)
                    await asyncio.sleep(1.0)

    fingerprints: dict[str, str] = {}

    async def reload_replaced_credentials() -> None:
        # A renewed certificate (no 403 first) must reach this process's open APNs
        # connections too: drop the pool of any pass type whose credentials changed.
        async with database.reader() as conn:
            current = await pass_types.credential_fingerprints(conn)
        for pass_type_id, fingerprint in current.items():
            known = fingerprints.get(pass_type_id)
            if known is not None and known != fingerprint:
                log.info("apns_credentials_reloaded", pass_type_id=pass_type_id)
                await apns.forget_credentials(pass_type_id)
        fingerprints.clear()
        fingerprints.update(current)

    async def housekeeping() -> None:
        while not stop.is_set():
            try:
                await _housekeeping(database, settings)
                await reload_replaced_credentials()
            except Exception as error:
                _log_failure(database, "push_housekeeping_failed", error)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(HOUSEKEEPING_SECONDS):
                    await stop.wait()

    async def watch() -> None:
        stalled = False
        logged_at = -math.inf
        while not stop.is_set():
            # Waiting first: a worker starting on a backlog needs a moment to record its
            # first attempts before "due and nothing sent" means anything.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(watchdog_seconds(settings)):
                    await stop.wait()
            if stop.is_set():
                return
            try:
                reason = await _stall_reason(database, settings, watchdog)
            except Exception:
                log.exception("push_watchdog_failed")
                reason = None
            PUSH_STALLED.set(1 if reason else 0)
            now = time.monotonic()
            if reason and now - logged_at >= settings.push_stall_seconds:
                logged_at = now
                log.error(
                    "push_worker_stalled",
                    reason=reason,
                    action="pushes are not being sent; see GET /api/v1/push/stats",
                )
            elif stalled and not reason:
                logged_at = -math.inf
                log.warning("push_worker_sending_again")
            stalled = bool(reason)

    async def stop_sending_on_stop() -> None:
        await stop.wait()
        for each in senders.values():
            each.stop_sending()

    log.info("push_worker_started", lanes=settings.push_concurrency, dialect=database.dialect)
    background = [
        asyncio.create_task(housekeeping()),
        asyncio.create_task(watch()),
        asyncio.create_task(stop_sending_on_stop()),
        asyncio.create_task(run_lifecycle(runtime, stop)),
        # Google Wallet objects: their own queue and client, the same stop and database.
        asyncio.create_task(run_google_sync(runtime, stop)),
    ]
    if not database.is_sqlite:
        background.append(asyncio.create_task(doorbell.listen(stop)))
    # Webhook events go out from the same worker process (webhooks/worker.py).
    background.append(asyncio.create_task(run_webhook_worker(runtime, stop)))
    # Bulk jobs (CSV imports, bulk updates): one job at a time per worker, in chunks.
    jobs_builder = PassBuilder(runtime.sealer, settings.web_service_url)
    background.append(asyncio.create_task(run_job_worker(database, jobs_builder, settings, stop)))
    try:
        await asyncio.gather(*(lane() for _ in range(settings.push_concurrency)))
    finally:
        stop.set()
        await asyncio.gather(*background, return_exceptions=True)
        for each in senders.values():
            await each.aclose()
        log.info("push_worker_stopped")


async def _unpark_configured(database: Database, senders: Senders) -> None:
    """Pushes parked while a relay had no key go out now that this worker can send them."""
    ready = [
        transport
        for transport, sender in senders.items()
        if isinstance(sender, RelaySender) and sender.missing_key() is None
    ]
    try:
        async with database.transaction() as conn:
            woken = await push_jobs.unpark(conn, ready, now_ms=_now_ms())
    except Exception as error:  # the lanes retry the database; this is only a head start
        _log_failure(database, "push_unpark_failed", error)
        return
    if woken:
        log.info("relay_pushes_unparked", count=woken)


def _log_failure(database: Database, event: str, error: Exception) -> None:
    """A database outage is logged once, by database.outages; anything else in full."""
    fault = database_fault(error)
    if fault is None:
        log.error(event, exc_info=error)
    else:
        database.outages.report(fault, error)
