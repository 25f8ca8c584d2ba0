"""Webhook tests: settings that allow a loopback receiver, the receiver, a deliverer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from conftest import ADMIN_TOKEN, SECRET_KEY
from passhouse.bootstrap import Runtime
from passhouse.settings import Settings
from passhouse.webhooks import worker as webhook_worker
from webhooks.receiver import Receiver


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        _env_file=None,
        database_url=database_url,
        public_url="https://passes.example.test",
        admin_token=SecretStr(ADMIN_TOKEN),
        secret_key=SecretStr(SECRET_KEY),
        data_dir=tmp_path / "data",
        webhooks_allow_private=True,
        webhook_timeout_seconds=0.5,
        webhook_backoff_base_seconds=0.01,
        webhook_backoff_max_seconds=0.02,
    )


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = Receiver()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def deliverer(runtime: Runtime) -> AsyncIterator[webhook_worker.Deliverer]:
    sender = webhook_worker.make_sender(runtime.settings)
    try:
        yield webhook_worker.Deliverer(runtime.database, runtime.sealer, sender, runtime.settings)
    finally:
        await sender.aclose()


async def add_webhook(
    admin: httpx.AsyncClient, receiver: Receiver, events: list[str] | None = None
) -> int:
    response = await admin.post(
        "/api/v1/webhooks", json={"url": receiver.url, "events": events or ["*"]}
    )
    assert response.status_code == 201, response.text
    receiver.secret = response.json()["secret"]
    webhook_id: int = response.json()["id"]
    return webhook_id


async def deliver_all(
    runtime: Runtime, deliverer: webhook_worker.Deliverer, *, within: float = 10
) -> None:
    """Fan out and deliver until nothing is due (retries included)."""
    deadline = time.monotonic() + within
    while True:
        handled = await webhook_worker.fan_out(runtime.database)
        handled += await deliverer.deliver_due()
        if not handled:
            async with runtime.database.reader() as conn:
                from passhouse.storage import webhooks

                summary = await webhooks.delivery_summary(conn)
            if not summary["events_waiting"] and not summary["deliveries_pending"]:
                return
        assert time.monotonic() < deadline, "deliveries did not finish"
        await asyncio.sleep(0.01)


async def eventually(check: Callable[[], Awaitable[bool] | bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)
