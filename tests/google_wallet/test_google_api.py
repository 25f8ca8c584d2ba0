"""Issuer accounts, template opt-in, issue and change, against the fake Google."""

from __future__ import annotations

import base64
import socket
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from conftest import TEMPLATE_JSON
from google_wallet.conftest import drain
from google_wallet.fake_google import FakeGoogle, Fault
from google_wallet.keys import CLIENT_EMAIL, ISSUER_ID, service_account_info
from passhouse import bulk, devmode, issuing
from passhouse.bootstrap import Runtime
from passhouse.google.service_account import load_service_account
from passhouse.google_sync import GoogleSync
from passhouse.push.google import RETRY, GoogleWalletClient, ssl_context

ASSETS = {name: base64.b64encode(data).decode() for name, data in devmode.demo_assets().items()}


async def make_template(admin: httpx.AsyncClient, pass_type: str, **google: Any) -> Any:
    response = await admin.post(
        "/api/v1/templates",
        json={
            "name": "card",
            "pass_type_id": pass_type,
            "pass_json": TEMPLATE_JSON,
            "assets": ASSETS,
            "google": {"issuer_id": ISSUER_ID, **google},
        },
    )
    assert response.status_code == 201, response.text
    return response.json()


async def issue(admin: httpx.AsyncClient, serial: str, **data: Any) -> Any:
    response = await admin.post(
        "/api/v1/passes",
        json={
            "template": "card",
            "serial_number": serial,
            "data": {"name": "Ada", "balance": 10, **data},
        },
    )
    assert response.status_code == 201, response.text
    return response.json()


async def test_issuer_account_is_checked_stored_and_listed(
    admin: httpx.AsyncClient, issuer: str, fake_google: FakeGoogle
) -> None:
    assert fake_google.token_requests >= 1
    listed = (await admin.get("/api/v1/google-issuers")).json()["items"]
    assert [i["client_email"] for i in listed] == [CLIENT_EMAIL]
    assert "PRIVATE KEY" not in str(listed)
    one = await admin.get(f"/api/v1/google-issuers/{issuer}")
    assert one.json()["issuer_id"] == ISSUER_ID
    assert (await admin.delete(f"/api/v1/google-issuers/{issuer}")).status_code == 204
    assert (await admin.get(f"/api/v1/google-issuers/{issuer}")).status_code == 404


async def test_a_wrong_key_is_one_sentence_and_stores_nothing(
    admin: httpx.AsyncClient, fake_google: FakeGoogle
) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    response = await admin.post(
        "/api/v1/google-issuers",
        json={
            "issuer_id": ISSUER_ID,
            "service_account": service_account_info(fake_google.token_url, other),
        },
    )
    assert response.status_code == 422
    assert "refused the service account key (invalid_grant" in response.json()["error"]["message"]
    assert (await admin.get("/api/v1/google-issuers")).json()["items"] == []


async def test_a_service_account_not_invited_is_told_so(
    admin: httpx.AsyncClient, service_account: dict[str, Any]
) -> None:
    response = await admin.post(
        "/api/v1/google-issuers",
        json={"issuer_id": "1234567890", "service_account": service_account},
    )
    assert response.status_code == 422
    assert "invite it in the Google Pay & Wallet Console" in response.json()["error"]["message"]


