"""Webhooks end to end: the admin API, events from real changes, delivery to a real
receiver on loopback that checks signatures, retries, give-up, auto-disable, SSRF."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
import sqlalchemy as sa
from structlog.testing import capture_logs

from conftest import TEMPLATE_JSON
from factories import IssuedPass, issue
from passhouse import devmode, issuing
from passhouse.bootstrap import Runtime
from passhouse.storage import pass_versions, push_jobs, webhooks
from passhouse.storage.tables import (
    pass_types,
    webhook_deliveries,
    webhook_endpoints,
    webhook_events,
)
from passhouse.webhooks import worker as webhook_worker
from passhouse.webhooks.worker import Deliverer
from webhooks.conftest import add_webhook, deliver_all
from webhooks.receiver import Receiver

API = "/api/v1/webhooks"


async def _count_events(runtime: Runtime) -> int:
    async with runtime.database.reader() as conn:
        return int(await conn.scalar(sa.select(sa.func.count()).select_from(webhook_events)) or 0)


# --- the API ------------------------------------------------------------------------------


async def test_the_secret_is_shown_once_and_the_endpoint_can_be_changed_and_deleted(
    admin: httpx.AsyncClient, receiver: Receiver
) -> None:
    created = await admin.post(API, json={"url": receiver.url, "events": ["pass.installed"]})
    body = created.json()
    path = f"{API}/{body['id']}"

    listed = (await admin.get(API)).json()["items"]
    shown = (await admin.get(path)).json()
    patched = await admin.patch(path, json={"events": ["*"], "enabled": False})
    deleted = await admin.delete(path)

    assert created.status_code == 201
    assert body["secret"].startswith("whsec_")
    assert len(body["secret"]) > 40
    assert (body["url"], body["events"], body["enabled"]) == (
        receiver.url,
        ["pass.installed"],
        True,
    )
    assert [item["id"] for item in listed] == [body["id"]]
    assert "secret" not in listed[0]
    assert "secret" not in shown
    assert patched.status_code == 200
    assert (patched.json()["events"], patched.json()["enabled"]) == (["*"], False)
    assert deleted.status_code == 204
    assert (await admin.get(path)).status_code == 404


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"url": "https://hooks.example.com/x", "events": ["pass.eaten"]}, "events.0"),
        ({"url": "https://hooks.example.com/x", "events": []}, "events"),
        ({"url": "ftp://hooks.example.com/x", "events": ["*"]}, "url"),
        ({"url": "https://hooks.example.com/x"}, "events"),
    ],
)
async def test_a_bad_webhook_is_a_422_that_changes_nothing(
    admin: httpx.AsyncClient, body: dict[str, object], named: str
) -> None:
    response = await admin.post(API, json=body)

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_input"
    assert named in response.json()["error"]["message"]
    assert (await admin.get(API)).json()["items"] == []


async def test_unknown_ids_are_404(admin: httpx.AsyncClient) -> None:
    for method, path in [
        ("GET", f"{API}/99"),
        ("PATCH", f"{API}/99"),
        ("DELETE", f"{API}/99"),
        ("GET", f"{API}/99/deliveries"),
        ("POST", f"{API}/99/ping"),
    ]:
        response = await admin.request(method, path, json={} if method == "PATCH" else None)
        assert response.status_code == 404, (method, path)
        assert response.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/x",
        "https://127.0.0.1/x",
        "https://10.1.2.3/x",
        "https://[::1]/x",
        "https://169.254.169.254/latest/meta-data",
        "https://[::ffff:192.168.0.1]/x",
        "https://localhost/x",
    ],
)
async def test_http_and_private_addresses_are_refused_naming_the_setting(
    app: object, runtime: Runtime, url: str
) -> None:
    strict = runtime.settings.model_copy(update={"webhooks_allow_private": False})
    strict_runtime = Runtime(settings=strict, database=runtime.database, sealer=runtime.sealer)
    from passhouse.web.app import create_app

    transport = httpx.ASGITransport(app=create_app(strict_runtime))
    async with httpx.AsyncClient(
        transport=transport,
        base_url="https://passes.example.test",
        headers={"Authorization": f"Bearer {strict.admin_token.get_secret_value()}"},  # type: ignore[union-attr]
    ) as admin:
        response = await admin.post(API, json={"url": url, "events": ["*"]})
        public = await admin.post(API, json={"url": "https://93.184.216.34/x", "events": ["*"]})

    assert response.status_code == 422, url
    assert "PASSHOUSE_WEBHOOKS_ALLOW_PRIVATE=true" in response.json()["error"]["message"]
    assert public.status_code == 201


# --- events and their delivery ------------------------------------------------------------


async def test_pass_changes_reach_the_receiver_signed_with_the_documented_body(
    admin: httpx.AsyncClient,
    runtime: Runtime,
    builder: issuing.PassBuilder,
    template: str,
    receiver: Receiver,
    deliverer: Deliverer,
) -> None:
    webhook_id = await add_webhook(admin, receiver)
    wallet_pass = await issue(runtime, builder, template, name="Ada")
    path = f"/api/v1/passes/{wallet_pass.pass_type_id}/{wallet_pass.serial_number}"
    await admin.patch(path, json={"data": {"name": "Grace"}})
    await admin.post(f"{path}/void")

    await deliver_all(runtime, deliverer)

    assert receiver.bad_signatures == []
    events = [r.event for r in receiver.received]
    assert sorted(e["type"] for e in events) == ["pass.created", "pass.updated", "pass.voided"]
    updated = next(e for e in events if e["type"] == "pass.updated")
    assert set(updated) == {"id", "type", "created_at", "data"}
    assert updated["id"].startswith("evt_")
    assert updated["created_at"].endswith("Z")
    assert updated["data"]["pass_type_id"] == wallet_pass.pass_type_id
    assert updated["data"]["serial_number"] == wallet_pass.serial_number
    assert updated["data"]["template"] == template
    assert updated["data"]["data"]["name"] == "Grace"
    assert isinstance(updated["data"]["version"], int)
    for received in receiver.received:
        assert received.headers["content-type"] == "application/json"
        assert received.headers["passhouse-event"] == received.event["type"]
        assert received.headers["passhouse-delivery"] == received.event["id"]
    deliveries = (await admin.get(f"{API}/{webhook_id}/deliveries")).json()["items"]
    assert [d["state"] for d in deliveries] == ["delivered"] * 3
    assert {(d["attempts"], d["last_status"]) for d in deliveries} == {(1, 200)}


async def test_a_wrong_secret_fails_the_receivers_check(
    admin: httpx.AsyncClient,
    runtime: Runtime,
    wallet_pass: IssuedPass,
    receiver: Receiver,
    deliverer: Deliverer,
) -> None:
    await add_webhook(admin, receiver)
    receiver.secret = "whsec_not_the_one"
    path = f"/api/v1/passes/{wallet_pass.pass_type_id}/{wallet_pass.serial_number}"
    await admin.post(f"{path}/void")

    await webhook_worker.fan_out(runtime.database)
    await deliverer.deliver_due()

    assert receiver.bad_signatures == ["wrong signature"]
    assert receiver.received == []


async def test_a_500_then_a_timeout_is_retried_with_the_same_event_id_until_it_recovers(
    admin: httpx.AsyncClient,
    runtime: Runtime,
    wallet_pass: IssuedPass,
    receiver: Receiver,
    deliverer: Deliverer,
) -> None:
    webhook_id = await add_webhook(admin, receiver)
    path = f"/api/v1/passes/{wallet_pass.pass_type_id}/{wallet_pass.serial_number}"
    await admin.post(f"{path}/void")
    await webhook_worker.fan_out(runtime.database)
    deliveries = f"{API}/{webhook_id}/deliveries"

    receiver.status = 500
    await deliverer.deliver_due()
    after_500 = (await admin.get(deliveries)).json()["items"][0]
    failing = (await admin.get(f"{API}/{webhook_id}")).json()
    receiver.status, receiver.delay = 200, 1.0  # beyond the 0.5 s timeout
    await asyncio.sleep(0.05)  # past the (test-sized) backoff
    await deliverer.deliver_due()
    after_timeout = (await admin.get(deliveries)).json()["items"][0]
    receiver.delay = 0.0
    await asyncio.sleep(0.05)
    await deliver_all(runtime, deliverer)
    after_recovery = (await admin.get(deliveries)).json()["items"][0]
    healthy = (await admin.get(f"{API}/{webhook_id}")).json()

    assert (after_500["state"], after_500["attempts"], after_500["last_status"]) == (
        "pending",
        1,
        500,
    )
    assert after_500["last_error"] == "answered 500"
    assert after_500["next_attempt_at"] is not None
    assert failing["failing_since"] is not None
    assert (after_timeout["state"], after_timeout["attempts"]) == ("pending", 2)
    assert after_timeout["last_status"] is None
    assert "no answer within 0.5 s" in after_timeout["last_error"]
    assert (after_recovery["state"], after_recovery["attempts"]) == ("delivered", 3)
    assert healthy["failing_since"] is None
    # Three requests arrived (the timed-out one too); one was taken, all had one id.
    assert receiver.attempts >= 3
    assert len(receiver.received) >= 1
    assert {r.event["id"] for r in receiver.received} == {after_500["event_id"]}


async def test_a_delivery_still_failing_after_the_retry_window_is_recorded_as_failed(
    admin: httpx.AsyncClient,
    runtime: Runtime,
    wallet_pass: IssuedPass,
    receiver: Receiver,
    deliverer: Deliverer,
) -> None:
    webhook_id = await add_webhook(admin, receiver)
    path = f"/api/v1/passes/{wallet_pass.pass_type_id}/{wallet_pass.serial_number}"
    await admin.post(f"{path}/void")
    await webhook_worker.fan_out(runtime.database)
    receiver.status = 503
    await deliverer.deliver_due()
    # The event happened longer ago than the retry window (24 h by default).
    window_ms = runtime.settings.webhook_retry_seconds * 1000
    async with runtime.database.transaction() as conn:
        await conn.execute(
            webhook_events.update().values(created_at_ms=webhook_events.c.created_at_ms - window_ms)
        )
    await asyncio.sleep(0.05)

    await deliverer.deliver_due()

    (delivery,) = (await admin.get(f"{API}/{webhook_id}/deliveries")).json()["items"]
    assert (delivery["state"], delivery["attempts"], delivery["last_status"]) == (
        "failed",
        2,
        503,
    )
    assert delivery["finished_at"] is not None
    assert delivery["next_attempt_at"] is None
    assert (await admin.get(f"{API}/{webhook_id}")).json()["deliveries"]["failed"] == 1
    assert await deliverer.deliver_due() == 0


async def test_an_endpoint_failing_for_three_days_is_disabled_logged_and_flagged(
    admin: httpx.AsyncClient,
    runtime: Runtime,
    wallet_pass: IssuedPass,
    receiver: Receiver,
    deliverer: Deliverer,
) -> None:
    webhook_id = await add_webhook(admin, receiver)
    path = f"/api/v1/passes/{wallet_pass.pass_type_id}/{wallet_pass.serial_number}"
    await admin.patch(path, json={"data": {"n": 1}})
    await webhook_worker.fan_out(runtime.database)
    receiver.status = 500
    three_days_ago = int(time.time() * 1000) - runtime.settings.webhook_disable_after_seconds * 1000
    async with runtime.database.transaction() as conn:
        await conn.execute(webhook_endpoints.update().values(failing_since_ms=three_days_ago))

    with capture_logs() as logs:
        await deliverer.deliver_due()
    await admin.patch(path, json={"data": {"n": 2}})  # while disabled: not queued for it
    await webhook_worker.fan_out(runtime.database)
    view = (await admin.get(f"{API}/{webhook_id}")).json()
    enabled = (await admin.patch(f"{API}/{webhook_id}", json={"enabled": True})).json()

    assert view["enabled"] is False
    assert "Disabled automatically" in view["disabled_reason"]
    assert view["disabled_at"] is not None
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["webhook_endpoint_disabled"]
    assert view["deliveries"] == {"pending": 1, "delivered": 0, "failed": 0}
    assert (enabled["enabled"], enabled["failing_since"], enabled["disabled_reason"]) == (
        True,
        None,
        None,
    )


async def test_an_endpoint_gets_the_events_it_was_subscribed_to_when_they_happened(
    admin: httpx.AsyncClient,
    runtime: Runtime,
    builder: issuing.PassBuilder,
    template: str,
    receiver: Receiver,
    deliverer: Deliverer,
) -> None:
    first = await add_webhook(admin, receiver, ["pass.created"])
    await issue(runtime, builder, template, name="before")
    # Changed and joined before the worker fans that event out.
    await admin.patch(f"{API}/{first}", json={"events": ["pass.voided"]})
    later = Receiver()
    await later.start()
    try:
        second = await admin.post(API, json={"url": later.url, "events": ["*"]})
        later.secret = second.json()["secret"]
        await issue(runtime, builder, template, name="after")

        await deliver_all(runtime, deliverer)
    finally:
        await later.stop()

    assert [r.event["data"]["data"]["name"] for r in receiver.received] == ["before"]
    assert [r.event["data"]["data"]["name"] for r in later.received] == ["after"]


async def test_no_event_is_written_when_no_endpoint_takes_its_type(
    admin: httpx.AsyncClient,
    runtime: Runtime,
    client: httpx.AsyncClient,
    wallet_pass: IssuedPass,
    receiver: Receiver,
) -> None:
    await add_webhook(admin, receiver, ["push.failed"])
    path = f"/api/v1/passes/{wallet_pass.pass_type_id}/{wallet_pass.serial_number}"

    await admin.patch(path, json={"data": {"n": 1}})
    registered = await client.post(
        wallet_pass.registration_path("device-1"), headers=wallet_pass.auth, json={"pushToken": "t"}
    )

    assert registered.status_code == 201
    assert await _count_events(runtime) == 0


async def test_installs_and_uninstalls_count_the_devices_holding_the_pass(
    admin: httpx.AsyncClient,
    runtime: Runtime,
    client: httpx.AsyncClient,
    wallet_pass: IssuedPass,
    receiver: Receiver,
    deliverer: Deliverer,
) -> None:
    await add_webhook(admin, receiver, ["pass.installed", "pass.uninstalled"])
    first, second = "a1b2c3d4e5f6a7b8c9d0", "ffffeeeeddddccccbbbb"

    async def register(device: str, token: str) -> int:
        response = await client.post(
            wallet_pass.registration_path(device),
            headers=wallet_pass.auth,
            json={"pushToken": token},
        )
        return response.status_code

    codes = [await register(first, "token-1"), await register(second, "token-2")]
    codes.append(await register(first, "token-1-new"))  # not new: no event
    unregistered = await client.delete(
        wallet_pass.registration_path(second), headers=wallet_pass.auth
    )
    async with runtime.database.transaction() as conn:  # APNs said the token is gone
        await push_jobs.forget_push_token(
            conn,
            "token-1-new",
            wallet_pass.pass_type_id,
            unregistered_at_ms=int(time.time() * 1000),
        )
    await deliver_all(runtime, deliverer)

    assert codes == [201, 201, 200]
    assert unregistered.status_code == 200
    seen = [(r.event["type"], r.event["data"]["installs"]) for r in receiver.received]
    assert sorted(seen) == sorted(
        [
            ("pass.installed", 1),
            ("pass.installed", 2),
            ("pass.uninstalled", 1),
            ("pass.uninstalled", 0),
        ]
    )
    data = receiver.received[0].event["data"]
    assert data["wallet"] == "apple"
    assert data["serial_number"] == wallet_pass.serial_number
    assert data["pass_type_id"] == wallet_pass.pass_type_id
    devices = {r.event["data"]["device"] for r in receiver.received}
    assert devices == {"a1b2c3d4…c9d0", "ffffeeee…bbbb"}


async def test_a_template_change_queues_one_event_per_pass_in_one_statement(
    admin: httpx.AsyncClient,
    runtime: Runtime,
    builder: issuing.PassBuilder,
    template: str,
    receiver: Receiver,
    deliverer: Deliverer,
) -> None:
    issued = [await issue(runtime, builder, template, name=f"p{i}") for i in range(25)]
    await add_webhook(admin, receiver, ["pass.updated"])
    async with runtime.database.transaction() as conn:
        _, changed = await issuing.replace_template(
            conn,
            template,
            name=None,
            pass_json={**TEMPLATE_JSON, "description": "New look"},
            assets=devmode.demo_assets(),
            actor=pass_versions.CLI,
        )
    await deliver_all(runtime, deliverer)

    assert changed == 25
    serials = sorted(r.event["data"]["serial_number"] for r in receiver.received)
    assert serials == sorted(p.serial_number for p in issued)
    assert len({r.event["id"] for r in receiver.received}) == 25


async def test_ping_reaches_the_receiver_and_shows_in_the_deliveries(
    admin: httpx.AsyncClient, runtime: Runtime, receiver: Receiver, deliverer: Deliverer
) -> None:
    webhook_id = await add_webhook(admin, receiver, ["pass.installed"])

    queued = await admin.post(f"{API}/{webhook_id}/ping")
    await deliverer.deliver_due()
    deliveries = (await admin.get(f"{API}/{webhook_id}/deliveries")).json()["items"]
    await admin.patch(f"{API}/{webhook_id}", json={"enabled": False})
    refused = await admin.post(f"{API}/{webhook_id}/ping")

    assert queued.status_code == 202
    assert queued.json()["delivery"]["state"] == "pending"
    (received,) = receiver.received
    assert received.event["type"] == "ping"
    assert received.event["id"] == queued.json()["event_id"]
    assert [(d["event"], d["state"]) for d in deliveries] == [("ping", "delivered")]
    assert refused.status_code == 409


async def test_the_address_is_checked_again_when_sending(
    admin: httpx.AsyncClient, runtime: Runtime, receiver: Receiver, wallet_pass: IssuedPass
) -> None:
    # Saved while private addresses were allowed; a name can also move to one later.
    webhook_id = await add_webhook(admin, receiver, ["pass.voided"])
    await admin.patch(f"{API}/{webhook_id}", json={"url": f"http://localhost:{receiver.port}/hook"})
    path = f"/api/v1/passes/{wallet_pass.pass_type_id}/{wallet_pass.serial_number}"
    await admin.post(f"{path}/void")
    strict = runtime.settings.model_copy(update={"webhooks_allow_private": False})
    sender = webhook_worker.make_sender(strict)
    try:
        await webhook_worker.fan_out(runtime.database)
        await Deliverer(runtime.database, runtime.sealer, sender, strict).deliver_due()
    finally:
        await sender.aclose()

    (delivery,) = (await admin.get(f"{API}/{webhook_id}/deliveries")).json()["items"]
    assert receiver.attempts == 0
    assert delivery["state"] == "pending"
    assert "localhost resolves to 127.0.0.1" in delivery["last_error"]
    assert "PASSHOUSE_WEBHOOKS_ALLOW_PRIVATE=true" in delivery["last_error"]


async def test_certificate_expiring_is_announced_at_30_7_and_1_days_once_each(
    admin: httpx.AsyncClient,
    runtime: Runtime,
    pass_type: str,
    receiver: Receiver,
    deliverer: Deliverer,
) -> None:
    await add_webhook(admin, receiver, ["certificate.expiring"])
    now = int(time.time())
    async with runtime.database.transaction() as conn:
        await conn.execute(pass_types.update().values(not_after=now + 40 * 86400))
    day = 86400

    counts = [
        await webhook_worker.announce_expiring_certificates(runtime.database, now=now + offset)
        for offset in (0, 11 * day, 12 * day, 34 * day, 35 * day, 39 * day + 3600, 39 * day + 7200)
    ]
    await deliver_all(runtime, deliverer)

    assert counts == [0, 1, 0, 1, 0, 1, 0]
    assert sorted(r.event["data"]["days_before"] for r in receiver.received) == [1, 7, 30]
    assert {r.event["data"]["pass_type_id"] for r in receiver.received} == {pass_type}


async def test_pruning_drops_finished_deliveries_and_their_events(
    admin: httpx.AsyncClient,
    runtime: Runtime,
    wallet_pass: IssuedPass,
    receiver: Receiver,
    deliverer: Deliverer,
) -> None:
    await add_webhook(admin, receiver)
    path = f"/api/v1/passes/{wallet_pass.pass_type_id}/{wallet_pass.serial_number}"
    await admin.post(f"{path}/void")
    await deliver_all(runtime, deliverer)

    async with runtime.database.transaction() as conn:
        kept = await webhooks.prune(conn, older_than_ms=0)
        dropped = await webhooks.prune(conn, older_than_ms=int(time.time() * 1000) + 1)
        left = await conn.scalar(sa.select(sa.func.count()).select_from(webhook_deliveries))

    assert (kept, dropped, left) == (0, 1, 0)  # pass.voided (created before the webhook)
    assert await _count_events(runtime) == 0
    assert json.loads(receiver.received[0].body)["type"].startswith("pass.")
