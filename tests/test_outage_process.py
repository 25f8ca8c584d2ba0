"""A real `passhouse serve` through a PostgreSQL outage: 503s, two log lines, recovery."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from conftest import PG_ENV
from databases import fresh_postgres_database
from passhouse import devmode
from tcp_proxy import TcpProxy


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def until_ok(http: httpx.AsyncClient, path: str, within: float = 60, **kw: object) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            if (await http.get(path, **kw)).status_code == 200:  # type: ignore[arg-type]
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{path} did not answer 200 within {within} s"
        await asyncio.sleep(0.2)


@pytest.fixture
def empty_postgres() -> Iterator[str]:
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip("a server outage needs PostgreSQL (PASSHOUSE_TEST_DATABASE_URL)")
    with fresh_postgres_database(base, "passhouse_outage") as url:
        yield url


@pytest.mark.slow
async def test_serve_answers_503_through_an_outage_logs_it_once_and_recovers(
    tmp_path: Path, empty_postgres: str
) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    url = empty_postgres
    target = sa.make_url(url)
    proxy = TcpProxy(target.host or "127.0.0.1", target.port or 5432)
    await proxy.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PASSHOUSE_")}
    env |= {"PASSHOUSE_DATABASE_URL": proxy.url(url), "PASSHOUSE_DATA_DIR": str(tmp_path)}
    with log.open("wb") as out:
        server = await asyncio.create_subprocess_exec(
            *[sys.executable, "-m", "passhouse", "serve", "--port", str(port)],
            *["--log-level", "warning"],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=out,
        )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            await until_ok(http, "/readyz")
            admin = {"Authorization": f"Bearer {(tmp_path / 'admin_token').read_text().strip()}"}
            issued = await http.post(
                "/api/v1/passes",
                headers=admin,
                json={"template": devmode.DEMO_TEMPLATE, "data": {"name": "Ada", "balance": 1}},
            )
            serials = f"/passkit/v1/devices/d1/registrations/{devmode.DEV_PASS_TYPE_ID}"

            await proxy.stop()
            during = []
            for _ in range(20):
                during.append(await http.get("/api/v1/passes", headers=admin))
                during.append(await http.get(serials))
            not_ready = await http.get("/readyz")
            await asyncio.sleep(2)  # the worker's lanes and housekeeping fail meanwhile
            await proxy.start()
            await until_ok(http, "/api/v1/passes", headers=admin)
            listed = await http.get("/api/v1/passes", headers=admin)
            ready = await http.get("/readyz")
            # The end is logged by a probe that runs once a second: wait for it, boundedly.
            for _ in range(150):
                if "database_fault_ended" in log.read_text():
                    break
                await asyncio.sleep(0.1)
    finally:
        if server.returncode is None:
            server.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(server.wait(), 30)
            except TimeoutError:
                server.kill()
                await server.wait()
        if proxy.running:
            await proxy.stop()
    output = log.read_text()

    assert issued.status_code == 201, issued.text
    assert {response.status_code for response in during} == {503}
    assert {response.headers["retry-after"] for response in during} == {"5"}
    assert not_ready.status_code == 503
    assert listed.status_code == 200
    assert len(listed.json()["items"]) == 1
    assert ready.status_code == 200
    assert "Traceback" not in output, output
    assert output.count("database_fault_started") == 1, output
    assert output.count("database_fault_ended") == 1, output
