"""Install analytics: counters kept with each event, GET /api/v1/stats, and the totals the
pass, template and pass type views show."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import httpx
import pytest

from conftest import PASS_TYPE_ID, TEMPLATE_JSON
from factories import IssuedPass, issue
from passhouse import devmode, issuing
from passhouse.bootstrap import Runtime
from passhouse.push.sender import PushResult
from passhouse.settings import Settings
from passhouse.storage.database import Database
from passhouse.storage.hot_path import Registration
from passhouse.worker import send_due_pushes
from test_worker import RecordingSender
from web.test_admin import assert_error

COUNTS = ("issued", "updated", "voided", "installs", "uninstalls", "pushes_sent", "pushes_failed")


async def summed(admin: httpx.AsyncClient, **params: str) -> dict[str, Any]:
    """Every counter summed over the series of the last 48 hours, and the totals."""
    response = await admin.get("/api/v1/stats", params={"interval": "hour", **params})
    assert response.status_code == 200, response.text
    body = response.json()
    sums: dict[str, Any] = {}
    for name in COUNTS:
        values = [point[name] for point in body["series"]]
        sums[name] = None if values and values[0] is None else sum(values)
    return {"series": sums, "totals": body["totals"]}


async def register(client: httpx.AsyncClient, wallet_pass: IssuedPass, device: str) -> int:
    response = await client.post(
        wallet_pass.registration_path(device),
        headers=wallet_pass.auth,
        json={"pushToken": f"push-{device}"},
    )
    return response.status_code


async def test_every_event_is_counted_once_in_its_hour(
    admin: httpx.AsyncClient,
    client: httpx.AsyncClient,
    runtime: Runtime,
    builder: issuing.PassBuilder,
    template: str,
    settings: Settings,
) -> None:
    first = await issue(runtime, builder, template)
    second = await issue(runtime, builder, template)
    third = await issue(runtime, builder, template)
    url = f"/api/v1/passes/{first.pass_type_id}"
    await admin.patch(f"{url}/{first.serial_number}", json={"data": {"balance": 11}})
    await admin.patch(f"{url}/{first.serial_number}", json={"data": {"balance": 11}})  # no-op
    await admin.post(f"{url}/{third.serial_number}/void")
    await admin.post(f"{url}/{third.serial_number}/void")  # already voided: nothing
    assert [await register(client, first, d) for d in ("d-1", "d-2", "d-1")] == [201, 201, 200]
    assert await register(client, second, "d-3") == 201
    await client.delete(first.registration_path("d-2"), headers=first.auth)
    await client.delete(first.registration_path("d-2"), headers=first.auth)  # gone already
    # The template change gives the three passes a new version each and queues a push to
    # each of the two tokens still registered: one is delivered, the other is gone (410).
    replaced = await admin.put(
        f"/api/v1/templates/{template}",
        json={"pass_json": {**TEMPLATE_JSON, "description": "New"}, "assets": _assets()},
    )
    assert replaced.json()["passes_changed"] == 3
    sender = RecordingSender()
    sender.script["push-d-3"] = [PushResult(410, "Unregistered", issuing.now_ms())]
    await send_due_pushes(runtime.database, sender, settings)

    everything = await summed(admin)
    card = await summed(admin, template=template)
    pass_type = await summed(admin, pass_type_id=PASS_TYPE_ID)

    expected = {
        "issued": 3,
        "updated": 1 + 3,
        "voided": 1,
        "installs": 3,
        "uninstalls": 2,  # d-2 unregistered; APNs said d-3's token is gone
        "pushes_sent": 1,
        "pushes_failed": 0,
    }
    assert everything["series"] == expected
    assert pass_type["series"] == expected
    assert card["series"] == {**expected, "pushes_sent": None, "pushes_failed": None}
    assert everything["totals"] == {
        "passes": 3,
        "voided": 1,
        "active_passes": 2,
        "active_installs": 1,
        "installs": 3,
        "uninstalls": 2,
        "updated": 4,
        "pushes_sent": 1,
        "pushes_failed": 0,
    }
    assert card["totals"]["active_installs"] == 1
    assert card["totals"]["pushes_sent"] is None


def _assets() -> dict[str, str]:
    import base64

    return {name: base64.b64encode(data).decode() for name, data in devmode.demo_assets().items()}


async def test_a_push_given_up_on_is_counted_as_failed(
    client: httpx.AsyncClient,
    admin: httpx.AsyncClient,
    runtime: Runtime,
    wallet_pass: IssuedPass,
    settings: Settings,
) -> None:
    await register(client, wallet_pass, "d-1")
    url = f"/api/v1/passes/{wallet_pass.pass_type_id}/{wallet_pass.serial_number}"
    await admin.patch(url, json={"data": {"balance": 99}})
    sender = RecordingSender()
    sender.script["push-d-1"] = [PushResult(400, "BadTopic")]  # refused for good

    await send_due_pushes(runtime.database, sender, settings)

    stats = await summed(admin)
    assert (stats["series"]["pushes_sent"], stats["series"]["pushes_failed"]) == (0, 1)


async def test_the_series_has_a_point_per_interval_and_counts_in_the_right_one(
    admin: httpx.AsyncClient, runtime: Runtime, builder: issuing.PassBuilder, template: str
) -> None:
    await issue(runtime, builder, template)
    now = dt.datetime.now(dt.UTC)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)

    daily = (
        await admin.get(
            "/api/v1/stats",
            params={
                "from": (today - dt.timedelta(days=89, hours=5)).isoformat(),
                "to": (today + dt.timedelta(days=1)).isoformat(),
            },
        )
    ).json()
    hourly = (await admin.get("/api/v1/stats", params={"interval": "hour"})).json()

    assert daily["interval"] == "day"
    assert len(daily["series"]) == 91  # from was rounded down to its day
    assert daily["from"] == (today - dt.timedelta(days=90)).isoformat().replace("+00:00", "Z")
    assert [p["issued"] for p in daily["series"]] == [0] * 90 + [1]
    assert daily["series"][-1]["start"] == today.isoformat().replace("+00:00", "Z")
    assert len(hourly["series"]) == 48
    assert sum(p["issued"] for p in hourly["series"]) == 1
    assert hourly["series"][-1]["issued"] == 1


async def test_counters_lose_nothing_under_concurrency(
    runtime: Runtime, builder: issuing.PassBuilder, template: str, database: Database
) -> None:
    """Concurrent transactions counting into the same hour's row: every one counts (on
    PostgreSQL they run at once; the upsert adds inside the database)."""
    issued = await asyncio.gather(*(issue(runtime, builder, template) for _ in range(20)))
    await asyncio.gather(
        *(
            database.hot.register(
                Registration(
                    pass_type_id=wallet_pass.pass_type_id,
                    serial_number=wallet_pass.serial_number,
                    presented_token=wallet_pass.authentication_token,
                    device_library_id=f"device-{n}-{k}",
                    push_token=f"token-{n}-{k}",
                    now_ms=issuing.now_ms(),
                    max_registrations=0,
                    transport="apns",
                    push_service_url="",
                )
            )
            for n, wallet_pass in enumerate(issued)
            for k in range(3)
        )
    )

    async with database.reader() as conn:
        from passhouse.storage import analytics

        totals = await analytics.totals(conn, analytics.Scope())

    assert (totals["issued"], totals["installs"]) == (20, 60)


async def test_views_show_installs_and_totals(
    admin: httpx.AsyncClient, client: httpx.AsyncClient, wallet_pass: IssuedPass, template: str
) -> None:
    url = f"/api/v1/passes/{wallet_pass.pass_type_id}/{wallet_pass.serial_number}"
    before = (await admin.get(url)).json()
    for device in ("device-a", "device-b"):
        assert await register(client, wallet_pass, device) == 201
    await client.delete(wallet_pass.registration_path("device-a"), headers=wallet_pass.auth)

    after = (await admin.get(url)).json()
    listed = (await admin.get("/api/v1/passes")).json()["items"][0]
    template_view = (await admin.get(f"/api/v1/templates/{template}")).json()
    pass_type_view = (await admin.get(f"/api/v1/pass-types/{PASS_TYPE_ID}")).json()

    assert (before["installs"], before["first_installed_at"]) == (0, None)
    assert after["installs"] == 1
    assert after["first_installed_at"].endswith("Z")
    assert (listed["installs"], listed["first_installed_at"]) == (1, after["first_installed_at"])
    for view in (template_view, pass_type_view):
        totals = view["totals"]
        assert (totals["passes"], totals["installs"], totals["active_installs"]) == (1, 2, 1)


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"interval": "week"}, 422),
        ({"from": "2026-12-01T00:00:00"}, 422),  # no zone
        ({"from": "yesterday"}, 422),
        ({"to": "0.5"}, 422),  # a number is not an ISO 8601 time (pydantic reads it as Unix)
        ({"from": "1764547200"}, 422),
        ({"from": "2026-12-02T00:00:00Z", "to": "2026-12-01T00:00:00Z"}, 422),
        ({"from": "2016-01-01T00:00:00Z", "interval": "hour"}, 422),  # too many points
        ({"from": "0001-01-01T00:00:00Z"}, 422),
        ({"template": "nope"}, 404),
        ({"pass_type_id": "pass.nope"}, 404),
        ({"template": "card", "pass_type_id": "pass.other"}, 422),
    ],
)
async def test_bad_stats_parameters(
    admin: httpx.AsyncClient, template: str, params: dict[str, str], status: int
) -> None:
    response = await admin.get("/api/v1/stats", params=params)

    assert_error(response, status)
