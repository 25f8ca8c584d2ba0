"""A server moved to another PASSHOUSE_PUBLIC_URL serves files with the new webServiceURL."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email.utils import parsedate_to_datetime

import httpx
import sqlalchemy as sa
from prometheus_client import REGISTRY

from conftest import ADMIN_TOKEN, PASS_TYPE_ID
from factories import IssuedPass, count_rows
from passhouse import issuing
from passhouse.bootstrap import Runtime
from passhouse.storage.database import Database
from passhouse.storage.tables import pkpass_cache, push_jobs
from passhouse.web.app import create_app

NEW_URL = "https://moved.example.test"
DEVICE = "device-library-0001"


def http_date(value: str) -> dt.datetime:
    return parsedate_to_datetime(value)


def signings() -> float:
    return REGISTRY.get_sample_value("passhouse_passes_signed_total") or 0.0


@asynccontextmanager
async def server_at(runtime: Runtime, public_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A new process on the same database, started as `passhouse serve` starts one."""
    settings = runtime.settings.model_copy(update={"public_url": public_url})
    database = Database(settings.database_url)
    async with database.transaction() as conn:
        await issuing.republish_for_build_key(conn, issuing.build_key(settings.web_service_url))
    moved = Runtime(settings=settings, database=database, sealer=runtime.sealer)
    transport = httpx.ASGITransport(app=create_app(moved))
    try:
        async with httpx.AsyncClient(transport=transport, base_url=public_url) as http:
            yield http
    finally:
        await database.dispose()


def pkpass_url(wallet_pass: IssuedPass) -> str:
    return f"/api/v1/passes/{wallet_pass.pass_type_id}/{wallet_pass.serial_number}/pkpass"


def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def test_after_a_move_downloads_carry_the_new_web_service_url(
    client: httpx.AsyncClient, wallet_pass: IssuedPass, runtime: Runtime
) -> None:
    before = await client.get(pkpass_url(wallet_pass), headers=admin_headers())

    async with server_at(runtime, NEW_URL) as moved:
        admin_download = await moved.get(pkpass_url(wallet_pass), headers=admin_headers())
        device_download = await moved.get(wallet_pass.path, headers=wallet_pass.auth)

    assert issuing.pass_json_of(before.content)["webServiceURL"] == (
        "https://passes.example.test/passkit"
    )
    assert issuing.pass_json_of(admin_download.content)["webServiceURL"] == f"{NEW_URL}/passkit"
    assert issuing.pass_json_of(device_download.content)["webServiceURL"] == f"{NEW_URL}/passkit"


async def test_a_device_holding_the_old_file_gets_the_new_one_not_a_304(
    client: httpx.AsyncClient, wallet_pass: IssuedPass, runtime: Runtime
) -> None:
    registered = await client.post(
        wallet_pass.registration_path(DEVICE), headers=wallet_pass.auth, json={"pushToken": "t1"}
    )
    first = await client.get(wallet_pass.path, headers=wallet_pass.auth)
    serials = await client.get(f"/passkit/v1/devices/{DEVICE}/registrations/{PASS_TYPE_ID}")
    old_tag = serials.json()["lastUpdated"]
    queued_before = await count_rows(runtime, push_jobs)

    async with server_at(runtime, NEW_URL) as moved:
        again = await moved.get(
            wallet_pass.path,
            headers={**wallet_pass.auth, "If-Modified-Since": first.headers["last-modified"]},
        )
        changed = await moved.get(
            f"/passkit/v1/devices/{DEVICE}/registrations/{PASS_TYPE_ID}",
            params={"passesUpdatedSince": old_tag},
        )
    queued_after = await count_rows(runtime, push_jobs)

    assert registered.status_code == 201
    assert queued_before == 0
    assert again.status_code == 200
    assert issuing.pass_json_of(again.content)["webServiceURL"] == f"{NEW_URL}/passkit"
    assert http_date(again.headers["last-modified"]) > http_date(first.headers["last-modified"])
    assert changed.status_code == 200
    assert changed.json()["serialNumbers"] == [wallet_pass.serial_number]
    assert queued_after == 1  # the device is told, in case it still reaches the old address


async def test_starting_again_at_the_same_address_changes_nothing(
    client: httpx.AsyncClient, wallet_pass: IssuedPass, runtime: Runtime
) -> None:
    await client.get(wallet_pass.path, headers=wallet_pass.auth)
    same_key = issuing.build_key(runtime.settings.web_service_url)

    async with runtime.database.transaction() as conn:
        changed = await issuing.republish_for_build_key(conn, same_key)
    signed_before = signings()
    again = await client.get(wallet_pass.path, headers=wallet_pass.auth)

    assert changed == {}
    assert again.status_code == 200
    assert signings() == signed_before  # served from the cache


async def test_moving_twice_re_versions_each_pass_once_per_move(
    client: httpx.AsyncClient, wallet_pass: IssuedPass, runtime: Runtime
) -> None:
    await client.get(wallet_pass.path, headers=wallet_pass.auth)

    async with server_at(runtime, NEW_URL) as moved:
        await moved.get(wallet_pass.path, headers=wallet_pass.auth)
    async with runtime.database.transaction() as conn:
        restarted = await issuing.republish_for_build_key(
            conn, issuing.build_key(f"{NEW_URL}/passkit")
        )
        moved_back = await issuing.republish_for_build_key(
            conn, issuing.build_key(runtime.settings.web_service_url)
        )

    assert restarted == {}
    assert moved_back == {PASS_TYPE_ID: 1}


async def test_files_cached_before_build_keys_are_re_signed_without_a_new_version(
    client: httpx.AsyncClient, wallet_pass: IssuedPass, runtime: Runtime
) -> None:
    first = await client.get(wallet_pass.path, headers=wallet_pass.auth)
    async with runtime.database.transaction() as conn:
        # What the migration leaves for a file cached by an older passhouse.
        await conn.execute(sa.update(pkpass_cache).values(build_key=""))

    async with server_at(runtime, NEW_URL) as moved:
        again = await moved.get(wallet_pass.path, headers=wallet_pass.auth)
    rows = await cache_rows(runtime)

    assert again.headers["last-modified"] == first.headers["last-modified"]
    assert issuing.pass_json_of(again.content)["webServiceURL"] == f"{NEW_URL}/passkit"
    assert rows == [issuing.build_key(f"{NEW_URL}/passkit")]


async def cache_rows(runtime: Runtime) -> list[str]:
    async with runtime.database.reader() as conn:
        return list((await conn.execute(sa.select(pkpass_cache.c.build_key))).scalars())
