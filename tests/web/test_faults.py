"""Database faults while the server runs: 503 with Retry-After, logged once, then recovery."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from structlog.testing import capture_logs

from conftest import ADMIN_TOKEN
from databases import _run_admin
from factories import IssuedPass
from passhouse.bootstrap import Runtime, open_runtime
from passhouse.settings import Settings
from passhouse.storage.database import Database
from passhouse.web.app import create_app
from tcp_proxy import BlackHole, TcpProxy

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
async def proxy(database_url: str) -> AsyncIterator[TcpProxy]:
    if not database_url.startswith("postgresql"):
        pytest.skip("a server outage needs PostgreSQL (PASSHOUSE_TEST_DATABASE_URL)")
    target = sa.make_url(database_url)
    tcp_proxy = TcpProxy(target.host or "127.0.0.1", target.port or 5432)
    await tcp_proxy.start()
    try:
        yield tcp_proxy
    finally:
        if tcp_proxy.running:
            await tcp_proxy.stop()


@pytest.fixture
async def proxied(
    proxy: TcpProxy, settings: Settings, database_url: str
) -> AsyncIterator[tuple[Runtime, httpx.AsyncClient]]:
    """A server whose only way to the database is the proxy."""
    runtime = open_runtime(settings.model_copy(update={"database_url": proxy.url(database_url)}))
    transport = httpx.ASGITransport(app=create_app(runtime))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="https://t.test") as http:
            yield runtime, http
    finally:
        await runtime.database.dispose()


async def requests_of_every_kind(http: httpx.AsyncClient, wallet_pass: IssuedPass) -> list[Any]:
    """A device download, register and changed-serials call, admin reads and a write."""
    patch = {"data": {"balance": time.time_ns() % 1000}}
    return [
        await http.get(wallet_pass.path, headers=wallet_pass.auth),
        await http.post(
            wallet_pass.registration_path("device-1"),
            headers=wallet_pass.auth,
            json={"pushToken": "token-1"},
        ),
        await http.get(f"/passkit/v1/devices/device-1/registrations/{wallet_pass.pass_type_id}"),
        await http.get("/api/v1/passes", headers=ADMIN),
        await http.patch(
            f"/api/v1/passes/{wallet_pass.pass_type_id}/{wallet_pass.serial_number}",
            headers=ADMIN,
            json=patch,
        ),
    ]


async def wait_for_event(
    logs: list[MutableMapping[str, Any]], event: str, within: float = 60
) -> None:
    deadline = time.monotonic() + within
    while not any(entry["event"] == event for entry in logs):
        assert time.monotonic() < deadline, f"no {event} logged within {within} s"
        await asyncio.sleep(0.1)


async def test_a_postgresql_outage_is_a_503_logged_once_and_the_server_recovers(
    proxy: TcpProxy,
    proxied: tuple[Runtime, httpx.AsyncClient],
    wallet_pass: IssuedPass,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, http = proxied
    before = await requests_of_every_kind(http, wallet_pass)

    with capture_logs() as logs:
        await proxy.stop()
        during = [await requests_of_every_kind(http, wallet_pass) for _ in range(5)]
        ready_during = await http.get("/readyz")
        live_during = await http.get("/livez")
        await proxy.start()
        await wait_for_event(logs, "database_fault_ended")
        after = await requests_of_every_kind(http, wallet_pass)
        ready_after = await http.get("/readyz")

    assert [r.status_code for r in before] == [200, 201, 200, 200, 200]
    for response in (answer for batch in during for answer in batch):
        assert response.status_code == 503, (response.request.url, response.text)
        assert response.headers["retry-after"] == "5"
        assert response.json()["error"]["code"] == "database_unavailable"
    assert ready_during.status_code == 503
    assert ready_during.json()["checks"]["database"] == "the database is unreachable"
    assert "database:" in ready_during.json()["error"]["message"]
    assert live_during.status_code == 200
    assert [r.status_code for r in after] == [200, 200, 200, 200, 200]
    assert ready_after.status_code == 200
    events = [entry["event"] for entry in logs]
    assert events.count("database_fault_started") == 1, events
    assert events.count("database_fault_ended") == 1, events
    assert not [
        entry for entry in logs if entry.get("exc_info") or entry["log_level"] == "critical"
    ]
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


async def test_an_outage_under_v1_is_a_503_in_passninja_shape(
    proxy: TcpProxy, proxied: tuple[Runtime, httpx.AsyncClient], wallet_pass: IssuedPass
) -> None:
    _, http = proxied
    await proxy.stop()

    response = await http.get("/v1/pass_templates", headers={"X-API-KEY": ADMIN_TOKEN})

    assert response.status_code == 503, response.text
    assert response.json()["error"]["status_code"] == 503
    assert response.json()["error"]["code"] == "database_unavailable"


@pytest.mark.slow
async def test_a_sqlite_database_locked_by_another_process_is_a_503_until_released(
    database_url: str,
    admin: httpx.AsyncClient,
    client: httpx.AsyncClient,
    wallet_pass: IssuedPass,
) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite's write lock")
    path = database_url.removeprefix("sqlite:///")
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        HOLD_WRITE_LOCK,
        path,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert holder.stdout is not None
    assert holder.stdin is not None
    change = f"/api/v1/passes/{wallet_pass.pass_type_id}/{wallet_pass.serial_number}"

    try:
        assert await holder.stdout.readline() == b"locked\n"
        with capture_logs() as logs:
            refused = await admin.patch(change, json={"data": {"balance": 2}})
            device_refused = await client.post(
                wallet_pass.registration_path("device-1"),
                headers=wallet_pass.auth,
                json={"pushToken": "token-1"},
            )
            read_while_locked = await admin.get("/api/v1/passes")
            holder.stdin.close()
            assert await holder.wait() == 0
            accepted = await admin.patch(change, json={"data": {"balance": 3}})
    finally:
        if holder.returncode is None:
            holder.kill()
            await holder.wait()

    for response in (refused, device_refused):
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "database_busy"
        assert response.headers["retry-after"] == "5"
    assert read_while_locked.status_code == 200  # WAL readers do not wait for the writer
    assert accepted.status_code == 200, accepted.text
    events = [entry["event"] for entry in logs]
    assert events.count("database_fault_started") == 1, events
    assert events.count("database_fault_ended") == 1, events
    assert not [entry for entry in logs if entry.get("exc_info")]


@pytest.mark.slow
async def test_a_download_signed_while_another_process_holds_sqlites_lock_is_served(
    database_url: str, client: httpx.AsyncClient, wallet_pass: IssuedPass, database: Database
) -> None:
    """The signed file could not be stored for the other processes: the device still gets it."""
    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite's write lock")
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        HOLD_WRITE_LOCK,
        database_url.removeprefix("sqlite:///"),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert holder.stdout is not None
    assert holder.stdin is not None
    try:
        assert await holder.stdout.readline() == b"locked\n"
        with capture_logs() as logs:
            download = await client.get(wallet_pass.path, headers=wallet_pass.auth)
        holder.stdin.close()
        assert await holder.wait() == 0
    finally:
        if holder.returncode is None:
            holder.kill()
            await holder.wait()

    assert download.status_code == 200, download.text
    assert download.headers["content-type"] == "application/vnd.apple.pkpass"
    assert [entry["fault"] for entry in logs if entry["event"] == "signed_file_not_stored"] == [
        "database_busy"
    ]
    async with database.reader() as conn:
        stored = await conn.scalar(sa.text("SELECT count(*) FROM pkpass_cache"))
    assert stored == 0


HOLD_WRITE_LOCK = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.read()
db.execute("ROLLBACK")
"""


