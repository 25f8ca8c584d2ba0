"""Sign ahead (ADR 0023): the files queued pushes will make devices download, signed first."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY

from conftest import TEMPLATE_JSON
from factories import IssuedPass, issue
from passhouse import devmode, issuing, sign_ahead
from passhouse.bootstrap import Runtime
from passhouse.sign_ahead import Cursor, Share, sign_pending
from passhouse.storage import pass_versions
from passhouse.storage import sign_ahead as sign_ahead_queries
from passhouse.storage.tables import pkpass_cache


def _signed() -> float:
    return REGISTRY.get_sample_value("passhouse_passes_signed_total") or 0.0


async def _register(client: httpx.AsyncClient, issued: IssuedPass, device: str) -> None:
    response = await client.post(
        issued.registration_path(device), headers=issued.auth, json={"pushToken": f"t-{device}"}
    )
    assert response.status_code == 201


async def _change_template(runtime: Runtime) -> None:
    async with runtime.database.transaction() as conn:
        await issuing.replace_template(
            conn,
            "card",
            name=None,
            pass_json={**TEMPLATE_JSON, "description": "Signed ahead"},
            assets=devmode.demo_assets(),
            actor=pass_versions.CLI,
        )


async def _cached(runtime: Runtime) -> dict[int, int]:
    async with runtime.database.reader() as conn:
        rows = await conn.execute(sa.select(pkpass_cache.c.pass_id, pkpass_cache.c.version))
        return {int(pass_id): int(version) for pass_id, version in rows.all()}


async def _versions(runtime: Runtime) -> dict[int, int]:
    async with runtime.database.reader() as conn:
        rows = await conn.execute(sa.text("SELECT id, version FROM passes"))
        return {int(pass_id): int(version) for pass_id, version in rows.all()}


async def test_queued_passes_are_signed_ahead_and_downloads_read_them(
    runtime: Runtime,
    builder: issuing.PassBuilder,
    client: httpx.AsyncClient,
    template: str,
) -> None:
    woken = [await issue(runtime, builder, template) for _ in range(3)]
    quiet = await issue(runtime, builder, template)  # on no device: no push, nothing to sign
    for number, issued in enumerate(woken):
        await _register(client, issued, f"device-{number}")
    await _change_template(runtime)

    signed = await sign_pending(runtime.database, builder, Share())

    versions = await _versions(runtime)
    cached = await _cached(runtime)
    assert signed == 3
    assert {p.pass_id: cached.get(p.pass_id) for p in woken} == {
        p.pass_id: versions[p.pass_id] for p in woken
    }
    assert quiet.pass_id not in cached
    assert await sign_pending(runtime.database, builder, Share()) == 0
    # The app's own builder (another process, as far as memory goes) signs nothing.
    before = _signed()
    downloaded = await client.get(woken[0].path, headers=woken[0].auth)
    assert downloaded.status_code == 200
    assert issuing.pass_json_of(downloaded.content)["description"] == "Signed ahead"
    assert _signed() == before


async def test_each_process_signs_its_share(
    runtime: Runtime,
    builder: issuing.PassBuilder,
    client: httpx.AsyncClient,
    template: str,
) -> None:
    woken = [await issue(runtime, builder, template) for _ in range(4)]
    for number, issued in enumerate(woken):
        await _register(client, issued, f"device-{number}")
    await _change_template(runtime)

    first = await sign_pending(runtime.database, builder, Share(0, 2))
    after_first = set(await _cached(runtime))
    second = await sign_pending(runtime.database, builder, Share(1, 2))

    assert after_first == {p.pass_id for p in woken if p.pass_id % 2 == 0}
    assert first + second == 4
    assert set(await _cached(runtime)) == {p.pass_id for p in woken}


async def test_servers_with_different_public_urls_do_not_re_sign_each_others_files(
    runtime: Runtime,
    builder: issuing.PassBuilder,
    client: httpx.AsyncClient,
    template: str,
) -> None:
    # Two servers on one database, one moved to another address (ADR 0012): each replaces
    # the other's file on a download, but their sign-ahead loops must settle, not take
    # turns replacing the stored file for as long as the pushes stay queued.
    woken = [await issue(runtime, builder, template) for _ in range(2)]
    for number, issued in enumerate(woken):
        await _register(client, issued, f"device-{number}")
    await _change_template(runtime)
    elsewhere = issuing.PassBuilder(runtime.sealer, "https://elsewhere.example/passkit")

    assert await sign_pending(runtime.database, builder, Share()) == 2
    assert await sign_pending(runtime.database, elsewhere, Share()) == 0
    assert await sign_pending(runtime.database, builder, Share()) == 0
    # The other server's download still gets a file with its own webServiceURL.
    issued = woken[0]
    version = (await _versions(runtime))[issued.pass_id]
    data, _ = await elsewhere.pkpass(runtime.database, issued.pass_id, version)
    assert issuing.pass_json_of(data)["webServiceURL"] == "https://elsewhere.example/passkit"


async def test_a_sweep_stopped_by_its_limit_is_taken_up_where_it_stopped(
    runtime: Runtime,
    builder: issuing.PassBuilder,
    client: httpx.AsyncClient,
    template: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sign_ahead, "WINDOW", 1)  # one job per statement: three windows
    reads: list[int | None] = []  # the real statement, with where each read started
    unsigned_pending = sign_ahead_queries.unsigned_pending

    async def read(conn: Any, **arguments: Any) -> Any:
        reads.append(arguments["before_job_id"])
        return await unsigned_pending(conn, **arguments)

    monkeypatch.setattr(sign_ahead_queries, "unsigned_pending", read)
    woken = [await issue(runtime, builder, template) for _ in range(3)]
    for number, issued in enumerate(woken):
        await _register(client, issued, f"device-{number}")
    await _change_template(runtime)
    cursor = Cursor()

    sweeps = []
    for _ in range(4):
        reads.clear()
        signed = await sign_pending(runtime.database, builder, Share(), limit=1, cursor=cursor)
        sweeps.append((signed, set(await _cached(runtime)), len(reads)))

    # One window a sweep, each going on from the last, older jobs each time.
    cached = [cached for _, cached, _ in sweeps]
    assert [signed for signed, _, _ in sweeps] == [1, 1, 1, 0]
    assert [len(found) for found in cached] == [1, 2, 3, 3]
    assert cached[0] < cached[1] < cached[2] == {p.pass_id for p in woken}
    # Each sweep read one window, from where the last stopped; the last found the end.
    assert [windows for _, _, windows in sweeps] == [1, 1, 1, 1]
    assert cursor.before is None
