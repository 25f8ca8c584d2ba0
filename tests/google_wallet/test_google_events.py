"""Callbacks (saves and deletes), notifications within Google's quota, a change reaching
Google through the running worker, and bad input."""

from __future__ import annotations

import asyncio
import io
import json
import time
import zipfile
from typing import Any

import httpx

from conftest import TEMPLATE_JSON
from google_wallet.conftest import drain
from google_wallet.fake_google import FakeGoogle
from google_wallet.keys import ISSUER_ID, CallbackKeys
from google_wallet.test_google_api import ASSETS, issue, make_template
from passhouse import devmode
from passhouse.bootstrap import Runtime
from passhouse.google_sync import GoogleSync
from passhouse.worker import run_worker


async def test_callbacks_verify_and_a_repeated_nonce_counts_once(
    admin: httpx.AsyncClient,
    client: httpx.AsyncClient,
    pass_type: str,
    issuer: str,
    callback_keys: CallbackKeys,
) -> None:
    await make_template(admin, pass_type)
    view = await issue(admin, "c1")
    object_id = view["google"]["object_id"]
    body = callback_keys.callback(
        class_id="x", object_id=object_id, event_type="save", nonce="nonce-1"
    )
    for _ in range(2):
        response = await client.post("/google/v1/callbacks", json=body)
        assert response.status_code == 200, response.text
    assert response.json()["outcome"] == "duplicate"
    state = (await admin.get(f"/api/v1/passes/{pass_type}/c1")).json()["google"]
    assert (state["saves"], state["saved"]) == (1, True)
    deleted = callback_keys.callback(class_id="x", object_id=object_id, event_type="del")
    assert (await client.post("/google/v1/callbacks", json=deleted)).status_code == 200
    state = (await admin.get(f"/api/v1/passes/{pass_type}/c1")).json()["google"]
    assert (state["saves"], state["deletes"], state["saved"]) == (1, 1, False)


async def test_forged_and_expired_callbacks_are_refused_and_change_nothing(
    admin: httpx.AsyncClient,
    client: httpx.AsyncClient,
    pass_type: str,
    issuer: str,
    callback_keys: CallbackKeys,
) -> None:
    await make_template(admin, pass_type)
    object_id = (await issue(admin, "c2"))["google"]["object_id"]
    forger = CallbackKeys.generate()
    bad = [
        forger.callback(class_id="x", object_id=object_id, event_type="save"),
        callback_keys.callback(
            class_id="x", object_id=object_id, event_type="save", message_expires_in_ms=-600_000
        ),
        callback_keys.callback(
            class_id="x", object_id=object_id, event_type="save", recipient="42"
        ),
        callback_keys.callback(
            class_id="x", object_id=object_id, event_type="save", sender="GoogleWalletPasses"
        ),
    ]
    for body in bad:
        response = await client.post("/google/v1/callbacks", json=body)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["message"].startswith("The callback does not verify")
    for raw in (b"not json", b"[" * 100 + b"]" * 100):
        response = await client.post("/google/v1/callbacks", content=raw)
        assert response.status_code == 422
    state = (await admin.get(f"/api/v1/passes/{pass_type}/c2")).json()["google"]
    assert (state["saves"], state["deletes"]) == (0, 0)


async def test_notifications_stop_at_three_a_day_and_updates_still_go_out(
    admin: httpx.AsyncClient,
    pass_type: str,
    issuer: str,
    fake_google: FakeGoogle,
    google_sync: GoogleSync,
) -> None:
    await make_template(admin, pass_type)
    object_id = (await issue(admin, "n1"))["google"]["object_id"]
    await drain(google_sync)
    assert fake_google.notifications == []  # a new pass does not notify
    for balance in (11, 12, 13, 14, 15):
        response = await admin.patch(
            f"/api/v1/passes/{pass_type}/n1", json={"data": {"balance": balance}}
        )
        assert response.status_code == 200
        await drain(google_sync)
    assert len([n for n in fake_google.notifications if n[0] == object_id]) == 3
    stored = fake_google.objects[object_id]
    assert stored["loyaltyPoints"]["balance"] == {"string": "15"}
    assert stored["messages"][-1]["body"] == "Your balance is now 15"
    state = (await admin.get(f"/api/v1/passes/{pass_type}/n1")).json()["google"]
    assert state["notifications_last_24h"] == 3
    assert state["status"] == "synced"


