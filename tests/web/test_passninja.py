"""The PassNinja-compatible API, driven by PassNinja's own Python SDK over real HTTP.

The SDK is synchronous (requests): its calls run in a thread while uvicorn serves the app
on loopback in the test's event loop, on the test's database.
"""

from __future__ import annotations

import asyncio
import io
import json
import socket
import zipfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import passninja
import pytest
import requests
import sqlalchemy as sa
import uvicorn

from conftest import ADMIN_TOKEN, PASS_TYPE_ID, TEMPLATE_JSON
from passhouse import devmode, issuing
from passhouse.bootstrap import Runtime
from passhouse.settings import Settings
from passhouse.storage import api_keys
from passhouse.storage.tables import push_jobs
from passhouse.web.app import create_app

T = TypeVar("T")
ACCOUNT_ID = "aid_0x2a"


@dataclass
class Server:
    base: str
    runtime: Runtime

    def sdk(self, api_key: str = ADMIN_TOKEN, account_id: str = ACCOUNT_ID) -> Any:
        client = passninja.PassNinjaClient(account_id, api_key)
        client._PASSNINJA_BASE_PATH = f"{self.base}/v1"
        return client


async def serve(settings: Settings, runtime: Runtime) -> AsyncIterator[Server]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        served = Runtime(
            settings=settings.model_copy(update={"public_url": base}),
            database=runtime.database,
            sealer=runtime.sealer,
        )
        config = uvicorn.Config(
            create_app(served), log_level="warning", log_config=None, ws="none", lifespan="on"
        )
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            async with asyncio.timeout(30):
                while not server.started:
                    assert not task.done(), "the server stopped before it started"
                    await asyncio.sleep(0.02)
            yield Server(base, served)
        finally:
            server.should_exit = True
            await task


@pytest.fixture
async def server(settings: Settings, runtime: Runtime, template: str) -> AsyncIterator[Server]:
    async for running in serve(settings, runtime):
        yield running


async def call(function: Callable[..., T], *args: Any) -> T:
    """One SDK call, in a thread: it blocks on HTTP to the server in this event loop."""
    return await asyncio.to_thread(function, *args)


def http_error_of(exc_info: pytest.ExceptionInfo[requests.HTTPError]) -> tuple[int, Any]:
    response = exc_info.value.response
    assert response is not None
    return response.status_code, response.json()


async def queued_tokens(runtime: Runtime) -> list[str]:
    async with runtime.database.reader() as conn:
        result = await conn.execute(sa.select(push_jobs.c.push_token).order_by("push_token"))
        return list(result.scalars())


def pass_json_of(pkpass: bytes) -> dict[str, Any]:
    with zipfile.ZipFile(io.BytesIO(pkpass)) as archive:
        loaded: dict[str, Any] = json.loads(archive.read("pass.json"))
        return loaded


# --- the SDK's calls ----------------------------------------------------------------------


async def test_the_sdk_creates_a_pass_whose_urls_lead_to_the_page_and_the_file(
    server: Server,
) -> None:
    sdk = server.sdk()

    created = await call(sdk.passes.create, "card", {"name": "Ada", "balance": 10})

    assert created.passTemplate == "card"
    assert created.serialNumber
    assert created.status == "active"
    assert created.url == created.urls["landing"]
    assert created.url.startswith(f"{server.base}/p/")
    async with httpx.AsyncClient() as http:
        page = await http.get(created.urls["landing"])
        download = await http.get(created.urls["apple"])
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert download.headers["content-type"] == "application/vnd.apple.pkpass"
    assert pass_json_of(download.content)["serialNumber"] == created.serialNumber


async def test_the_sdk_reads_lists_and_deletes_passes(server: Server) -> None:
    sdk = server.sdk()
    first = await call(sdk.passes.create, "card", {"name": "Ada", "balance": 10})
    second = await call(sdk.passes.create, "card", {"name": "Grace", "balance": 3.5})

    fetched = await call(sdk.passes.get, "card", first.serialNumber)
    listed = await call(sdk.passes.find, "card")
    deleted = await call(sdk.passes.delete, "card", second.serialNumber)
    after = await call(sdk.passes.get, "card", second.serialNumber)

    assert (fetched.serialNumber, fetched.passTemplate) == (first.serialNumber, "card")
    assert fetched.urls == first.urls
    assert [p.serialNumber for p in listed] == [first.serialNumber, second.serialNumber]
    assert deleted == second.serialNumber
    assert after.status == "voided"
    async with httpx.AsyncClient() as http:
        download = await http.get(after.urls["apple"])
    assert pass_json_of(download.content)["voided"] is True


