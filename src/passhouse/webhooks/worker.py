"""The webhook worker: fan new events out to deliveries, deliver them, retry with backoff.

Like the push worker (worker.py): a batch is claimed (leased) in one short transaction,
sent outside any transaction, and its outcomes recorded in one transaction. A worker
killed mid-send leaves its deliveries to be claimed again when their lease runs out, so
an event can arrive twice (receivers de-duplicate by its id) but is never lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections.abc import Sequence
from typing import Any

import structlog

from passhouse.bootstrap import Runtime
from passhouse.metrics import WEBHOOK_ATTEMPTS, WEBHOOK_PENDING
from passhouse.settings import Settings
from passhouse.storage import pass_types, webhooks
from passhouse.storage.database import Database
from passhouse.storage.faults import database_fault
from passhouse.storage.sealing import Sealer
from passhouse.webhooks.sender import Attempt, WebhookSender, event_body

log = structlog.get_logger("passhouse.webhooks")

FAN_OUT_BATCH = 2000
IDLE_POLL_SECONDS = 0.2
HOUSEKEEPING_SECONDS = 60.0
# Lanes, each claiming CLAIM_FACTOR x PASSHOUSE_WEBHOOK_CONCURRENCY deliveries at a time:
# as many leased at once as four lanes of one each were (a slow endpoint's whole claim is
# still sent within the lease), in half the claim and record transactions per event.
LANES = 2
CLAIM_FACTOR = 2
EXPIRY_NOTICE_DAYS = (30, 7, 1)


def _now_ms() -> int:
    return int(time.time() * 1000)


def backoff_seconds(settings: Settings, attempts: int) -> float:
    """Exponential backoff with jitter (half fixed, half random) after `attempts` failures."""
    ceiling = min(
        settings.webhook_backoff_max_seconds,
        settings.webhook_backoff_base_seconds * 2.0 ** min(attempts, 32),
    )
    return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not secrecy


def make_sender(settings: Settings) -> WebhookSender:
    return WebhookSender(
        allow_private=settings.webhooks_allow_private,
        timeout=settings.webhook_timeout_seconds,
        max_connections=settings.webhook_concurrency,
    )


class Deliverer:
    """Delivers due events; shared by the worker's lanes (one in-flight cap per endpoint)."""

    def __init__(
        self, database: Database, sealer: Sealer, sender: WebhookSender, settings: Settings
    ) -> None:
        self.database = database
        self.sealer = sealer
        self.sender = sender
        self.settings = settings
        self._gates: dict[int, asyncio.Semaphore] = {}
        self._secrets: dict[tuple[int, bytes], str] = {}

    def _gate(self, endpoint_id: int) -> asyncio.Semaphore:
        gate = self._gates.get(endpoint_id)
        if gate is None:
            gate = self._gates[endpoint_id] = asyncio.Semaphore(self.settings.webhook_concurrency)
        return gate

    def _secret(self, endpoint: webhooks.EndpointRecord) -> str:
        key = (endpoint.id, endpoint.secret_encrypted)
        secret = self._secrets.get(key)
        if secret is None:
            secret = self.sealer.open(endpoint.secret_encrypted).decode()
            self._secrets[key] = secret
        return secret

    async def deliver_due(self, *, limit: int | None = None) -> int:
        """Claim one batch of due deliveries, send it, record it; returns how many."""
        settings = self.settings
        now = _now_ms()
        async with self.database.transaction() as conn:
            claimed, events, endpoints = await webhooks.claim_due(
                conn,
                now_ms=now,
                lease_ms=int(settings.webhook_lease_seconds * 1000),
                limit=limit or settings.webhook_concurrency * CLAIM_FACTOR,
            )
        if not claimed:
            return 0

        async def send(delivery: webhooks.ClaimedDelivery) -> Attempt:
            event = events[delivery.event_id]
            endpoint = endpoints[delivery.endpoint_id]
            body = event_body(event.public_id, event.type, event.created_at_ms, event.data)
            async with self._gate(endpoint.id):
                try:
                    return await self.sender.send(
                        endpoint.url,
                        self._secret(endpoint),
                        public_id=event.public_id,
                        event_type=event.type,
                        body=body,
                    )
                except Exception as error:  # a bug must not lose the batch's outcomes
                    log.exception("webhook_sender_error", endpoint_id=endpoint.id)
                    return Attempt(None, f"SenderError: {type(error).__name__}", 0.0)

        attempts = await asyncio.gather(*(send(d) for d in claimed))
        await self._finish(list(zip(claimed, attempts, strict=True)), events)
        return len(claimed)

    async def _finish(
        self,
        results: Sequence[tuple[webhooks.ClaimedDelivery, Attempt]],
        events: dict[int, webhooks.EventRecord],
    ) -> None:
        settings = self.settings
        now = _now_ms()
        outcomes: list[dict[str, Any]] = []
        succeeded: list[int] = []
        failed: list[int] = []
        counts = {"delivered": 0, "retry": 0, "failed": 0}
        for delivery, attempt in results:
            event = events[delivery.event_id]
            outcome: dict[str, Any] = {
                "delivery_id": delivery.id,
                "last_status": attempt.status,
                "last_error": attempt.error,
                "at_ms": now,
            }
            if attempt.ok:
                outcome.update(state=webhooks.DELIVERED, due_at_ms=None)
                succeeded.append(delivery.endpoint_id)
                counts["delivered"] += 1
            else:
                failed.append(delivery.endpoint_id)
                age_ms = now - event.created_at_ms
                # A ping is a test: its answer is what it is for, not retried.
                if event.type == webhooks.PING or age_ms >= settings.webhook_retry_seconds * 1000:
                    outcome.update(state=webhooks.FAILED, due_at_ms=None)
                    counts["failed"] += 1
                else:
                    delay = backoff_seconds(settings, delivery.attempts)
                    outcome.update(state=webhooks.PENDING, due_at_ms=now + int(delay * 1000))
                    counts["retry"] += 1
            outcomes.append(outcome)
        async with self.database.transaction() as conn:
            await webhooks.record_outcomes(conn, outcomes)
            disabled = await webhooks.mark_endpoint_health(
                conn,
                succeeded=sorted(set(succeeded)),
                failed=sorted(set(failed)),
                now_ms=now,
                disable_after_ms=settings.webhook_disable_after_seconds * 1000,
            )
            for row in disabled:
                since = time.strftime(
                    "%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(row.failing_since_ms) // 1000)
                )
                await webhooks.set_disabled_reason(
                    conn,
                    int(row.id),
                    f"Disabled automatically: every delivery has failed since {since}. "
                    "Fix the receiver, then enable it again (PATCH enabled=true, or "
                    "`passhouse webhook update ID --enable`).",
                )
        for label, count in counts.items():
            if count:
                WEBHOOK_ATTEMPTS.labels(label).inc(count)
        for row in disabled:
            log.error(
                "webhook_endpoint_disabled",
                endpoint_id=int(row.id),
                url=row.url,
                failing_since_ms=int(row.failing_since_ms),
                action="every delivery failed for PASSHOUSE_WEBHOOK_DISABLE_AFTER_SECONDS; "
                "enable it again once the receiver works",
            )


