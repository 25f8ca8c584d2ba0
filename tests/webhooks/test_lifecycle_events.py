"""What scheduled changes and expiry tell webhook receivers: an applied change is a
pass.updated, a failed one sends nothing, a pass voided at its expiry is a pass.voided.
Applied by the workers' own functions, delivered to a real receiver on loopback."""

from __future__ import annotations

import datetime as dt

import httpx

from conftest import TEMPLATE_JSON
from factories import IssuedPass, issue
from passhouse import devmode, issuing, lifecycle
from passhouse.bootstrap import Runtime
from passhouse.webhooks import worker as webhook_worker
from webhooks.conftest import add_webhook, deliver_all
from webhooks.receiver import Receiver


def _ago(seconds: float) -> str:
    return (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds)).isoformat()


async def test_an_applied_change_is_a_pass_updated_and_a_failed_one_sends_nothing(
    runtime: Runtime,
    admin: httpx.AsyncClient,
    builder: issuing.PassBuilder,
    wallet_pass: IssuedPass,
    receiver: Receiver,
    deliverer: webhook_worker.Deliverer,
) -> None:
    await add_webhook(admin, receiver, ["pass.updated", "pass.voided"])
    target = {"pass_type_id": wallet_pass.pass_type_id, "serial_number": wallet_pass.serial_number}
    for data in ({"name": None}, {"balance": 42}):  # the first would leave {{name}} empty
        response = await admin.post(
            "/api/v1/scheduled-changes", json={**target, "at": _ago(1), "data": data}
        )
        assert response.status_code == 201

    while await lifecycle.apply_due_change(runtime.database, builder):
        pass
    await deliver_all(runtime, deliverer)

    states = [c["status"] for c in (await admin.get("/api/v1/scheduled-changes")).json()["items"]]
    assert states == ["failed", "applied"]
    events = [r.event for r in receiver.received]
    assert [e["type"] for e in events] == ["pass.updated"]
    assert events[0]["data"]["data"]["balance"] == 42


async def test_a_pass_voided_at_its_expiry_is_a_pass_voided(
    runtime: Runtime,
    admin: httpx.AsyncClient,
    builder: issuing.PassBuilder,
    pass_type: str,
    receiver: Receiver,
    deliverer: webhook_worker.Deliverer,
) -> None:
    async with runtime.database.transaction() as conn:
        await issuing.create_template(
            conn,
            name="expiring",
            pass_type_id=pass_type,
            pass_json={**TEMPLATE_JSON, "expirationDate": "{{expires}}"},
            assets=devmode.demo_assets(),
        )
    gone = await issue(runtime, builder, "expiring", expires=_ago(60))
    await add_webhook(admin, receiver, ["pass.voided"])

    assert await lifecycle.void_expired(runtime.database) == 1
    await deliver_all(runtime, deliverer)

    events = [r.event for r in receiver.received]
    assert [(e["type"], e["data"]["serial_number"]) for e in events] == [
        ("pass.voided", gone.serial_number)
    ]
