"""Use cases: versions, pushes queued with the change, and no lost update under concurrency."""

from __future__ import annotations

import asyncio
import random

import httpx
import pytest
import sqlalchemy as sa

from factories import IssuedPass, issue
from passhouse import devmode, issuing
from passhouse.bootstrap import Runtime
from passhouse.errors import InvalidInput
from passhouse.storage import pass_versions
from passhouse.storage.tables import passes, push_jobs


async def register(client: httpx.AsyncClient, wallet_pass: IssuedPass, device: str) -> None:
    response = await client.post(
        wallet_pass.registration_path(device),
        headers=wallet_pass.auth,
        json={"pushToken": f"token-{device}"},
    )
    assert response.status_code in (200, 201)


async def queued(runtime: Runtime) -> list[tuple[str, int]]:
    async with runtime.database.reader() as conn:
        result = await conn.execute(
            sa.select(push_jobs.c.push_token, push_jobs.c.generation).order_by(
                push_jobs.c.push_token
            )
        )
        return [(token, int(generation)) for token, generation in result.all()]


async def test_each_change_takes_the_next_version_of_its_pass_type(
    runtime: Runtime, builder: issuing.PassBuilder, template: str
) -> None:
    first = await issue(runtime, builder, template)
    second = await issue(runtime, builder, template)

    async with runtime.database.transaction() as conn:
        row, _ = await issuing.change_pass_data(
            conn,
            builder,
            first.pass_type_id,
            first.serial_number,
            {"balance": 5},
            merge=True,
            actor=pass_versions.CLI,
        )

    async with runtime.database.reader() as conn:
        versions = dict(
            (await conn.execute(sa.select(passes.c.serial_number, passes.c.version))).all()
        )
    assert versions == {first.serial_number: 3, second.serial_number: 2}
    assert row.version == 3


async def test_a_change_that_changes_nothing_makes_no_version_and_no_push(
    runtime: Runtime, builder: issuing.PassBuilder, client: httpx.AsyncClient, template: str
) -> None:
    wallet_pass = await issue(runtime, builder, template, balance=7)
    await register(client, wallet_pass, "device-a")

    async with runtime.database.transaction() as conn:
        row, changed = await issuing.change_pass_data(
            conn, builder, wallet_pass.pass_type_id, wallet_pass.serial_number,
            {"balance": 7}, merge=True, actor=pass_versions.CLI,
        )  # fmt: skip

    assert (changed, row.version) == (False, 1)
    assert await queued(runtime) == []


async def test_a_burst_of_changes_queues_one_push_per_device(
    runtime: Runtime, builder: issuing.PassBuilder, client: httpx.AsyncClient, template: str
) -> None:
    wallet_pass = await issue(runtime, builder, template)
    other = await issue(runtime, builder, template)
    await register(client, wallet_pass, "device-a")
    await register(client, other, "device-a")
    await register(client, wallet_pass, "device-b")

    for balance in (1, 2, 3):
        for target in (wallet_pass, other):
            async with runtime.database.transaction() as conn:
                await issuing.change_pass_data(
                    conn, builder, target.pass_type_id, target.serial_number,
                    {"balance": balance}, merge=True, actor=pass_versions.CLI,
                )  # fmt: skip

    jobs = await queued(runtime)
    assert [token for token, _ in jobs] == ["token-device-a", "token-device-b"]


async def test_replacing_a_template_versions_every_pass_and_queues_their_devices(
    runtime: Runtime, builder: issuing.PassBuilder, client: httpx.AsyncClient, template: str
) -> None:
    made = [await issue(runtime, builder, template) for _ in range(5)]
    for index, wallet_pass in enumerate(made):
        await register(client, wallet_pass, f"device-{index}")
    new_json = {**devmode.DEMO_PASS_JSON, "description": "New look"}

    async with runtime.database.transaction() as conn:
        _, changed = await issuing.replace_template(
            conn,
            template,
            name=None,
            pass_json=new_json,
            assets=devmode.demo_assets(),
            actor=pass_versions.CLI,
        )

    async with runtime.database.reader() as conn:
        versions = set((await conn.execute(sa.select(passes.c.version))).scalars())
    assert changed == 5
    assert versions == {6}  # five issues took 1..5; the template change takes 6 for all
    assert len(await queued(runtime)) == 5
    response = await client.get(made[0].path, headers=made[0].auth)
    assert issuing.pass_json_of(response.content)["description"] == "New look"