async def test_the_sdk_put_replaces_the_data_and_patch_merges_it(server: Server) -> None:
    sdk = server.sdk()
    created = await call(sdk.passes.create, "card", {"name": "Ada", "balance": 10, "tier": "gold"})
    serial = created.serialNumber
    raw = f"{server.base}/v1/passes/card/{serial}"
    headers = {"X-API-KEY": ADMIN_TOKEN, "X-ACCOUNT-ID": ACCOUNT_ID}

    await call(sdk.passes.put, "card", serial, {"name": "Ada", "balance": 20})
    async with httpx.AsyncClient(headers=headers) as http:
        after_put = (await http.get(raw)).json()
    await call(sdk.passes.patch, "card", serial, {"balance": 25})
    async with httpx.AsyncClient(headers=headers) as http:
        after_patch = (await http.get(raw)).json()

    assert after_put["pass"] == {"name": "Ada", "balance": 20}
    assert after_patch["pass"] == {"name": "Ada", "balance": 25}
    assert after_patch["passType"] == after_patch["passTemplate"] == "card"


async def test_an_update_through_the_sdk_pushes_the_devices_holding_the_pass(
    server: Server,
) -> None:
    sdk = server.sdk()
    created = await call(sdk.passes.create, "card", {"name": "Ada", "balance": 10})
    async with httpx.AsyncClient(base_url=server.base) as http:
        token = pass_json_of((await http.get(created.urls["apple"])).content)["authenticationToken"]
        registered = await http.post(
            f"/passkit/v1/devices/device-1/registrations/{PASS_TYPE_ID}/{created.serialNumber}",
            headers={"Authorization": f"ApplePass {token}"},
            json={"pushToken": "push-token-1"},
        )
    assert registered.status_code == 201
    assert await queued_tokens(server.runtime) == []

    await call(sdk.passes.put, "card", created.serialNumber, {"name": "Ada", "balance": 11})
    after_put = await queued_tokens(server.runtime)
    async with server.runtime.database.transaction() as conn:
        await conn.execute(push_jobs.delete())
    await call(sdk.passes.patch, "card", created.serialNumber, {"balance": 12})

    assert after_put == ["push-token-1"]
    assert await queued_tokens(server.runtime) == ["push-token-1"]


async def test_the_sdk_reads_the_required_keys_before_creating(server: Server) -> None:
    sdk = server.sdk()

    with pytest.raises(passninja.PassNinjaInvalidArgumentsException, match="balance"):
        await call(sdk.passes.create, "card", {"name": "Ada"})

    async with httpx.AsyncClient(headers={"X-API-KEY": ADMIN_TOKEN}) as http:
        keys = (await http.get(f"{server.base}/v1/passtypes/keys/card")).json()
    assert keys == {"passType": "card", "passTemplate": "card", "keys": ["balance", "name"]}


async def test_the_sdk_finds_a_pass_template(server: Server) -> None:
    sdk = server.sdk()
    await call(sdk.passes.create, "card", {"name": "Ada", "balance": 10})

    found = await call(sdk.pass_templates.find, "card")

    assert (found.id, found.name, found.platform, found.style) == (
        "card",
        "card",
        "apple",
        "storeCard",
    )
    assert found.pass_type_id == PASS_TYPE_ID
    assert (found.issued_pass_count, found.installed_pass_count) == (1, 0)


# --- errors as the SDK raises them ------------------------------------------------------


async def test_a_wrong_api_key_is_a_401_http_error_for_the_sdk(server: Server) -> None:
    sdk = server.sdk(api_key="not-a-key")

    with pytest.raises(requests.HTTPError) as raised:
        await call(sdk.passes.find, "card")

    status, body = http_error_of(raised)
    assert status == 401
    assert body["error"]["status_code"] == 401
    assert body["error"]["code"] == "unauthorized"
    assert body["error"]["message"]


async def test_an_unknown_pass_or_template_is_a_404_http_error(server: Server) -> None:
    sdk = server.sdk()

    with pytest.raises(requests.HTTPError) as no_pass:
        await call(sdk.passes.get, "card", "no-such-serial")
    with pytest.raises(requests.HTTPError) as no_template:
        await call(sdk.passes.put, "no-such-template", "x", {"a": "b"})

    assert http_error_of(no_pass)[0] == 404
    assert http_error_of(no_pass)[1]["error"]["status_code"] == 404
    assert http_error_of(no_template)[0] == 404