@pytest.fixture
async def read_only_postgres(database_url: str, database: Database) -> AsyncIterator[None]:
    """Sessions of the test database refuse writes, as on a hot standby."""
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL's read-only transactions")
    url = sa.make_url(database_url)
    # Through the maintenance database, which stays writable.
    maintenance = url.set(database="postgres").render_as_string(hide_password=False)
    setting = f'ALTER DATABASE "{url.database}" {{}} default_transaction_read_only'
    await _run_admin(maintenance, setting.format("SET") + " = on")
    await database.dispose()  # its pooled sessions were opened before
    try:
        yield
    finally:
        await _run_admin(maintenance, setting.format("RESET"))


async def test_a_postgresql_database_that_refuses_writes_is_a_503_naming_it(
    wallet_pass: IssuedPass, read_only_postgres: None, admin: httpx.AsyncClient
) -> None:
    change = f"/api/v1/passes/{wallet_pass.pass_type_id}/{wallet_pass.serial_number}"

    with capture_logs() as logs:
        refused = await admin.patch(change, json={"data": {"balance": 2}})
        listed = await admin.get("/api/v1/passes")

    assert refused.status_code == 503, refused.text
    assert refused.json()["error"] == {
        "code": "database_read_only",
        "message": "The database is read-only; nothing was saved. Try again later.",
    }
    assert listed.status_code == 200
    assert [entry["event"] for entry in logs] == ["database_fault_started"]


@pytest.fixture
async def partitioned(
    settings: Settings,
) -> AsyncIterator[tuple[httpx.AsyncClient, float]]:
    """A server whose PostgreSQL never answers, with a 1 s connect timeout."""
    hole = BlackHole()
    url = f"postgresql://passhouse@127.0.0.1:{hole.port}/passhouse"
    changes = {"database_url": url, "database_connect_timeout_seconds": 1.0}
    runtime = open_runtime(settings.model_copy(update=changes))
    transport = httpx.ASGITransport(app=create_app(runtime))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="https://t.test") as http:
            yield http, 1.0
    finally:
        await runtime.database.dispose()
        hole.close()


async def test_a_database_that_never_answers_is_a_503_after_the_connect_timeout(
    partitioned: tuple[httpx.AsyncClient, float],
) -> None:
    http, timeout = partitioned
    started = time.monotonic()

    admin_answer = await http.get("/api/v1/passes", headers=ADMIN)
    device_answer = await http.get("/passkit/v1/devices/d1/registrations/pass.test.passhouse")
    elapsed = time.monotonic() - started

    for response in (admin_answer, device_answer):
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "database_unavailable"
    # The driver's own default is 60 s per connect; a loaded machine adds seconds, not 50.
    assert elapsed < 2 * timeout + 25