async def test_issue_inserts_the_class_once_and_the_object_and_the_link_saves(
    admin: httpx.AsyncClient,
    pass_type: str,
    issuer: str,
    fake_google: FakeGoogle,
    google_sync: GoogleSync,
    service_key: rsa.RSAPrivateKey,
) -> None:
    template = await make_template(admin, pass_type)
    assert template["google"]["type"] == "loyalty"
    first = await issue(admin, "s1")
    await issue(admin, "s2")
    link = first["urls"]["google"]
    assert link.startswith(fake_google.base_url + "/gp/v/save/")
    assert len(link.rsplit("/", 1)[1]) < 1800
    assert first["google"]["status"] == "pending"
    await drain(google_sync)
    class_inserts = [w for w in fake_google.class_writes() if w.method == "POST"]
    assert len(class_inserts) == 1
    google_class = fake_google.classes[f"{ISSUER_ID}.ph-t{template['id']}"]
    assert google_class["reviewStatus"] == "APPROVED"
    assert (
        google_class["callbackOptions"]["url"] == "https://passes.example.test/google/v1/callbacks"
    )
    logo = google_class["programLogo"]["sourceUri"]["uri"]
    assert logo.startswith("https://passes.example.test/google/v1/images/")
    image = await admin.get(logo.removeprefix("https://passes.example.test"))
    assert image.status_code == 200
    assert image.content == devmode.demo_assets()["logo@3x.png"]
    object_id = first["google"]["object_id"]
    assert fake_google.objects[object_id]["loyaltyPoints"]["balance"] == {"string": "10"}
    view = (await admin.get(f"/api/v1/passes/{pass_type}/s1")).json()
    assert view["google"]["status"] == "synced"
    assert view["google"]["up_to_date"] is True
    token = link.rsplit("/", 1)[1]
    claims = jwt.decode(token, service_key.public_key(), algorithms=["RS256"], audience="google")
    assert claims["payload"] == {"loyaltyObjects": [{"id": object_id}]}
    async with httpx.AsyncClient(verify=ssl_context(google_sync.settings.google_ca_file)) as http:
        saved = await http.get(link)
    assert saved.status_code == 200, saved.text
    assert fake_google.objects[object_id]["hasUsers"] is True


async def test_a_change_void_and_template_change_reach_google(
    admin: httpx.AsyncClient,
    pass_type: str,
    issuer: str,
    fake_google: FakeGoogle,
    google_sync: GoogleSync,
) -> None:
    template = await make_template(admin, pass_type)
    serials = [f"p{i}" for i in range(100)]
    for serial in serials:
        await issue(admin, serial)
    await drain(google_sync)
    first = (await admin.get(f"/api/v1/passes/{pass_type}/p0")).json()["google"]["object_id"]
    assert (
        await admin.patch(f"/api/v1/passes/{pass_type}/p0", json={"data": {"balance": 25}})
    ).status_code == 200
    await drain(google_sync)
    assert fake_google.objects[first]["loyaltyPoints"]["balance"] == {"string": "25"}
    assert (await admin.post(f"/api/v1/passes/{pass_type}/p1/void")).status_code == 200
    await drain(google_sync)
    second = (await admin.get(f"/api/v1/passes/{pass_type}/p1")).json()["google"]["object_id"]
    assert fake_google.objects[second]["state"] == "INACTIVE"
    writes_before = len(fake_google.writes)
    changed = {**TEMPLATE_JSON, "logoText": "New programme"}
    response = await admin.put(
        f"/api/v1/templates/{template['id']}", json={"pass_json": changed, "assets": ASSETS}
    )
    assert response.status_code == 200, response.text
    await drain(google_sync)
    after = fake_google.writes[writes_before:]
    assert len([w for w in after if "Class" in w.path]) == 1
    object_writes = [w for w in after if "Object" in w.path]
    assert len(object_writes) == 100
    assert len({w.path for w in object_writes}) == 100  # each object at most once
    assert (
        fake_google.classes[f"{ISSUER_ID}.ph-t{template['id']}"]["programName"] == "New programme"
    )
    view = (await admin.get(f"/api/v1/templates/{template['id']}")).json()["google"]
    assert view["class_synced"] is True
    assert view["error"] is None
    assert fake_google.max_concurrent_per_object <= 1


async def test_429_and_503_are_retried(
    admin: httpx.AsyncClient,
    pass_type: str,
    issuer: str,
    fake_google: FakeGoogle,
    google_sync: GoogleSync,
) -> None:
    await make_template(admin, pass_type)
    view = await issue(admin, "r1")
    fake_google.fail_next(Fault(429, "rateLimitExceeded"), Fault(503), Fault(500))
    await drain(google_sync)
    assert view["google"]["object_id"] in fake_google.objects
    state = (await admin.get(f"/api/v1/passes/{pass_type}/r1")).json()["google"]
    assert state["status"] == "synced"
    assert state["error"] is None


async def test_a_refusal_is_recorded_with_googles_reason(
    admin: httpx.AsyncClient,
    pass_type: str,
    issuer: str,
    fake_google: FakeGoogle,
    google_sync: GoogleSync,
) -> None:
    await make_template(admin, pass_type)
    await drain(google_sync)
    await issue(admin, "f1")
    fake_google.fail_next(Fault(400, "invalidResource"))
    await drain(google_sync)
    state = (await admin.get(f"/api/v1/passes/{pass_type}/f1")).json()["google"]
    assert state["status"] == "failed"
    assert state["error"]["status"] == 400
    assert state["error"]["reason"] == "invalidResource"
    stats = (await admin.get("/api/v1/push/stats")).json()["google"]
    assert stats["failed"] == 1


