"""The admin API's previews: a draft drawn without saving, an issued pass drawn from its
signed file, and what a template change would touch."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import sqlalchemy as sa

from conftest import PASS_TYPE_ID, TEAM_ID, TEMPLATE_JSON
from factories import IssuedPass, count_rows
from passhouse import devmode
from passhouse.bootstrap import Runtime
from passhouse.storage.tables import passes, templates

DEVICE = "d" * 32


def draft(**changes: Any) -> dict[str, Any]:
    assets = {k: base64.b64encode(v).decode() for k, v in devmode.demo_assets().items()}
    body: dict[str, Any] = {
        "pass_json": TEMPLATE_JSON,
        "data": {"name": "Ada", "balance": 12},
        "pass_type_id": PASS_TYPE_ID,
        "assets": assets,
    }
    return {**body, **changes}


async def test_a_draft_is_drawn_and_checked_and_nothing_is_saved(
    admin: httpx.AsyncClient, runtime: Runtime, pass_type: str
) -> None:
    response = await admin.post("/api/v1/previews", json=draft())

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["errors"] == []
    assert body["style"] == "storeCard"
    assert body["pass_json"]["teamIdentifier"] == TEAM_ID
    assert body["pass_json"]["serialNumber"] == "preview"
    assert "Ada" in body["html"]
    assert "approximation" in body["html"]
    assert body["html"].startswith("<!doctype html>")
    assert "<script" not in body["html"]
    assert sorted(body["placeholders"]) == ["balance", "name"]
    assert await count_rows(runtime, templates) == 0


async def test_a_drafts_errors_name_the_key_they_are_about(
    admin: httpx.AsyncClient, pass_type: str
) -> None:
    pass_json = {
        **TEMPLATE_JSON,
        "backgroundColor": "blue",
        "storeCard": {"primaryFields": [{"key": "name", "valu": "{{name}}"}]},
    }
    body = (await admin.post("/api/v1/previews", json=draft(pass_json=pass_json))).json()

    paths = {error["path"]: error["message"] for error in body["errors"]}
    assert "backgroundColor" in paths, body["errors"]
    assert "rgb(r, g, b)" in paths["backgroundColor"]
    assert paths["storeCard.primaryFields[0].value"] == "required key is missing"


async def test_missing_sample_data_is_drawn_as_its_placeholder_and_named(
    admin: httpx.AsyncClient, pass_type: str
) -> None:
    body = (await admin.post("/api/v1/previews", json=draft(data={"balance": 3}))).json()
    assert body["missing_data"] == ["name"]
    assert "{{name}}" in body["html"]
    assert any(error["path"] == "data" for error in body["errors"])


async def test_a_draft_of_a_stored_template_uses_its_files_and_images_are_checked(
    admin: httpx.AsyncClient, template: str
) -> None:
    body = (
        await admin.post(
            "/api/v1/previews",
            json={
                "template": template,
                "pass_json": TEMPLATE_JSON,
                "data": {"name": "Ada", "balance": 1},
                "remove_assets": ["icon.png"],
                "assets": {"strip.png": base64.b64encode(devmode.solid_png(2000, 10)).decode()},
            },
        )
    ).json()
    paths = {item["path"] for item in body["errors"]}
    assert "icon.png" in paths  # removed: required
    assert any(item["path"] == "strip.png" for item in body["warnings"])  # too large
    assert 'class="pkp-strip"' in body["html"]


async def test_an_unknown_template_or_pass_type_is_a_404(
    admin: httpx.AsyncClient, pass_type: str
) -> None:
    unknown_template = await admin.post("/api/v1/previews", json=draft(template="nope"))
    unknown_type = await admin.post("/api/v1/previews", json=draft(pass_type_id="pass.nope"))
    assert unknown_template.status_code == 404
    assert unknown_type.status_code == 404
    assert unknown_type.json()["error"]["code"] == "not_found"


async def test_an_issued_pass_is_drawn_from_its_signed_file(
    admin: httpx.AsyncClient, wallet_pass: IssuedPass
) -> None:
    path = f"/api/v1/passes/{wallet_pass.pass_type_id}/{wallet_pass.serial_number}"
    response = await admin.get(f"{path}/preview", params={"language": "de"})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["language"] == "de"
    assert body["pass_json"]["serialNumber"] == wallet_pass.serial_number
    assert "authenticationToken" not in body["pass_json"]
    assert wallet_pass.authentication_token not in body["html"]
    assert 'data-message="Ada"' in body["html"]  # the demo barcode holds {{name}}
    assert '<svg class="pkp-code-svg"' in body["html"]
    await admin.post(f"{path}/void")
    voided = (await admin.get(f"{path}/preview")).json()
    assert voided["pass_json"]["voided"] is True
    assert '<p class="pkp-state">Void</p>' in voided["html"]
    assert (await admin.get("/api/v1/passes/pass.nope/x/preview")).status_code == 404
    assert (await admin.get(f"{path}/preview", params={"language": "xx"})).status_code == 422


async def test_the_impact_of_a_template_change_counts_passes_and_devices(
    admin: httpx.AsyncClient,
    client: httpx.AsyncClient,
    runtime: Runtime,
    template: str,
    wallet_pass: IssuedPass,
) -> None:
    before = (await admin.get(f"/api/v1/templates/{template}/impact")).json()
    assert (before["passes"], before["devices"], before["installed_passes"]) == (1, 0, 0)
    for device in (DEVICE, "e" * 32):
        registered = await client.post(
            wallet_pass.registration_path(device),
            json={"pushToken": device * 2},
            headers=wallet_pass.auth,
        )
        assert registered.status_code == 201
    after = (await admin.get(f"/api/v1/templates/{template}/impact")).json()
    assert after["passes"] == 1
    assert (after["devices"], after["registrations"], after["push_tokens"]) == (2, 2, 2)
    async with runtime.database.reader() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).select_from(passes)) == 1
    assert (await admin.get("/api/v1/templates/nope/impact")).status_code == 404
