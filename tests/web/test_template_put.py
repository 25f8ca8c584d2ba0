"""PUT /api/v1/templates/{ref} takes the representation POST takes."""

from __future__ import annotations

import base64
from typing import Any

import httpx

from conftest import PASS_TYPE_ID, TEMPLATE_JSON
from passhouse import devmode
from passhouse.pkpass.devcerts import make_dev_credentials


def post_body(**extra: Any) -> dict[str, Any]:
    assets = {name: base64.b64encode(data).decode() for name, data in devmode.demo_assets().items()}
    return {
        "name": "coffee",
        "pass_type_id": PASS_TYPE_ID,
        "pass_json": TEMPLATE_JSON,
        "assets": assets,
        **extra,
    }


async def test_put_accepts_the_body_post_accepted(admin: httpx.AsyncClient, pass_type: str) -> None:
    created = await admin.post("/api/v1/templates", json=post_body())
    changed = post_body(pass_json={**TEMPLATE_JSON, "description": "New look"})

    replaced = await admin.put("/api/v1/templates/coffee", json=changed)

    assert created.status_code == 201, created.text
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["pass_json"]["description"] == "New look"
    assert replaced.json()["revision"] == 2


async def test_put_with_another_pass_type_is_409_and_changes_nothing(
    admin: httpx.AsyncClient, pass_type: str
) -> None:
    other = make_dev_credentials("pass.test.other", "TESTTEAM42")
    await admin.post(
        "/api/v1/pass-types",
        json={
            "certificate_pem": other.cert_pem.decode(),
            "private_key_pem": other.key_pem.decode(),
            "wwdr_pem": other.wwdr_cert_pem.decode(),
        },
    )
    await admin.post("/api/v1/templates", json=post_body())
    moved = post_body(pass_type_id="pass.test.other", pass_json={**TEMPLATE_JSON, "logoText": "x"})

    response = await admin.put("/api/v1/templates/coffee", json=moved)
    after = await admin.get("/api/v1/templates/coffee")

    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "conflict"
    assert "A template cannot change pass type" in error["message"]
    assert (after.json()["pass_type_id"], after.json()["revision"]) == (PASS_TYPE_ID, 1)
