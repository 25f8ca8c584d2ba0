"""Two server processes on one database: what one commits, the other serves at once.

`passhouse serve --workers N` runs N processes, each with its own connections, readers and
in-memory caches (signed files, templates, signers). A device's calls land on any of them,
so a change committed through one must be listed and downloaded through the other right
away: a stale read there answers 204 "nothing changed" to a device whose pass did change,
and the device keeps its old copy until the next push.
"""

from __future__ import annotations

import base64
import email.utils
import io
import json
import zipfile
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from conftest import SECRET_KEY, TEMPLATE_JSON
from factories import IssuedPass
from passhouse import devmode
from passhouse.bootstrap import Runtime
from passhouse.settings import Settings
from passhouse.storage.database import Database
from passhouse.storage.sealing import Sealer
from passhouse.web.app import create_app

DEVICE = "device-two-processes"


@pytest.fixture
async def other(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A second server process: its own Database (connections, hot-path readers) and app."""
    database = Database(settings.database_url)
    app = create_app(Runtime(settings=settings, database=database, sealer=Sealer(SECRET_KEY)))
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="https://passes.example.test"
        ) as http:
            yield http
    finally:
        await database.dispose()


def _pass_json(pkpass: bytes) -> dict[str, Any]:
    with zipfile.ZipFile(io.BytesIO(pkpass)) as archive:
        loaded: dict[str, Any] = json.loads(archive.read("pass.json"))
        return loaded


async def _edit_template(admin: httpx.AsyncClient, description: str) -> None:
    assets = {n: base64.b64encode(d).decode() for n, d in devmode.demo_assets().items()}
    response = await admin.put(
        "/api/v1/templates/card",
        json={"pass_json": {**TEMPLATE_JSON, "description": description}, "assets": assets},
    )
    assert response.status_code == 200, response.text


async def test_a_change_committed_through_one_process_is_listed_by_the_other(
    client: httpx.AsyncClient,
    admin: httpx.AsyncClient,
    other: httpx.AsyncClient,
    wallet_pass: IssuedPass,
) -> None:
    list_path = f"/passkit/v1/devices/{DEVICE}/registrations/{wallet_pass.pass_type_id}"
    registered = await client.post(
        wallet_pass.registration_path(DEVICE), headers=wallet_pass.auth, json={"pushToken": "ab"}
    )
    assert registered.status_code == 201
    # The device syncs through the other process, which warms its readers and caches.
    synced = await other.get(list_path)
    tag = synced.json()["lastUpdated"]
    first = await other.get(wallet_pass.path, headers=wallet_pass.auth)
    assert first.status_code == 200

    for round_ in range(3):
        await _edit_template(admin, f"Edited {round_}")

        listed = await other.get(f"{list_path}?passesUpdatedSince={tag}")
        assert listed.status_code == 200, f"round {round_}: {listed.status_code}"
        assert listed.json()["serialNumbers"] == [wallet_pass.serial_number]
        assert int(listed.json()["lastUpdated"]) > int(tag)
        since = first.headers["last-modified"]
        downloaded = await other.get(
            wallet_pass.path, headers={**wallet_pass.auth, "If-Modified-Since": since}
        )
        assert downloaded.status_code == 200
        assert _pass_json(downloaded.content)["description"] == f"Edited {round_}"
        modified = email.utils.parsedate_to_datetime(downloaded.headers["last-modified"])
        assert modified > email.utils.parsedate_to_datetime(since)
        tag, first = listed.json()["lastUpdated"], downloaded
        # And nothing is listed once the device holds the new tag.
        assert (await other.get(f"{list_path}?passesUpdatedSince={tag}")).status_code == 204


async def test_a_file_signed_by_one_process_is_served_by_the_other(
    client: httpx.AsyncClient, other: httpx.AsyncClient, wallet_pass: IssuedPass
) -> None:
    """The shared pkpass_cache table: one signature per version, whichever process asks."""
    signed_here = await client.get(wallet_pass.path, headers=wallet_pass.auth)
    signed = REGISTRY.get_sample_value("passhouse_passes_signed_total")
    served_there = await other.get(wallet_pass.path, headers=wallet_pass.auth)

    assert signed_here.status_code == served_there.status_code == 200
    assert served_there.content == signed_here.content
    assert REGISTRY.get_sample_value("passhouse_passes_signed_total") == signed
