"""Public share links: /p/{share_id} shows a small page, and its link downloads the pass."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import zipfile
from typing import Any

import httpx
import pytest

from conftest import TEMPLATE_JSON
from factories import IssuedPass, issue
from passhouse import devmode, issuing
from passhouse.bootstrap import Runtime

PKPASS = "application/vnd.apple.pkpass"


async def share_path(admin: httpx.AsyncClient, pass_type_id: str, serial_number: str) -> str:
    response = await admin.get(f"/api/v1/passes/{pass_type_id}/{serial_number}")
    share_url: str = response.json()["urls"]["share"]
    return httpx.URL(share_url).path


def add_link(page: str) -> str:
    match = re.search(r'<a class="add" href="([^"]+)">Add to Apple Wallet</a>', page)
    assert match is not None, page
    return match.group(1)


def pass_json_in(pkpass: bytes) -> dict[str, Any]:
    with zipfile.ZipFile(io.BytesIO(pkpass)) as archive:
        loaded: dict[str, Any] = json.loads(archive.read("pass.json"))
    return loaded


async def test_the_share_page_shows_the_description_and_an_add_link(
    admin: httpx.AsyncClient, client: httpx.AsyncClient, wallet_pass: IssuedPass
) -> None:
    path = await share_path(admin, wallet_pass.pass_type_id, wallet_pass.serial_number)

    response = await client.get(path)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "Test loyalty card" in response.text
    assert "Test café" in response.text
    assert add_link(response.text) == f"{path}/pass.pkpass"
    assert "development certificate" not in response.text


async def test_the_add_link_downloads_the_signed_pass(
    admin: httpx.AsyncClient, client: httpx.AsyncClient, wallet_pass: IssuedPass
) -> None:
    page = await client.get(
        await share_path(admin, wallet_pass.pass_type_id, wallet_pass.serial_number)
    )

    response = await client.get(add_link(page.text))

    assert response.status_code == 200
    assert response.headers["content-type"] == PKPASS
    assert pass_json_in(response.content)["serialNumber"] == wallet_pass.serial_number
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert {"manifest.json", "signature"} <= set(archive.namelist())


async def test_the_download_follows_changes_to_the_pass(
    admin: httpx.AsyncClient, client: httpx.AsyncClient, wallet_pass: IssuedPass
) -> None:
    path = await share_path(admin, wallet_pass.pass_type_id, wallet_pass.serial_number)
    await client.get(f"{path}/pass.pkpass")
    url = f"/api/v1/passes/{wallet_pass.pass_type_id}/{wallet_pass.serial_number}"
    await admin.patch(url, json={"data": {"name": "Grace"}})

    response = await client.get(f"{path}/pass.pkpass")

    assert pass_json_in(response.content)["barcodes"][0]["message"] == "Grace"


async def test_a_dev_pass_type_gets_a_note_that_iphones_will_refuse_it(
    admin: httpx.AsyncClient,
    client: httpx.AsyncClient,
    runtime: Runtime,
    builder: issuing.PassBuilder,
) -> None:
    async with runtime.database.transaction() as conn:
        await devmode.ensure_dev_setup(conn, runtime.sealer, runtime.settings.data_dir)
    dev_pass = await issue(runtime, builder, devmode.DEMO_TEMPLATE)
    path = await share_path(admin, dev_pass.pass_type_id, dev_pass.serial_number)

    response = await client.get(path)

    assert response.status_code == 200
    assert "Demo loyalty card" in response.text
    assert "development certificate" in response.text


async def test_text_from_the_pass_is_escaped(
    admin: httpx.AsyncClient,
    client: httpx.AsyncClient,
    runtime: Runtime,
    builder: issuing.PassBuilder,
    pass_type: str,
) -> None:
    async with runtime.database.transaction() as conn:
        await issuing.create_template(
            conn,
            name="named",
            pass_type_id=pass_type,
            pass_json={**TEMPLATE_JSON, "description": "Card of {{name}}"},
            assets=devmode.demo_assets(),
        )
    named = await issue(runtime, builder, "named", name='<script>alert("x")</script>')
    path = await share_path(admin, named.pass_type_id, named.serial_number)

    response = await client.get(path)

    assert response.status_code == 200
    assert "<script>" not in response.text
    assert "Card of &lt;script&gt;" in response.text


UNKNOWN_SHARE_PATHS = [
    "/p/unknown-share-id",
    "/p/unknown-share-id/pass.pkpass",
    "/p/" + "x" * 65,
    "/p/%20",
]
# What Safari on an iPhone sends when a customer opens a link.
SAFARI_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


@pytest.mark.parametrize("path", UNKNOWN_SHARE_PATHS)
@pytest.mark.parametrize("accept", ["application/json", "*/*"])
async def test_an_unknown_share_id_is_a_json_404_for_a_client(
    client: httpx.AsyncClient, wallet_pass: IssuedPass, path: str, accept: str
) -> None:
    response = await client.get(path, headers={"Accept": accept})

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("path", UNKNOWN_SHARE_PATHS)
async def test_an_unknown_share_id_is_an_html_404_page_for_a_browser(
    client: httpx.AsyncClient, wallet_pass: IssuedPass, path: str
) -> None:
    response = await client.get(path, headers={"Accept": SAFARI_ACCEPT})

    assert response.status_code == 404
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "<h1>Pass not found</h1>" in response.text
    assert "error" not in response.text
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_a_voided_pass_page_says_it_is_no_longer_valid(
    admin: httpx.AsyncClient, client: httpx.AsyncClient, wallet_pass: IssuedPass
) -> None:
    path = await share_path(admin, wallet_pass.pass_type_id, wallet_pass.serial_number)
    await admin.delete(f"/api/v1/passes/{wallet_pass.pass_type_id}/{wallet_pass.serial_number}")

    response = await client.get(path, headers={"Accept": SAFARI_ACCEPT})

    assert response.status_code == 200
    assert "Test loyalty card" in response.text
    assert "This pass is no longer valid." in response.text
    assert "Add to Apple Wallet" not in response.text
    assert "pass.pkpass" not in response.text


def csp_of(response: httpx.Response) -> dict[str, str]:
    return dict(
        directive.strip().split(" ", 1)
        for directive in response.headers["content-security-policy"].split(";")
    )


@pytest.mark.parametrize("found", [True, False])
async def test_the_share_page_allows_nothing_but_its_own_style(
    admin: httpx.AsyncClient, client: httpx.AsyncClient, wallet_pass: IssuedPass, found: bool
) -> None:
    path = await share_path(admin, wallet_pass.pass_type_id, wallet_pass.serial_number)

    response = await client.get(path if found else "/p/unknown", headers={"Accept": SAFARI_ACCEPT})

    policy = csp_of(response)
    style = re.search(r"<style>(.*?)</style>", response.text, re.DOTALL)
    assert style is not None
    digest = base64.b64encode(hashlib.sha256(style.group(1).encode()).digest()).decode()
    expected = {
        "default-src": "'none'",
        "style-src": f"'sha256-{digest}'",
        "form-action": "'none'",
        "frame-ancestors": "'none'",
        "base-uri": "'none'",
    }
    if found:  # the pass preview's images are data: URLs, and nothing else is an image
        expected["img-src"] = "data:"
    assert policy == expected
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"


async def test_the_share_page_and_the_dashboard_send_the_same_security_headers(
    admin: httpx.AsyncClient, client: httpx.AsyncClient, wallet_pass: IssuedPass
) -> None:
    path = await share_path(admin, wallet_pass.pass_type_id, wallet_pass.serial_number)

    share = await client.get(path)
    dashboard = await client.get("/dashboard")

    for name in ("x-content-type-options", "referrer-policy", "cache-control"):
        assert share.headers[name] == dashboard.headers[name]
    for directive in ("default-src", "frame-ancestors", "form-action", "base-uri"):
        assert csp_of(share)[directive] == csp_of(dashboard)[directive] == "'none'"


async def test_the_share_link_needs_no_api_key_but_the_admin_download_does(
    admin: httpx.AsyncClient, client: httpx.AsyncClient, wallet_pass: IssuedPass
) -> None:
    path = await share_path(admin, wallet_pass.pass_type_id, wallet_pass.serial_number)
    admin_download = f"/api/v1/passes/{wallet_pass.pass_type_id}/{wallet_pass.serial_number}/pkpass"

    shared = await client.get(f"{path}/pass.pkpass")
    private = await client.get(admin_download)

    assert shared.status_code == 200
    assert private.status_code == 401