async def test_a_failed_change_queues_nothing(
    runtime: Runtime, builder: issuing.PassBuilder, client: httpx.AsyncClient, template: str
) -> None:
    wallet_pass = await issue(runtime, builder, template)
    await register(client, wallet_pass, "device-a")

    try:
        async with runtime.database.transaction() as conn:
            await issuing.change_pass_data(
                conn, builder, wallet_pass.pass_type_id, wallet_pass.serial_number,
                {"balance": 99}, merge=True, actor=pass_versions.CLI,
            )  # fmt: skip
            raise RuntimeError("crash before commit")
    except RuntimeError:
        pass

    assert await queued(runtime) == []


async def test_concurrent_writers_never_hide_a_change_from_a_polling_device(
    runtime: Runtime, builder: issuing.PassBuilder, client: httpx.AsyncClient, template: str
) -> None:
    """Writers change passes concurrently while a device follows the tags.

    Every committed (serial, version) must fall inside exactly one poll window
    (tag_before, tag_after] whose answer listed that serial: otherwise the device skipped
    it for good, which is how timestamp-keyed servers lose updates.
    """
    made = [await issue(runtime, builder, template) for _ in range(8)]
    for wallet_pass in made:
        await register(client, wallet_pass, "device-x")
    path = f"/passkit/v1/devices/device-x/registrations/{made[0].pass_type_id}"
    committed: list[tuple[str, int]] = []
    windows: list[tuple[int, int, set[str]]] = []
    rng = random.Random(7)

    async def writer(writer_id: int) -> None:
        for step in range(12):
            target = rng.choice(made)
            async with runtime.database.transaction() as conn:
                row, changed = await issuing.change_pass_data(
                    conn, builder, target.pass_type_id, target.serial_number,
                    {"balance": writer_id * 1000 + step}, merge=True, actor=pass_versions.CLI,
                )  # fmt: skip
            if changed:
                committed.append((target.serial_number, int(row.version)))
            await asyncio.sleep(0)

    async def poll(tag: int) -> int:
        response = await client.get(path, params={"passesUpdatedSince": str(tag)})
        if response.status_code == 204:
            return tag
        body = response.json()
        new_tag = int(body["lastUpdated"])
        windows.append((tag, new_tag, set(body["serialNumbers"])))
        return new_tag

    async def device(done: asyncio.Event) -> None:
        tag = await poll(0)
        while not done.is_set():
            tag = await poll(tag)
            # On SQLite the hot path reads without awaiting anything; let the writers run.
            await asyncio.sleep(0)
        await poll(tag)  # one last look after every writer finished

    done = asyncio.Event()
    reader = asyncio.create_task(device(done))
    await asyncio.gather(*(writer(i) for i in range(4)))
    done.set()
    await reader

    assert len(committed) > 20
    for serial, version in committed:
        seen = [w for w in windows if w[0] < version <= w[1]]
        assert len(seen) == 1, f"version {version} of {serial} fell in {len(seen)} windows"
        assert serial in seen[0][2], f"{serial} v{version} was never listed"


async def test_data_with_nan_is_refused_before_it_reaches_the_database(
    runtime: Runtime, builder: issuing.PassBuilder, template: str
) -> None:
    async with runtime.database.transaction() as conn:
        with pytest.raises(InvalidInput, match="NaN"):
            await issuing.issue_pass(
                conn,
                builder,
                template_ref=template,
                data={"name": "A", "balance": float("nan")},
                actor=pass_versions.CLI,
            )