async def fan_out(database: Database, *, limit: int = FAN_OUT_BATCH) -> int:
    """One batch of new events into deliveries; returns the events handled."""
    async with database.transaction() as conn:
        return await webhooks.fan_out(conn, now_ms=_now_ms(), limit=limit)


async def announce_expiring_certificates(database: Database, *, now: int | None = None) -> int:
    """certificate.expiring at 30, 7 and 1 days before a certificate's end, once each
    (a certificate first seen closer than a threshold is announced once, for the nearest)."""
    now = int(time.time()) if now is None else now
    announced = 0
    async with database.transaction() as conn:
        for row in await pass_types.list_pass_types(conn):
            remaining = int(row.not_after) - now
            if remaining <= 0:
                continue
            due = [d for d in EXPIRY_NOTICE_DAYS if remaining <= d * 86400]
            new = [
                d
                for d in due
                if await webhooks.claim_certificate_notice(
                    conn, row.pass_type_id, int(row.not_after), d, now=now
                )
            ]
            if not new:
                continue
            ends = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(row.not_after)))
            if await webhooks.emit(
                conn,
                "certificate.expiring",
                {
                    "pass_type_id": row.pass_type_id,
                    "not_after": ends,
                    "days_before": min(new),
                    "days_left": math.floor(remaining / 86400),
                },
                now_ms=now * 1000,
            ):
                announced += 1
    return announced


async def housekeeping(database: Database, settings: Settings) -> None:
    await announce_expiring_certificates(database)
    async with database.transaction() as conn:
        await webhooks.prune(conn, older_than_ms=_now_ms() - settings.webhook_keep_seconds * 1000)
    async with database.reader() as conn:
        WEBHOOK_PENDING.set((await webhooks.delivery_summary(conn))["deliveries_pending"])


async def run_webhook_worker(
    runtime: Runtime, stop: asyncio.Event, *, sender: WebhookSender | None = None
) -> None:
    """Fan out and deliver webhook events until `stop` is set."""
    settings, database = runtime.settings, runtime.database
    sender = sender or make_sender(settings)
    deliverer = Deliverer(database, runtime.sealer, sender, settings)

    async def pause(seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await stop.wait()

    async def fan_out_loop() -> None:
        while not stop.is_set():
            try:
                handled = await fan_out(database)
            except Exception as error:
                _log_failure(database, "webhook_fan_out_failed", error)
                handled = 0
                await pause(1.0)
            if not handled:
                await pause(IDLE_POLL_SECONDS)

    async def lane() -> None:
        while not stop.is_set():
            try:
                claimed = await deliverer.deliver_due()
            except Exception as error:
                _log_failure(database, "webhook_batch_failed", error)
                claimed = 0
                await pause(1.0)
            if not claimed:
                await pause(IDLE_POLL_SECONDS)

    async def housekeeping_loop() -> None:
        while not stop.is_set():
            try:
                await housekeeping(database, settings)
            except Exception as error:
                _log_failure(database, "webhook_housekeeping_failed", error)
            await pause(HOUSEKEEPING_SECONDS)

    tasks = [asyncio.create_task(fan_out_loop()), asyncio.create_task(housekeeping_loop())]
    tasks += [asyncio.create_task(lane()) for _ in range(LANES)]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await sender.aclose()


def _log_failure(database: Database, event: str, error: Exception) -> None:
    fault = database_fault(error)
    if fault is None:
        log.error(event, exc_info=error)
    else:
        database.outages.report(fault, error)