async def test_data_that_breaks_the_pass_is_a_422_and_changes_nothing(server: Server) -> None:
    sdk = server.sdk()
    created = await call(sdk.passes.create, "card", {"name": "Ada", "balance": 10})

    with pytest.raises(requests.HTTPError) as raised:
        await call(sdk.passes.put, "card", created.serialNumber, {"name": "Ada"})

    status, body = http_error_of(raised)
    assert status == 422
    assert "balance" in body["error"]["message"]
    assert (await call(sdk.passes.get, "card", created.serialNumber)).status == "active"
    async with httpx.AsyncClient(headers={"X-API-KEY": ADMIN_TOKEN}) as http:
        kept = (await http.get(f"{server.base}/v1/passes/card/{created.serialNumber}")).json()
    assert kept["pass"] == {"name": "Ada", "balance": 10}


async def test_decrypt_is_a_clear_501_http_error(server: Server) -> None:
    sdk = server.sdk()

    with pytest.raises(requests.HTTPError) as raised:
        await call(sdk.passes.decrypt, "card", "00a4040007")

    status, body = http_error_of(raised)
    assert status == 501
    assert "NFC" in body["error"]["message"]


async def test_a_configured_account_id_must_match(
    settings: Settings, runtime: Runtime, template: str
) -> None:
    configured = settings.model_copy(update={"passninja_account_id": ACCOUNT_ID})
    async for server in serve(configured, runtime):
        with pytest.raises(requests.HTTPError) as raised:
            await call(server.sdk(account_id="aid_0xother").passes.find, "card")
        listed = await call(server.sdk().passes.find, "card")

    assert http_error_of(raised)[0] == 401
    assert listed == []


# --- the mapping, over the ASGI app -------------------------------------------------------


PN_HEADERS = {"X-API-KEY": ADMIN_TOKEN, "X-ACCOUNT-ID": ACCOUNT_ID}


@pytest.fixture
async def second_template(runtime: Runtime, pass_type: str, template: str) -> str:
    async with runtime.database.transaction() as conn:
        await issuing.create_template(
            conn,
            name="card-b",
            pass_type_id=pass_type,
            pass_json=TEMPLATE_JSON,
            assets=devmode.demo_assets(),
        )
    return "card-b"


async def test_a_pass_is_found_only_under_its_own_template(
    client: httpx.AsyncClient, second_template: str
) -> None:
    created = await client.post(
        "/v1/passes",
        headers=PN_HEADERS,
        json={"passType": "card", "pass": {"name": "Ada", "balance": 1}, "serialNumber": "s-1"},
    )

    other = await client.get("/v1/passes/card-b/s-1", headers=PN_HEADERS)
    changed = await client.patch(
        "/v1/passes/card-b/s-1", headers=PN_HEADERS, json={"pass": {"balance": 2}}
    )
    taken = await client.post(
        "/v1/passes",
        headers=PN_HEADERS,
        json={"passTemplate": "card-b", "pass": {"name": "B", "balance": 1}, "serialNumber": "s-1"},
    )
    listed = await client.get("/v1/passes/card-b", headers=PN_HEADERS)

    assert created.status_code == 201
    assert created.json()["serialNumber"] == "s-1"
    assert (other.status_code, changed.status_code) == (404, 404)
    # One Apple pass type, one serial namespace: the serial is taken for both templates.
    assert taken.status_code == 409
    assert taken.json()["error"]["status_code"] == 409
    assert listed.json() == {"passes": []}


async def test_pass_templates_lists_every_template_with_its_counts(
    client: httpx.AsyncClient, second_template: str, wallet_pass: Any
) -> None:
    response = await client.get("/v1/pass_templates", headers=PN_HEADERS)

    assert response.status_code == 200
    counts = {t["id"]: t["issued_pass_count"] for t in response.json()["pass_templates"]}
    assert counts == {"card": 1, "card-b": 0}


