"""The Google sync worker: claim due class and object syncs, write each to Google, record
what Google answered.

A batch is claimed (leased) in one short transaction and written outside any; each job's
outcome is recorded in its own short transaction as it comes back. A worker killed mid
batch leaves its leased jobs to be claimed again when the lease runs out: writes are
idempotent (insert, 409 -> patch with the whole desired state), so repeating one is
harmless. The queue has one row per class or object, so writes to one object are never
concurrent, and a burst of changes is written once, with the newest state.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
import structlog

from passhouse.bootstrap import Runtime
from passhouse.google import mapping
from passhouse.google.render import parse_config, render_class, render_object
from passhouse.google.service_account import ServiceAccount
from passhouse.issuing.google_wallet import CALLBACK_PATH, account_of, image_urls
from passhouse.metrics import GOOGLE_FAILED_OBJECTS, GOOGLE_QUEUE_DEPTH, GOOGLE_SYNCS
from passhouse.pkpass.errors import PkpassError
from passhouse.pkpass.template import Template
from passhouse.push.google import DONE, FAILED, QUOTA, RETRY, GoogleAnswer, GoogleWalletClient
from passhouse.settings import Settings
from passhouse.storage import google_wallet as store
from passhouse.storage import templates
from passhouse.storage.database import Database
from passhouse.storage.faults import database_fault
from passhouse.storage.google_wallet import CLASS, ClaimedSync
from passhouse.storage.tables import google_objects

log = structlog.get_logger("passhouse.google")

MAX_MESSAGES = 10
NOTIFY_LIMIT = 3  # Google's limit per object per 24 hours
DAY_MS = 86_400_000
# Top-level keys Google or passhouse manages apart from the rendered object: never nulled.
_KEPT_KEYS = {"messages", "hasUsers", "classReference", "notifyPreference"}


def make_client(settings: Settings) -> GoogleWalletClient:
    return GoogleWalletClient(
        settings.google_api_url,
        ca_file=settings.google_ca_file,
        timeout_seconds=settings.google_request_timeout_seconds,
        rate_per_second=settings.google_rate_per_second,
        max_connections=settings.google_concurrency,
    )


def _now_ms() -> int:
    return int(time.time() * 1000)


def backoff_ms(settings: Settings, attempts: int, retry_after: float | None) -> int:
    ceiling = min(
        settings.push_backoff_max_seconds,
        settings.push_backoff_base_seconds * 2.0 ** min(attempts, 32),
    )
    delay = ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not secrecy
    return int(max(delay, retry_after or 0.0) * 1000)


@dataclass
class _Caches:
    templates: dict[tuple[int, int], Template] = field(default_factory=dict)
    accounts: dict[tuple[str, bytes], ServiceAccount] = field(default_factory=dict)


class GoogleSync:
    """One worker's Google side: a client (token cache, pacing) and the run loop."""

    def __init__(self, runtime: Runtime, client: GoogleWalletClient | None = None) -> None:
        self.settings = runtime.settings
        self.database: Database = runtime.database
        self.sealer = runtime.sealer
        self.client = client or make_client(self.settings)
        self._caches = _Caches()

    async def aclose(self) -> None:
        await self.client.aclose()

    # --- the loop ----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                claimed = await self.sync_due()
            except Exception as error:  # the database went away: log, wait, carry on
                _log_failure(error)
                claimed = 0
                await _sleep(stop, 1.0)
            if not claimed:
                try:
                    await self._wait_for_work(stop)
                except Exception as error:
                    _log_failure(error)
                    await _sleep(stop, 1.0)

    async def _wait_for_work(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            async with self.database.reader() as conn:
                due = await store.next_due_at(conn)
                GOOGLE_QUEUE_DEPTH.set(await store.queue_depth(conn))
            now = _now_ms()
            if due is not None and due <= now:
                return
            timeout = self.settings.push_idle_poll_seconds * 4
            if due is not None:
                timeout = min(timeout, (due - now) / 1000)
            await _sleep(stop, timeout)

    def lease_ms(self) -> int:
        """A claimed job's lease. A sync is up to three requests (patch, insert, patch) and a
        token fetch, each up to the request timeout; the lease outlasts them all, so no
        other worker can claim an object while a write to it may still be on the wire."""
        settings = self.settings
        return int(
            max(settings.push_lease_seconds, 4 * settings.google_request_timeout_seconds) * 1000
        )

    async def sync_due(self) -> int:
        """Claim one batch of due syncs and write them; returns how many were claimed.

        Classes first, one by one; then the batch's objects, read in one transaction,
        written concurrently, their outcomes recorded in one transaction.
        """
        limit = self.settings.google_concurrency * 8
        rate = self.settings.google_rate_per_second
        if rate > 0:
            # Paced jobs wait for the pacer while leased: keep a batch to a few seconds.
            limit = max(1, min(limit, int(rate * 4)))
        async with self.database.transaction() as conn:
            claimed = await store.claim_due(
                conn, now_ms=_now_ms(), lease_ms=self.lease_ms(), limit=limit
            )
        if not claimed:
            return 0
        for job in claimed:
            if job.kind == CLASS:
                await self._guarded(job)
        objects = [job for job in claimed if job.kind != CLASS]
        if objects:
            try:
                await self.sync_objects(objects)
            except Exception as error:
                # A bug or an outage: the batch is retried later like a 5xx.
                _log_failure(error)
                with contextlib.suppress(Exception):
                    async with self.database.transaction() as conn:
                        for job in objects:
                            await store.reschedule(
                                conn,
                                job,
                                due_at_ms=_now_ms() + backoff_ms(self.settings, job.attempts, None),
                            )
        return len(claimed)

    async def _guarded(self, job: ClaimedSync) -> None:
        try:
            await self.sync_class(job)
        except Exception as error:
            # A bug or an outage for this one job: retry it later like a 5xx.
            _log_failure(error)
            with contextlib.suppress(Exception):
                async with self.database.transaction() as conn:
                    await store.reschedule(
                        conn,
                        job,
                        due_at_ms=_now_ms() + backoff_ms(self.settings, job.attempts, None),
                    )

    # --- classes -----------------------------------------------------------------------

    async def sync_class(self, job: ClaimedSync) -> None:
        async with self.database.reader() as conn:
            config_row = await store.get_template_config(conn, job.target_id)
            template_row = await templates.get_template(conn, job.target_id)
            issuer = (
                await store.get_issuer(conn, config_row.issuer_id)
                if config_row is not None
                else None
            )
        if config_row is None or template_row is None or issuer is None:
            async with self.database.transaction() as conn:
                await store.complete(conn, [job], now_ms=_now_ms())
            return
        public_url = self.settings.public_url
        config = parse_config(config_row.config, template_row.pass_json)
        google_class, report = render_class(
            config,
            template_row.pass_json,
            image_urls(public_url, config_row.images),
            template_id=job.target_id,
            callback_url=public_url + CALLBACK_PATH,
        )
        if not public_url.startswith("https://"):
            answer = GoogleAnswer(
                FAILED,
                None,
                "public_url",
                "PASSHOUSE_PUBLIC_URL must be a public https:// address: Google fetches the "
                "images and posts callbacks there.",
            )
        elif report.errors:
            answer = GoogleAnswer(FAILED, None, "invalid", "; ".join(report.errors))
        else:
            answer = await self.client.upsert(
                account_of(issuer, self.sealer),
                f"{config.type}Class",
                google_class["id"],
                google_class,
                exists=config_row.synced_revision > 0,
            )
        GOOGLE_SYNCS.labels("class", answer.outcome).inc()
        async with self.database.transaction() as conn:
            if answer.outcome == DONE:
                await store.class_synced(conn, job.target_id, config_row.revision, now_ms=_now_ms())
                await store.complete(conn, [job], now_ms=_now_ms())
            elif answer.outcome == RETRY and job.attempts + 1 < self.settings.push_max_attempts:
                await store.reschedule(
                    conn,
                    job,
                    due_at_ms=_now_ms()
                    + backoff_ms(self.settings, job.attempts, answer.retry_after),
                )
            else:
                log.error(
                    "google_class_failed",
                    class_id=google_class["id"],
                    status=answer.status,
                    reason=answer.reason,
                    message=answer.message,
                )
                await store.class_failed(
                    conn,
                    job.target_id,
                    status=answer.status,
                    reason=answer.reason,
                    message=answer.message,
                )
                await store.complete(conn, [job], now_ms=_now_ms())

    # --- objects -----------------------------------------------------------------------

    async def _template(self, conn: Any, template_row: sa.Row[Any]) -> Template:
        key = (template_row.id, template_row.revision)
        cached = self._caches.templates.get(key)
        if cached is None:
            # Only .strings files are read by render(); images stay in the database.
            cached = Template(dict(template_row.pass_json), {}, name=template_row.name)
            self._caches.templates = {
                k: v for k, v in self._caches.templates.items() if k[0] != template_row.id
            }
            self._caches.templates[key] = cached
        return cached

    def _account(self, issuer: sa.Row[Any]) -> ServiceAccount:
        key = (issuer.issuer_id, bytes(issuer.private_key_encrypted))
        cached = self._caches.accounts.get(key)
        if cached is None:
            cached = self._caches.accounts[key] = account_of(issuer, self.sealer)
        return cached

    async def sync_objects(self, jobs: list[ClaimedSync]) -> None:
        ids_ = [job.target_id for job in jobs]
        async with self.database.reader() as conn:
            loaded = await store.load_for_sync(conn, ids_)
            for template_row in loaded.templates.values():
                await self._template(conn, template_row)
        lanes = asyncio.Semaphore(self.settings.google_concurrency)
        results: list[_Result] = []

        async def one(job: ClaimedSync) -> None:
            async with lanes:
                try:
                    results.append(await self._sync_one(job, loaded))
                except Exception as error:
                    _log_failure(error)
                    results.append(
                        _Result(
                            job,
                            None,
                            None,
                            GoogleAnswer(RETRY, None, "error", str(error)[:300]),
                            {},
                        )
                    )

        await asyncio.gather(*(one(job) for job in jobs))
        await self._record(results)

    async def _sync_one(self, job: ClaimedSync, loaded: store.SyncRows) -> _Result:
        obj = loaded.objects.get(job.target_id)
        pass_row = loaded.passes.get(job.target_id)
        config_row = loaded.configs.get(obj.template_id) if obj is not None else None
        template_row = loaded.templates.get(obj.template_id) if obj is not None else None
        issuer = loaded.issuers.get(config_row.issuer_id) if config_row is not None else None
        if (
            obj is None
            or pass_row is None
            or config_row is None
            or issuer is None
            or template_row is None
        ):
            return _Result(job, None, None, GoogleAnswer(DONE), {})  # gone: nothing to write
        template = self._caches.templates[(template_row.id, template_row.revision)]
        config = parse_config(config_row.config, template_row.pass_json)
        data = dict(pass_row.data)
        if pass_row.personalization:
            data.setdefault("personalization", dict(pass_row.personalization))
        try:
            apple, _ = template.render(
                data, overrides={"serialNumber": pass_row.serial_number, "voided": None}
            )
        except PkpassError as error:
            return _Result(
                job, obj, pass_row, GoogleAnswer(FAILED, None, "invalid", error.message), {}
            )
        google_object, report = render_object(
            config,
            apple,
            data,
            image_urls(self.settings.public_url, config_row.images),
            template_id=obj.template_id,
            pass_type_id=pass_row.pass_type_id,
            serial_number=pass_row.serial_number,
            voided=pass_row.voided,
            now=dt.datetime.now(dt.UTC),
        )
        if report.errors:
            answer = GoogleAnswer(FAILED, None, "invalid", "; ".join(report.errors))
            return _Result(job, obj, pass_row, answer, {})
        notice = _Notice.of(obj, apple, pass_row.version, config.type)
        body = dict(google_object)
        for key in obj.synced_keys or ():
            if key not in body and key not in _KEPT_KEYS:
                body[key] = None  # dropped from the pass since the last write: remove it
        account = self._account(issuer)
        resource = f"{config.type}Object"
        answer = await self._write(
            account, resource, body, notice, exists=obj.synced_version is not None
        )
        if answer.outcome == DONE and notice.message is not None and config.type == "generic":
            answer = await self._add_message(account, resource, body["id"], answer, notice)
        state = {
            "synced_keys": sorted(google_object),
            "notified_values": notice.values,
            "notify_times": notice.times(),
            "messages": notice.messages if config.type != "generic" else obj.messages,
        }
        return _Result(job, obj, pass_row, answer, state)

    async def _write(
        self, account: Any, resource: str, body: dict[str, Any], notice: _Notice, *, exists: bool
    ) -> GoogleAnswer:
        if notice.message is not None and notice.kind != "generic":
            # Arrays are replaced by PATCH: the whole list, the new message last.
            body["messages"] = notice.messages
            if notice.notify:
                body["notifyPreference"] = "NOTIFY_ON_UPDATE"
        answer = await self.client.upsert(account, resource, body["id"], body, exists=exists)
        if answer.outcome == QUOTA and notice.kind != "generic":
            # Google's count is the one that matters: send the update without notifying.
            notice.quota_used_up()
            body.pop("notifyPreference", None)
            body["messages"] = notice.messages
            answer = await self.client.upsert(account, resource, body["id"], body, exists=True)
        return answer

    async def _add_message(
        self, account: Any, resource: str, object_id: str, written: GoogleAnswer, notice: _Notice
    ) -> GoogleAnswer:
        assert notice.message is not None
        existing = written.body.get("messages") if isinstance(written.body, Mapping) else None
        if any(
            isinstance(m, Mapping) and m.get("id") == notice.message["id"] for m in existing or ()
        ):
            return written  # sent before a crash or a lost answer: addMessage is not idempotent
        answer = await self.client.add_message(account, resource, object_id, notice.message)
        if answer.outcome == QUOTA:
            notice.quota_used_up()
            answer = await self.client.add_message(account, resource, object_id, notice.message)
        return written if answer.outcome == DONE else answer

    async def _record(self, results: list[_Result]) -> None:
        """Every outcome of a batch in one transaction."""
        now = _now_ms()
        failed_any = False
        async with self.database.transaction() as conn:
            for result in results:
                job, obj, answer = result.job, result.obj, result.answer
                if obj is None or result.pass_row is None:
                    if answer.outcome == RETRY:
                        await store.reschedule(
                            conn, job, due_at_ms=now + backoff_ms(self.settings, job.attempts, None)
                        )
                    else:
                        await store.complete(conn, [job], now_ms=now)
                    continue
                GOOGLE_SYNCS.labels("object", answer.outcome).inc()
                if answer.outcome == DONE:
                    await store.update_object(
                        conn,
                        obj.pass_id,
                        {
                            "status": "synced",
                            "synced_version": result.pass_row.version,
                            "synced_at_ms": now,
                            "error_status": None,
                            "error_reason": None,
                            "error_message": None,
                            **result.state,
                        },
                    )
                    await store.complete(conn, [job], now_ms=now)
                elif answer.outcome == RETRY and job.attempts + 1 < self.settings.push_max_attempts:
                    await store.update_object(
                        conn,
                        obj.pass_id,
                        {
                            "error_status": answer.status,
                            "error_reason": answer.reason,
                            "error_message": answer.message,
                        },
                    )
                    await store.reschedule(
                        conn,
                        job,
                        due_at_ms=now + backoff_ms(self.settings, job.attempts, answer.retry_after),
                    )
                else:
                    failed_any = True
                    log.warning(
                        "google_object_failed",
                        object_id=obj.object_id,
                        status=answer.status,
                        reason=answer.reason,
                        message=answer.message,
                    )
                    await store.update_object(
                        conn,
                        obj.pass_id,
                        {
                            "status": "failed",
                            "error_status": answer.status,
                            "error_reason": answer.reason,
                            "error_message": answer.message,
                        },
                    )
                    await store.complete(conn, [job], now_ms=now)
            if failed_any:
                failed = await conn.scalar(
                    sa.select(sa.func.count())
                    .select_from(google_objects)
                    .where(google_objects.c.status == "failed")
                )
                GOOGLE_FAILED_OBJECTS.set(int(failed or 0))


@dataclass(frozen=True, slots=True)
class _Result:
    job: ClaimedSync
    obj: sa.Row[Any] | None
    pass_row: sa.Row[Any] | None
    answer: GoogleAnswer
    state: Mapping[str, Any]


@dataclass
class _Notice:
    """The notification a sync carries: a changed field with a changeMessage, within
    Google's 3 per object per 24 hours (counted here, so the 4th goes out silently)."""

    kind: str
    values: dict[str, str]
    recent: list[int]
    old_messages: list[dict[str, Any]]
    message: dict[str, Any] | None = None
    notify: bool = False

    @classmethod
    def of(cls, obj: sa.Row[Any], apple: Mapping[str, Any], version: int, kind: str) -> _Notice:
        changes = mapping.change_messages(apple)
        previous = obj.notified_values or {}
        now = _now_ms()
        recent = [int(t) for t in obj.notify_times or () if now - int(t) < DAY_MS]
        notice = cls(
            kind,
            {key: value for key, (_, value) in changes.items()},
            recent,
            list(obj.messages or [])[-(MAX_MESSAGES - 1) :],
        )
        texts = [
            text
            for key, (text, value) in changes.items()
            if obj.synced_version is not None and key in previous and previous[key] != value
        ]
        if texts:
            notice.notify = len(recent) < NOTIFY_LIMIT
            notice.message = {
                "id": f"ph-v{version}",
                "header": str(apple.get("organizationName") or "Update")[:35],
                "body": "; ".join(texts)[:500],
                "messageType": "TEXT_AND_NOTIFY" if notice.notify and kind == "generic" else "TEXT",
            }
        return notice

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.old_messages + ([self.message] if self.message else [])

    def quota_used_up(self) -> None:
        self.notify = False
        if self.message is not None:
            self.message["messageType"] = "TEXT"
        now = _now_ms()
        self.recent = (self.recent + [now] * NOTIFY_LIMIT)[-NOTIFY_LIMIT:]

    def times(self) -> list[int]:
        return self.recent + ([_now_ms()] if self.notify else [])


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max(0.0, seconds)):
            await stop.wait()


def _log_failure(error: Exception) -> None:
    if database_fault(error) is None:
        log.error("google_sync_failed", exc_info=error)
    else:
        log.warning("google_sync_database_unavailable", error=str(error))


async def run_google_sync(runtime: Runtime, stop: asyncio.Event) -> None:
    """The worker's Google loop (beside the APNs lanes), until `stop` is set."""
    sync = GoogleSync(runtime)
    try:
        await sync.run(stop)
    finally:
        await sync.aclose()