async def test_passes_made_and_changed_in_bulk_reach_google(
    admin: httpx.AsyncClient,
    runtime: Runtime,
    pass_type: str,
    issuer: str,
    fake_google: FakeGoogle,
    google_sync: GoogleSync,
) -> None:
    await make_template(admin, pass_type)
    items = [{"serial_number": f"b{i}", "data": {"name": "Ada", "balance": i}} for i in range(3)]
    batch = await admin.post("/api/v1/passes/batch", json={"template": "card", "items": items})
    assert batch.json()["created"] == 3, batch.text
    await drain(google_sync)
    views = [(await admin.get(f"/api/v1/passes/{pass_type}/b{i}")).json() for i in range(3)]
    object_ids = [view["google"]["object_id"] for view in views]
    assert all(object_id in fake_google.objects for object_id in object_ids)
    assert all(view["urls"]["google"] for view in views)

    job = await admin.post(
        "/api/v1/passes/bulk-update",
        json={"template": "card", "where": {"name": "Ada"}, "data": {"balance": 99}},
    )
    assert job.status_code == 202, job.text
    builder = issuing.PassBuilder(runtime.sealer, runtime.settings.web_service_url)
    while (claimed := await bulk.claim_job(runtime.database, runtime.settings)) is not None:
        await bulk.run_claimed(runtime.database, builder, runtime.settings, *claimed)
    await drain(google_sync)
    balances = [fake_google.objects[o]["loyaltyPoints"]["balance"] for o in object_ids]
    assert balances == [{"string": "99"}] * 3


async def test_the_landing_page_offers_the_save_link_on_android(
    admin: httpx.AsyncClient, pass_type: str, issuer: str, google_sync: GoogleSync
) -> None:
    await make_template(admin, pass_type)
    issued = await issue(admin, "land-1")
    await drain(google_sync)
    android = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Chrome/126 Mobile"

    page = await admin.get(issued["urls"]["share"], headers={"user-agent": android})

    assert page.status_code == 200
    link = (await admin.get(f"/api/v1/passes/{pass_type}/land-1")).json()["urls"]["google"]
    assert link
    assert link.split("/save/")[0] + "/save/" in page.text  # the button links to Google
    assert "Google Wallet" in page.text


async def test_a_timeout_and_an_expired_token_are_retried(
    admin: httpx.AsyncClient,
    pass_type: str,
    issuer: str,
    fake_google: FakeGoogle,
    google_sync: GoogleSync,
) -> None:
    await make_template(admin, pass_type)
    await drain(google_sync)
    view = await issue(admin, "t1")
    # No answer within the 2 s request timeout (the fake answers after 3 s), then a 401
    # for a token Google no longer accepts: the sync retries, fetches a new token, succeeds.
    fake_google.fail_next(Fault(None, seconds=3.0))
    assert await google_sync.sync_due() == 1
    state = (await admin.get(f"/api/v1/passes/{pass_type}/t1")).json()["google"]
    assert state["status"] == "pending"
    assert state["error"]["reason"] == "connection"
    assert "Timeout" in state["error"]["message"]
    fake_google.revoke_tokens()
    tokens = fake_google.token_requests
    await drain(google_sync)
    assert fake_google.token_requests == tokens + 1
    assert view["google"]["object_id"] in fake_google.objects
    state = (await admin.get(f"/api/v1/passes/{pass_type}/t1")).json()["google"]
    assert state["status"] == "synced"
    assert state["error"] is None


async def test_a_refused_connection_is_a_retry(
    fake_google: FakeGoogle, service_account: dict[str, Any], google_sync: GoogleSync
) -> None:
    # A port nothing listens on: bind one, note it, close it.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = GoogleWalletClient(
        f"https://127.0.0.1:{port}", ca_file=google_sync.settings.google_ca_file
    )
    try:
        account = load_service_account(service_account)
        answer = await client.upsert(
            account, "genericObject", f"{ISSUER_ID}.x", {"id": f"{ISSUER_ID}.x"}, exists=True
        )
    finally:
        await client.aclose()
    assert answer.outcome == RETRY
    assert answer.reason == "connection"
    assert answer.status is None