async def test_a_key_made_with_api_key_create_works_until_revoked(
    client: httpx.AsyncClient, runtime: Runtime, template: str
) -> None:
    key = "ph_" + "k" * 40
    async with runtime.database.transaction() as conn:
        key_id = await api_keys.add_key(conn, name="pn", key=key, now=issuing.now_seconds())

    before = await client.get("/v1/pass_templates", headers={"X-API-KEY": key})
    async with runtime.database.transaction() as conn:
        await api_keys.revoke_key(conn, key_id, now=issuing.now_seconds())
    after = await client.get("/v1/pass_templates", headers={"X-API-KEY": key})
    bearer_only = await client.get(
        "/v1/pass_templates", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )

    assert (before.status_code, after.status_code, bearer_only.status_code) == (200, 401, 401)


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"pass": {"name": "Ada", "balance": 1}}, 422, "passType or passTemplate"),
        ({"passType": "card", "passTemplate": "other", "pass": {}}, 422, "different"),
        ({"passType": "card", "pass": {"name": "A\x00", "balance": 1}}, 422, "NUL"),
        ({"passType": "card\x00", "pass": {}}, 422, "NUL"),
        ({"passType": "card", "passData": {}}, 422, "passData"),
        ({"passType": "card", "pass": ["not", "an", "object"]}, 422, "pass"),
        ({"passType": "card", "pass": {"name": "Ada", "balance": 1}, "serialNumber": "a/b"}, 422,
         "serial_number"),
        ({"passType": "nope", "pass": {}}, 404, "nope"),
        ([1, 2], 422, "JSON object"),
    ],
)  # fmt: skip
async def test_bad_create_bodies_are_4xx_in_passninja_shape(
    client: httpx.AsyncClient, template: str, body: Any, status: int, needle: str
) -> None:
    response = await client.post("/v1/passes", headers=PN_HEADERS, json=body)

    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["status_code"] == status
    assert needle in error["message"]
    assert error["code"]


async def test_a_body_that_is_not_json_is_400(client: httpx.AsyncClient, template: str) -> None:
    response = await client.post(
        "/v1/passes",
        headers={**PN_HEADERS, "Content-Type": "application/json"},
        content=b"{not json",
    )

    assert response.status_code == 400
    assert response.json()["error"]["status_code"] == 400


async def test_a_body_nested_deeper_than_the_limit_is_400(
    client: httpx.AsyncClient, settings: Settings, template: str
) -> None:
    deep: Any = "x"
    for _ in range(settings.json_max_depth + 1):
        deep = [deep]

    response = await client.post(
        "/v1/passes", headers=PN_HEADERS, json={"passType": "card", "pass": {"name": deep}}
    )

    assert response.status_code == 400
    assert response.json()["error"]["status_code"] == 400
    assert str(settings.json_max_depth) in response.json()["error"]["message"]


async def test_a_changed_template_or_serial_in_the_body_is_422(
    client: httpx.AsyncClient, wallet_pass: Any
) -> None:
    url = f"/v1/passes/card/{wallet_pass.serial_number}"

    other_template = await client.put(
        url, headers=PN_HEADERS, json={"passTemplate": "x", "pass": {"name": "A", "balance": 1}}
    )
    other_serial = await client.patch(
        url, headers=PN_HEADERS, json={"serialNumber": "other", "pass": {"balance": 1}}
    )

    assert (other_template.status_code, other_serial.status_code) == (422, 422)


async def test_voiding_twice_is_200_and_a_voided_pass_cannot_change(
    client: httpx.AsyncClient, wallet_pass: Any
) -> None:
    url = f"/v1/passes/card/{wallet_pass.serial_number}"
    voided = await client.delete(url, headers=PN_HEADERS)
    again = await client.delete(url, headers=PN_HEADERS)

    response = await client.patch(url, headers=PN_HEADERS, json={"pass": {"balance": 1}})

    assert (voided.status_code, again.status_code) == (200, 200)
    assert again.json()["updatedDate"] == voided.json()["updatedDate"]
    assert response.status_code == 409
    assert response.json()["error"]["status_code"] == 409


async def test_unknown_paths_and_methods_under_v1_answer_in_passninja_shape(
    client: httpx.AsyncClient, template: str
) -> None:
    unknown = await client.get("/v1/nothing-here", headers=PN_HEADERS)
    wrong_method = await client.post("/v1/pass_templates", headers=PN_HEADERS)

    assert unknown.status_code == 404
    assert unknown.json()["error"]["status_code"] == 404
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["status_code"] == 405


async def test_the_admin_api_keeps_its_own_error_shape(admin: httpx.AsyncClient) -> None:
    response = await admin.get("/api/v1/templates/no-such")

    assert response.status_code == 404
    assert set(response.json()["error"]) == {"code", "message"}


async def test_the_api_is_left_out_of_passhouses_own_description(
    client: httpx.AsyncClient,
) -> None:
    spec = (await client.get("/api/openapi.json")).json()

    assert not [path for path in spec["paths"] if path.startswith("/v1/")]
    assert "PassNinjaApiKey" not in spec["components"].get("securitySchemes", {})


@pytest.mark.parametrize(
    "key", [b"", b"\xff\xfe", b"\xe9", b"k" * 10_000, b" " + ADMIN_TOKEN.encode() + b"x"]
)
async def test_odd_api_keys_are_401(client: httpx.AsyncClient, template: str, key: bytes) -> None:
    response = await client.get(
        "/v1/pass_templates", headers=[(b"x-api-key", key), (b"x-account-id", b"\xff")]
    )

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
