"""Limits on what the public pass token lets anyone do: registrations per pass, requests
per client address (behind trusted proxies only), and what device logs cost (ADR 0010)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from structlog.testing import capture_logs

from conftest import ADMIN_TOKEN, SECRET_KEY
from factories import IssuedPass, count_rows
from passhouse.bootstrap import Runtime
from passhouse.storage.tables import device_logs, devices, registrations
from passhouse.web.app import create_app
from test_cli_server import free_port, wait_for_health

BASE = "https://passes.example.test"


class Clock:
    """Monotonic seconds the test moves by hand; starts on a window boundary."""

    def __init__(self) -> None:
        self.now = 600.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_app(runtime: Runtime, clock: Clock) -> Callable[..., Any]:
    def make(**overrides: Any) -> Any:
        settings = runtime.settings.model_copy(update=overrides)
        custom = Runtime(settings=settings, database=runtime.database, sealer=runtime.sealer)
        return create_app(custom, clock=clock)

    return make


def peer(app: Any, address: str) -> httpx.AsyncClient:
    """A client whose TCP peer address, as the server sees it, is `address`."""
    transport = httpx.ASGITransport(app=app, client=(address, 50_000))
    return httpx.AsyncClient(transport=transport, base_url=BASE)


async def register(
    client: httpx.AsyncClient, wallet_pass: IssuedPass, device: str, token: str = ""
) -> httpx.Response:
    return await client.post(
        wallet_pass.registration_path(device),
        headers=wallet_pass.auth,
        json={"pushToken": token or f"push-{device}"},
    )


async def logged(client: httpx.AsyncClient, headers: dict[str, str] | None = None) -> int:
    response = await client.post("/passkit/v1/log", json={"logs": ["x"]}, headers=headers)
    return response.status_code


async def stored_addresses(runtime: Runtime) -> list[str | None]:
    async with runtime.database.reader() as conn:
        rows = await conn.execute(sa.select(device_logs.c.remote_addr).order_by(device_logs.c.id))
        return list(rows.scalars())


# --- registrations per pass -------------------------------------------------------------


async def test_a_full_pass_refuses_new_devices_and_the_refusal_changes_nothing(
    make_app: Callable[..., Any], wallet_pass: IssuedPass, runtime: Runtime
) -> None:
    async with peer(make_app(registrations_per_pass=3), "192.0.2.1") as client:
        first = [(await register(client, wallet_pass, f"d{i}")).status_code for i in range(3)]
        refused = await register(client, wallet_pass, "d3")
        counts = (await count_rows(runtime, devices), await count_rows(runtime, registrations))

        assert first == [201, 201, 201]
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "registration_limit"
        assert counts == (3, 3)  # not even a device row for the refused one

        # A device already holding the pass may always renew (a new push token, a restore).
        renewed = await register(client, wallet_pass, "d1", token="fresh-token")
        unregistered = await client.delete(
            wallet_pass.registration_path("d0"), headers=wallet_pass.auth
        )
        after_room = await register(client, wallet_pass, "d3")

    async with runtime.database.reader() as conn:
        tokens = set((await conn.execute(sa.select(registrations.c.push_token))).scalars())
    assert (renewed.status_code, unregistered.status_code, after_room.status_code) == (
        200,
        200,
        201,
    )
    assert tokens == {"fresh-token", "push-d2", "push-d3"}


async def test_the_default_cap_is_generous_and_zero_means_none(
    make_app: Callable[..., Any], wallet_pass: IssuedPass, runtime: Runtime
) -> None:
    assert runtime.settings.registrations_per_pass >= 1_000  # shared coupons (ADR 0010)

    async with peer(make_app(registrations_per_pass=0), "192.0.2.1") as client:
        statuses = {(await register(client, wallet_pass, f"d{i}")).status_code for i in range(5)}

    assert statuses == {201}


# --- per-client rate limits -------------------------------------------------------------


async def test_registrations_are_rate_limited_per_client_address(
    make_app: Callable[..., Any], wallet_pass: IssuedPass, runtime: Runtime, clock: Clock
) -> None:
    app = make_app(registration_rate_per_minute=3)
    async with peer(app, "192.0.2.1") as client, peer(app, "192.0.2.2") as other:
        allowed = [(await register(client, wallet_pass, f"a{i}")).status_code for i in range(3)]
        limited = await register(client, wallet_pass, "a3")
        stored = await count_rows(runtime, registrations)
        from_other = await register(other, wallet_pass, "b0")
        clock.now += 60
        next_minute = await register(client, wallet_pass, "a3")

    assert allowed == [201, 201, 201]
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "too_many_requests"
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert stored == 3
    assert (from_other.status_code, next_minute.status_code) == (201, 201)


async def test_log_requests_are_rate_limited_within_one_window(
    make_app: Callable[..., Any], runtime: Runtime, clock: Clock
) -> None:
    async with peer(make_app(device_log_rate_per_minute=5), "192.0.2.1") as client:
        statuses = [await logged(client) for _ in range(6)]
        clock.now += 59.9  # still the same minute
        same_window = await logged(client)
        clock.now += 0.1
        next_window = await logged(client)

    assert statuses == [200] * 5 + [429]
    assert (same_window, next_window) == (429, 200)
    assert await count_rows(runtime, device_logs) == 6


async def test_forwarding_headers_from_an_untrusted_peer_are_ignored(
    make_app: Callable[..., Any], runtime: Runtime
) -> None:
    async with peer(make_app(device_log_rate_per_minute=3), "203.0.113.5") as client:
        statuses = [
            await logged(
                client,
                {"X-Forwarded-For": f"198.51.100.{i}", "Forwarded": f"for=198.51.100.{i}"},
            )
            for i in range(5)
        ]

    assert statuses == [200, 200, 200, 429, 429]
    assert await stored_addresses(runtime) == ["203.0.113.5"] * 3


@pytest.mark.parametrize(
    ("setting", "header", "client"),
    [
        ("x-forwarded-for", {"X-Forwarded-For": "198.51.100.7"}, "198.51.100.7"),
        # Entries left of the nearest untrusted one were written by the client: ignored.
        ("x-forwarded-for", {"X-Forwarded-For": "6.6.6.6, 198.51.100.7, 10.1.2.3"}, "198.51.100.7"),
        ("x-forwarded-for", {"X-Forwarded-For": "198.51.100.7:5123"}, "198.51.100.7"),
        ("x-forwarded-for", {"Forwarded": "for=6.6.6.6"}, "10.0.0.2"),  # not the one configured
        ("forwarded", {"Forwarded": "for=198.51.100.7;proto=https;by=10.0.0.2"}, "198.51.100.7"),
        ("forwarded", {"Forwarded": 'for=6.6.6.6, for="[2001:db8::7]:4711"'}, "2001:db8::7"),
        ("forwarded", {"Forwarded": "for=unknown"}, "10.0.0.2"),
        ("forwarded", {"X-Forwarded-For": "6.6.6.6"}, "10.0.0.2"),
    ],
)
async def test_a_trusted_proxy_names_the_client(
    make_app: Callable[..., Any],
    runtime: Runtime,
    setting: str,
    header: dict[str, str],
    client: str,
) -> None:
    app = make_app(trusted_proxies=(ip_network("10.0.0.0/8"),), forwarded_header=setting)
    async with peer(app, "10.0.0.2") as proxy:
        status = await logged(proxy, header)

    assert status == 200
    assert await stored_addresses(runtime) == [client]


async def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_limit(
    make_app: Callable[..., Any], runtime: Runtime
) -> None:
    app = make_app(device_log_rate_per_minute=2, trusted_proxies=(ip_network("10.0.0.2"),))
    async with peer(app, "10.0.0.2") as proxy:
        alice = [await logged(proxy, {"X-Forwarded-For": "198.51.100.1"}) for _ in range(3)]
        bob = [await logged(proxy, {"X-Forwarded-For": "198.51.100.2"}) for _ in range(2)]

    assert (alice, bob) == ([200, 200, 429], [200, 200])


async def test_an_ipv6_client_is_limited_per_64(make_app: Callable[..., Any]) -> None:
    app = make_app(device_log_rate_per_minute=2)
    async with (
        peer(app, "2001:db8:1:2::1") as one,
        peer(app, "2001:db8:1:2:ffff::9") as same_64,
        peer(app, "2001:db8:1:3::1") as other_64,
    ):
        statuses = [await logged(one), await logged(same_64), await logged(same_64)]
        other = await logged(other_64)

    assert (statuses, other) == ([200, 200, 429], 200)


# --- what a device log costs the server log ---------------------------------------------


async def test_the_server_log_gets_a_bounded_summary_of_device_logs(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    messages = [f"{i:02d} café " + "x" * 3990 for i in range(15)]  # ~60 kB, under the cap

    with capture_logs() as events:
        response = await client.post("/passkit/v1/log", json={"logs": messages})

    summaries = [event for event in events if event["event"] == "device_log"]
    assert response.status_code == 200
    assert len(summaries) == 1
    [summary] = summaries
    assert summary["count"] == 15
    assert summary["bytes"] == sum(len(m.encode()) for m in messages)
    assert summary["first"] == messages[0][:200]
    assert len(repr(events)) < 1_000
    assert await count_rows(runtime, device_logs) == 15  # the database keeps them whole


# --- a real server: the peer address is the socket's ------------------------------------


@contextmanager
def served(database_url: str, tmp_path: Path, **env: str) -> Iterator[str]:
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PASSHOUSE_")}
    environment |= {
        "PASSHOUSE_DATABASE_URL": database_url,
        "PASSHOUSE_SECRET_KEY": SECRET_KEY,
        "PASSHOUSE_ADMIN_TOKEN": ADMIN_TOKEN,
        "PASSHOUSE_DEV_MODE": "false",
        "PASSHOUSE_DATA_DIR": str(tmp_path / "served"),
        "PASSHOUSE_PUBLIC_URL": f"http://127.0.0.1:{port}",
        **env,
    }
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "passhouse", "serve", "--no-worker", "--port", str(port)]
    with (tmp_path / "serve.log").open("wb") as out:
        process = subprocess.Popen(
            [*command, "--log-level", "warning"],
            cwd=tmp_path,
            env=environment,
            stdout=out,
            stderr=out,
        )
    try:
        wait_for_health(base, process)
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def from_address(source: str) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(local_address=source), timeout=30)


def in_one_window(burst: Callable[[], list[int]]) -> list[int]:
    """Run a burst of requests inside one of the server's one-minute windows.

    The server counts in windows of its monotonic clock, which is this process's too; a
    burst that straddled a boundary is run again, now well clear of the next one.
    """
    for _ in range(2):
        window = time.monotonic() // 60
        statuses = burst()
        if time.monotonic() // 60 == window:
            return statuses
    raise AssertionError("two bursts of a few requests each straddled a minute boundary")


@pytest.mark.slow
async def test_the_server_believes_forwarding_headers_only_from_trusted_proxies(
    database_url: str, runtime: Runtime, wallet_pass: IssuedPass, tmp_path: Path
) -> None:
    # The stranger connects from 127.0.0.1, which uvicorn's own proxy handling trusts by
    # default; the configured proxy is 127.0.0.2.
    limits = {
        "PASSHOUSE_DEVICE_LOG_RATE_PER_MINUTE": "3",
        "PASSHOUSE_REGISTRATION_RATE_PER_MINUTE": "3",
        "PASSHOUSE_TRUSTED_PROXIES": "127.0.0.2",
    }
    with (
        served(database_url, tmp_path, **limits) as base,
        from_address("127.0.0.1") as stranger,
        from_address("127.0.0.2") as proxy,
    ):

        def rotating_logs() -> list[int]:
            return [
                stranger.post(
                    f"{base}/passkit/v1/log",
                    json={"logs": ["x"]},
                    headers={"X-Forwarded-For": f"198.51.100.{i}"},
                ).status_code
                for i in range(4)
            ]

        def rotating_registrations() -> list[int]:
            return [
                stranger.post(
                    f"{base}{wallet_pass.registration_path(f'device-{time.monotonic_ns()}')}",
                    headers={**wallet_pass.auth, "X-Forwarded-For": f"198.51.100.{i}"},
                    json={"pushToken": "t"},
                ).status_code
                for i in range(4)
            ]

        def forwarded_logs() -> list[int]:
            return [
                proxy.post(
                    f"{base}/passkit/v1/log",
                    json={"logs": ["x"]},
                    headers={"X-Forwarded-For": f"6.6.6.6, 198.51.100.{i}"},
                ).status_code
                for i in range(10, 14)
            ]

        stranger_logs = in_one_window(rotating_logs)
        stranger_registrations = in_one_window(rotating_registrations)
        proxied = forwarded_logs()

    addresses = await stored_addresses(runtime)
    assert stranger_logs.count(200) <= 3
    assert 429 in stranger_logs
    assert stranger_registrations.count(201) <= 3
    assert 429 in stranger_registrations
    assert proxied == [200] * 4  # four clients behind the proxy, one request each
    assert set(addresses) == {"127.0.0.1"} | {f"198.51.100.{i}" for i in range(10, 14)}
