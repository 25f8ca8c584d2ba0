"""`passhouse webhook ...` on the test database, with a real worker and receiver for ping."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import SECRET_KEY
from test_cli_manage import _empty_postgres
from test_cli_server import CliInvoker, assert_one_clean_line
from webhooks.receiver import Receiver


@pytest.fixture
def env(database_url: str, tmp_path: Path) -> dict[str, str]:
    if database_url.startswith("postgresql"):
        _empty_postgres(database_url)
    return {
        "PASSHOUSE_DATABASE_URL": database_url,
        "PASSHOUSE_SECRET_KEY": SECRET_KEY,
        "PASSHOUSE_DATA_DIR": str(tmp_path / "data"),
        "PASSHOUSE_PUBLIC_URL": "https://passes.example.test",
        "PASSHOUSE_DEV_MODE": "false",
        "PASSHOUSE_WEBHOOKS_ALLOW_PRIVATE": "true",
    }


@pytest.fixture
def passhouse(env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliInvoker:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("PASSHOUSE_"):
            monkeypatch.delenv(name)
    return CliInvoker(env)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A receiver in a thread of its own (the CLI runs its own event loops)."""
    server = Receiver()
    loop = asyncio.new_event_loop()
    started = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    started.wait(10)
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def _add(passhouse: CliInvoker, url: str, *events: str) -> tuple[int, str]:
    args = [arg for event in events for arg in ("--event", event)]
    lines = passhouse.ok("webhook", "add", url, *args).splitlines()
    assert lines[0].startswith("added webhook ")
    return int(lines[0].split()[2].rstrip(":")), lines[-1]


def test_webhooks_are_added_listed_shown_updated_and_removed(passhouse: CliInvoker) -> None:
    webhook_id, secret = _add(passhouse, "http://127.0.0.1:9/hook", "pass.installed")

    listed = json.loads(passhouse.ok("webhook", "list", "--json"))
    lines = passhouse.ok("webhook", "list")
    passhouse.ok("webhook", "update", str(webhook_id), "--disable", "--event", "*")
    shown = json.loads(passhouse.ok("webhook", "show", str(webhook_id), "--json"))
    removed = passhouse.ok("webhook", "remove", str(webhook_id))

    assert secret.startswith("whsec_")
    assert [(w["id"], w["events"], w["enabled"]) for w in listed] == [
        (webhook_id, ["pass.installed"], True)
    ]
    assert "http://127.0.0.1:9/hook" in lines
    assert "enabled" in lines
    assert (shown["enabled"], shown["events"], shown["recent_deliveries"]) == (False, ["*"], [])
    assert "secret" not in shown
    assert removed.strip() == f"removed webhook {webhook_id}"
    assert passhouse.ok("webhook", "list").strip().startswith("no webhooks")


def test_bad_input_is_one_clean_line(passhouse: CliInvoker) -> None:
    strict = {"PASSHOUSE_WEBHOOKS_ALLOW_PRIVATE": "false"}
    private = passhouse("webhook", "add", "https://127.0.0.1/hook", **strict)
    unknown = passhouse("webhook", "add", "https://93.184.216.34/", "--event", "pass.eaten")
    missing = passhouse("webhook", "show", "42")

    assert "PASSHOUSE_WEBHOOKS_ALLOW_PRIVATE=true" in assert_one_clean_line(private)
    assert "pass.eaten" in assert_one_clean_line(unknown)
    assert "No webhook 42" in assert_one_clean_line(missing)


def test_ping_without_a_worker_says_so(passhouse: CliInvoker) -> None:
    webhook_id, _ = _add(passhouse, "http://127.0.0.1:9/hook")

    queued = passhouse.ok("webhook", "ping", str(webhook_id), "--wait", "0")
    waited = passhouse("webhook", "ping", str(webhook_id), "--wait", "0.5")

    assert queued.startswith("queued ping evt_")
    assert "is `passhouse worker`" in assert_one_clean_line(waited)


def test_ping_is_delivered_by_a_worker_and_shown_in_deliveries(
    passhouse: CliInvoker, env: dict[str, str], receiver: Receiver, tmp_path: Path
) -> None:
    webhook_id, secret = _add(passhouse, receiver.url)
    receiver.secret = secret
    process_env = {k: v for k, v in os.environ.items() if not k.startswith("PASSHOUSE_")}
    with (tmp_path / "worker.log").open("ab") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "passhouse", "worker"],
            env={**process_env, **env},
            cwd=tmp_path,
            stdout=log,
            stderr=log,
        )
    try:
        pinged = passhouse.ok("webhook", "ping", str(webhook_id), "--wait", "60")
        deliveries = json.loads(passhouse.ok("webhook", "deliveries", str(webhook_id), "--json"))
    finally:
        worker.terminate()
        worker.wait(20)

    assert pinged.startswith("delivered ping evt_")
    assert pinged.strip().endswith("HTTP 200")
    assert [(d["event"], d["state"], d["attempts"]) for d in deliveries] == [
        ("ping", "delivered", 1)
    ]
    assert [r.event["type"] for r in receiver.received] == ["ping"]
    assert receiver.bad_signatures == []
    assert time.time() - receiver.received[0].at < 120