async def test_googles_quota_answer_is_not_retried_as_transient(
    admin: httpx.AsyncClient,
    pass_type: str,
    issuer: str,
    fake_google: FakeGoogle,
    google_sync: GoogleSync,
) -> None:
    await make_template(admin, pass_type)
    object_id = (await issue(admin, "n2"))["google"]["object_id"]
    await drain(google_sync)
    now = time.time()
    fake_google.notifications.extend([(object_id, now)] * 3)  # sent by another tool
    await admin.patch(f"/api/v1/passes/{pass_type}/n2", json={"data": {"balance": 99}})
    writes = len(fake_google.writes)
    await drain(google_sync)
    assert fake_google.objects[object_id]["loyaltyPoints"]["balance"] == {"string": "99"}
    assert len(fake_google.writes) - writes == 2  # refused once, then sent without notifying
    state = (await admin.get(f"/api/v1/passes/{pass_type}/n2")).json()["google"]
    assert state["notifications_last_24h"] == 3


async def test_a_change_reaches_google_within_a_second_through_the_worker(
    admin: httpx.AsyncClient,
    runtime: Runtime,
    pass_type: str,
    issuer: str,
    fake_google: FakeGoogle,
) -> None:
    await make_template(admin, pass_type)
    object_id = (await issue(admin, "w1"))["google"]["object_id"]
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(runtime, stop))
    try:
        for _ in range(200):
            if object_id in fake_google.objects:
                break
            await asyncio.sleep(0.02)
        await admin.patch(f"/api/v1/passes/{pass_type}/w1", json={"data": {"balance": 77}})
        changed_at = time.monotonic()
        while fake_google.objects[object_id]["loyaltyPoints"]["balance"] != {"string": "77"}:
            assert time.monotonic() - changed_at < 1.0, "the change took longer than a second"
            await asyncio.sleep(0.01)
    finally:
        stop.set()
        await worker


async def test_google_json_in_a_template_zip(
    admin: httpx.AsyncClient, pass_type: str, issuer: str
) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("pass.json", json.dumps(TEMPLATE_JSON))
        for name, data in devmode.demo_assets().items():
            archive.writestr(name, data)
        archive.writestr("google.json", json.dumps({"issuer_id": ISSUER_ID, "type": "generic"}))
    response = await admin.post(
        "/api/v1/templates/upload",
        data={"name": "zipped", "pass_type_id": pass_type},
        files={"file": ("t.zip", buffer.getvalue(), "application/zip")},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["google"]["type"] == "generic"
    assert "google.json" not in body["assets"]


async def test_bad_google_sections_are_422_with_key_paths_and_change_nothing(
    admin: httpx.AsyncClient, pass_type: str, issuer: str
) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"issuer_id": "999"}, "No Google issuer '999'"),
        ({"issuer_id": ISSUER_ID, "type": "flight"}, "google.class: required for flight"),
        (
            {"issuer_id": ISSUER_ID, "type": "generic", "object": {"hexBackgroundColor": "red"}},
            "google.object.hexBackgroundColor",
        ),
        ({"issuer_id": ISSUER_ID, "class": {"reviewStatus": "DRAFT"}}, "DRAFT class"),
    ]
    for google, words in cases:
        response = await admin.post(
            "/api/v1/templates",
            json={
                "name": "bad",
                "pass_type_id": pass_type,
                "pass_json": TEMPLATE_JSON,
                "assets": ASSETS,
                "google": google,
            },
        )
        assert response.status_code in (404, 422), response.text
        assert words in response.json()["error"]["message"]
    assert (await admin.get("/api/v1/templates")).json()["items"] == []
    template = await make_template(admin, pass_type)
    changed = await admin.put(
        f"/api/v1/templates/{template['id']}",
        json={
            "pass_json": TEMPLATE_JSON,
            "assets": ASSETS,
            "google": {"issuer_id": ISSUER_ID, "type": "generic"},
        },
    )
    assert changed.status_code == 409
    assert (await admin.delete(f"/api/v1/google-issuers/{ISSUER_ID}")).status_code == 409
