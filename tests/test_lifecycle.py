"""Scheduled changes, expiry and retirement, applied by real worker loops (run_worker) on
the test database, seen through the admin API and the PassKit endpoints."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import io
import json
import time
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from structlog.testing import capture_logs

from conftest import TEMPLATE_JSON
from factories import IssuedPass, count_rows, issue
from passhouse import devmode, issuing, lifecycle
from passhouse.bootstrap import Runtime
from passhouse.settings import Settings
from passhouse.storage import pass_versions
from passhouse.storage.database import Database
from passhouse.storage.tables import passes, push_jobs, registrations
from passhouse.worker import run_worker
from test_worker import RecordingSender

DEVICE = "device-lifecycle-1"
TOKEN = "push-token-lifecycle-1"


def _iso(moment: dt.datetime) -> str:
    return moment.isoformat()


def _in(seconds: float) -> str:
    return _iso(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds))


def _parse(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def wait_until(check: Callable[[], Awaitable[bool]], *, within: float = 30.0) -> None:
    """Poll `check` until it holds; fail after `within` seconds (a bound, not a measurement)."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("the workers did not get there in time")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def running_worker(
    runtime: Runtime, sender: RecordingSender | None = None
) -> AsyncIterator[RecordingSender]:
    sender = sender or RecordingSender()
    stop = asyncio.Event()
    task = asyncio.create_task(run_worker(runtime, stop, sender=sender))
    try:
        yield sender
    finally:
        stop.set()
        await task


def _with(runtime: Runtime, **settings: Any) -> Runtime:
    changed: Settings = runtime.settings.model_copy(update=settings)
    return Runtime(settings=changed, database=runtime.database, sealer=runtime.sealer)


async def _register(client: httpx.AsyncClient, wallet_pass: IssuedPass) -> None:
    response = await client.post(
        wallet_pass.registration_path(DEVICE), headers=wallet_pass.auth, json={"pushToken": TOKEN}
    )
    assert response.status_code == 201


async def _schedule(admin: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await admin.post("/api/v1/scheduled-changes", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def _change(admin: httpx.AsyncClient, change_id: int) -> dict[str, Any]:
    response = await admin.get(f"/api/v1/scheduled-changes/{change_id}")
    assert response.status_code == 200
    found: dict[str, Any] = response.json()
    return found


async def _pass(admin: httpx.AsyncClient, wallet_pass: IssuedPass) -> dict[str, Any]:
    response = await admin.get(
        f"/api/v1/passes/{wallet_pass.pass_type_id}/{wallet_pass.serial_number}"
    )
    assert response.status_code == 200
    found: dict[str, Any] = response.json()
    return found


def _finished(admin: httpx.AsyncClient, change_id: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return bool((await _change(admin, change_id))["status"] != "pending")

    return check


# --- scheduled changes -------------------------------------------------------------------


async def test_a_scheduled_change_is_applied_at_its_time_with_a_version_and_a_push(
    runtime: Runtime, admin: httpx.AsyncClient, client: httpx.AsyncClient, wallet_pass: IssuedPass
) -> None:
    await _register(client, wallet_pass)
    before = await _pass(admin, wallet_pass)
    change = await _schedule(
        admin,
        pass_type_id=wallet_pass.pass_type_id,
        serial_number=wallet_pass.serial_number,
        at=_in(1.0),
        data={"balance": 99},
    )
    assert change["status"] == "pending"

    async with running_worker(runtime) as sender:
        await wait_until(_finished(admin, change["id"]))
        await wait_until(lambda: _true(TOKEN in sender.tokens()))

    applied = await _change(admin, change["id"])
    after = await _pass(admin, wallet_pass)
    assert applied["status"] == "applied"
    assert applied["passes_changed"] == 1
    assert _parse(applied["finished_at"]) - _parse(applied["at"]) < 2.0
    assert _parse(applied["finished_at"]) >= _parse(applied["at"])
    assert after["data"]["balance"] == 99
    assert after["version"] > before["version"]
    assert sender.tokens() == [TOKEN]


async def _true(value: bool) -> bool:
    return value


async def test_two_workers_racing_apply_each_change_exactly_once(
    runtime: Runtime,
    database_url: str,
    admin: httpx.AsyncClient,
    builder: issuing.PassBuilder,
    template: str,
) -> None:
    issued = [await issue(runtime, builder, template) for _ in range(12)]
    changes = [
        await _schedule(
            admin,
            pass_type_id=p.pass_type_id,
            serial_number=p.serial_number,
            at=_in(-1.0),
            data={"balance": 1000 + i},
        )
        for i, p in enumerate(issued)
    ]
    other = Database(database_url, pool_size=2, hot_pool_size=2)
    second = Runtime(settings=runtime.settings, database=other, sealer=runtime.sealer)

    try:
        with capture_logs() as logs:
            async with running_worker(runtime), running_worker(second):
                for change in changes:
                    await wait_until(_finished(admin, change["id"]))
    finally:
        await other.dispose()

    finished = [e["change_id"] for e in logs if e["event"] == "scheduled_change_finished"]
    assert sorted(finished) == sorted(c["id"] for c in changes)
    for i, p in enumerate(issued):
        assert (await _pass(admin, p))["data"]["balance"] == 1000 + i
    states = [(await _change(admin, c["id"]))["status"] for c in changes]
    assert states == ["applied"] * len(changes)


async def test_a_change_overdue_after_a_restart_is_applied_on_the_first_round(
    runtime: Runtime, admin: httpx.AsyncClient, wallet_pass: IssuedPass
) -> None:
    # Workers down: the change's time passes with nobody to apply it.
    change = await _schedule(
        admin,
        pass_type_id=wallet_pass.pass_type_id,
        serial_number=wallet_pass.serial_number,
        at=_iso(dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)),
        data={"name": "Grace"},
    )
    assert change["status"] == "pending"

    started = time.time()
    async with running_worker(runtime):
        await wait_until(_finished(admin, change["id"]))

    applied = await _change(admin, change["id"])
    assert applied["status"] == "applied"
    assert _parse(applied["finished_at"]) - started < 2.0
    assert (await _pass(admin, wallet_pass))["data"]["name"] == "Grace"


async def test_a_change_whose_result_is_invalid_fails_with_the_reason_and_sends_nothing(
    runtime: Runtime, admin: httpx.AsyncClient, client: httpx.AsyncClient, wallet_pass: IssuedPass
) -> None:
    await _register(client, wallet_pass)
    before = await _pass(admin, wallet_pass)
    # null removes "name", which the template's {{name}} placeholders need.
    bad = await _schedule(
        admin,
        pass_type_id=wallet_pass.pass_type_id,
        serial_number=wallet_pass.serial_number,
        at=_in(-1),
        data={"name": None, "balance": 5},
    )

    async with running_worker(runtime) as sender:
        await wait_until(_finished(admin, bad["id"]))

    failed = await _change(admin, bad["id"])
    after = await _pass(admin, wallet_pass)
    assert failed["status"] == "failed"
    assert "name" in failed["error"]
    assert failed["passes_changed"] == 0
    assert (after["version"], after["data"]) == (before["version"], before["data"])
    assert sender.tokens() == []


async def test_a_template_change_applies_to_the_matching_passes_and_lists_failures(
    runtime: Runtime, admin: httpx.AsyncClient, builder: issuing.PassBuilder, template: str
) -> None:
    gold = await issue(runtime, builder, template, member={"level": "gold"})
    silver = await issue(runtime, builder, template, member={"level": "silver"})
    voided = await issue(runtime, builder, template, member={"level": "gold"})
    await admin.post(f"/api/v1/passes/{voided.pass_type_id}/{voided.serial_number}/void")
    change = await _schedule(
        admin, template=template, where={"member.level": "gold"}, at=_in(-1), data={"balance": 7}
    )
    breaking = await _schedule(
        admin, template=template, where={"member.level": "silver"}, at=_in(-1), data={"name": None}
    )

    async with running_worker(runtime):
        await wait_until(_finished(admin, change["id"]))
        await wait_until(_finished(admin, breaking["id"]))

    applied, failed = await _change(admin, change["id"]), await _change(admin, breaking["id"])
    assert (applied["status"], applied["passes_changed"]) == ("applied", 1)
    assert applied["template"] == template
    assert (await _pass(admin, gold))["data"]["balance"] == 7
    assert (await _pass(admin, silver))["data"]["balance"] == 10
    assert (await _pass(admin, voided))["data"]["balance"] == 10
    assert (failed["status"], failed["passes_failed"]) == ("failed", 1)
    assert failed["failures"][0]["serial_number"] == silver.serial_number
    assert "name" in failed["failures"][0]["reason"]


async def test_a_pending_change_can_be_cancelled_and_is_then_never_applied(
    runtime: Runtime, admin: httpx.AsyncClient, wallet_pass: IssuedPass
) -> None:
    target = {"pass_type_id": wallet_pass.pass_type_id, "serial_number": wallet_pass.serial_number}
    cancelled = await _schedule(admin, **target, at=_in(-5), void=True)
    later = await _schedule(admin, **target, at=_in(-1), data={"balance": 3})

    response = await admin.delete(f"/api/v1/scheduled-changes/{cancelled['id']}")
    again = await admin.delete(f"/api/v1/scheduled-changes/{cancelled['id']}")
    async with running_worker(runtime):
        await wait_until(_finished(admin, later["id"]))
    too_late = await admin.delete(f"/api/v1/scheduled-changes/{later['id']}")

    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "conflict"
    assert too_late.status_code == 409
    assert "applied" in too_late.json()["error"]["message"]
    assert (await _change(admin, cancelled["id"]))["status"] == "cancelled"
    shown = await _pass(admin, wallet_pass)
    assert (shown["voided"], shown["data"]["balance"]) == (False, 3)
    pending = await admin.get("/api/v1/scheduled-changes", params={"status": "cancelled"})
    assert [item["id"] for item in pending.json()["items"]] == [cancelled["id"]]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"at": "2026-12-24T18:00:00", "data": {"balance": 1}}, "time zone"),
        ({"at": "2026-12-24T18:00:00Z", "data": {"balance": 1}, "void": True}, "not both"),
        ({"at": "2026-12-24T18:00:00Z"}, "not both"),
        ({"at": "2026-12-24T18:00:00Z", "data": {}}, "empty"),
        ({"at": "tomorrow", "data": {"balance": 1}}, "at"),
    ],
)
async def test_a_bad_schedule_is_a_422_that_says_why_and_stores_nothing(
    admin: httpx.AsyncClient, wallet_pass: IssuedPass, body: dict[str, Any], words: str
) -> None:
    target = {"pass_type_id": wallet_pass.pass_type_id, "serial_number": wallet_pass.serial_number}

    response = await admin.post("/api/v1/scheduled-changes", json={**target, **body})

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_input"
    assert words in response.json()["error"]["message"]
    listed = await admin.get("/api/v1/scheduled-changes")
    assert listed.json()["items"] == []


async def test_scheduling_for_an_unknown_pass_or_template_is_a_404_and_a_voided_one_409(
    admin: httpx.AsyncClient, template: str, wallet_pass: IssuedPass
) -> None:
    path = f"/api/v1/passes/{wallet_pass.pass_type_id}/{wallet_pass.serial_number}"
    await admin.post(f"{path}/void")
    voided = await admin.post(
        "/api/v1/scheduled-changes",
        json={
            "pass_type_id": wallet_pass.pass_type_id,
            "serial_number": wallet_pass.serial_number,
            "at": _in(60),
            "data": {"balance": 1},
        },
    )
    unknown_pass = await admin.post(
        "/api/v1/scheduled-changes",
        json={"pass_type_id": "pass.x", "serial_number": "nope", "at": _in(60), "void": True},
    )
    unknown_template = await admin.post(
        "/api/v1/scheduled-changes", json={"template": "nope", "at": _in(60), "void": True}
    )
    where_without_template = await admin.post(
        "/api/v1/scheduled-changes",
        json={
            "pass_type_id": "p",
            "serial_number": "s",
            "where": {"a": 1},
            "at": _in(60),
            "void": True,
        },
    )

    assert unknown_pass.status_code == 404
    assert voided.status_code == 409
    assert "voided" in voided.json()["error"]["message"]
    assert unknown_template.status_code == 404
    assert where_without_template.status_code == 422
    assert (await admin.get("/api/v1/scheduled-changes/12345")).status_code == 404


# --- expiry ------------------------------------------------------------------------------

EXPIRING_JSON = {**TEMPLATE_JSON, "expirationDate": "{{expires}}"}


@pytest.fixture
async def expiring(runtime: Runtime, pass_type: str) -> str:
    async with runtime.database.transaction() as conn:
        await issuing.create_template(
            conn,
            name="expiring",
            pass_type_id=pass_type,
            pass_json=EXPIRING_JSON,
            assets=devmode.demo_assets(),
        )
    return "expiring"


async def test_an_expired_pass_is_shown_expired_and_voided_at_that_time_when_asked(
    runtime: Runtime,
    admin: httpx.AsyncClient,
    client: httpx.AsyncClient,
    builder: issuing.PassBuilder,
    expiring: str,
) -> None:
    soon = await issue(runtime, builder, expiring, expires=_in(1.0))
    later = await issue(runtime, builder, expiring, expires=_in(3600))
    await _register(client, soon)

    async with running_worker(_with(runtime, void_expired=True)) as sender:

        async def voided() -> bool:
            return bool((await _pass(admin, soon))["voided"])

        await wait_until(voided)
        await wait_until(lambda: _true(TOKEN in sender.tokens()))

    shown, other = await _pass(admin, soon), await _pass(admin, later)
    assert (shown["expired"], shown["voided"], shown["retired"]) == (True, True, False)
    assert (other["expired"], other["voided"]) == (False, False)
    assert other["expires_at"] is not None
    listed = await admin.get("/api/v1/passes", params={"template": expiring})
    shown_in_list = {p["serial_number"]: p["expired"] for p in listed.json()["items"]}
    assert shown_in_list == {soon.serial_number: True, later.serial_number: False}


async def test_without_the_setting_an_expired_pass_is_flagged_not_voided(
    runtime: Runtime, admin: httpx.AsyncClient, builder: issuing.PassBuilder, expiring: str
) -> None:
    gone = await issue(runtime, builder, expiring, expires=_in(-60))
    marker = await _schedule(
        admin,
        pass_type_id=gone.pass_type_id,
        serial_number=gone.serial_number,
        at=_in(-1),
        data={"balance": 2},
    )

    async with running_worker(runtime):
        await wait_until(_finished(admin, marker["id"]))

    shown = await _pass(admin, gone)
    assert (shown["expired"], shown["voided"]) == (True, False)


async def test_a_template_change_moves_the_expiry_its_passes_show(
    runtime: Runtime, admin: httpx.AsyncClient, builder: issuing.PassBuilder, expiring: str
) -> None:
    wallet_pass = await issue(runtime, builder, expiring, expires=_in(3600))
    replaced = await admin.put(
        f"/api/v1/templates/{expiring}",
        json={
            "pass_json": {**TEMPLATE_JSON, "expirationDate": "2001-01-01T00:00:00Z"},
            "assets": _assets(),
        },
    )
    assert replaced.status_code == 200, replaced.text

    async with running_worker(runtime):

        async def expired() -> bool:
            return bool((await _pass(admin, wallet_pass))["expired"])

        await wait_until(expired)

    assert (await _pass(admin, wallet_pass))["expires_at"] == "2001-01-01T00:00:00Z"


async def test_a_template_date_from_pass_data_is_rendered_per_pass_and_a_shared_one_at_once(
    runtime: Runtime, admin: httpx.AsyncClient, builder: issuing.PassBuilder, expiring: str
) -> None:
    ends = "2098-01-01T00:00:00Z"  # a past date would retire the pass meanwhile
    ending = await issue(runtime, builder, expiring, expires=_in(3600), ends=ends)
    undated = await issue(runtime, builder, expiring, expires=_in(3600))
    per_pass = {**TEMPLATE_JSON, "expirationDate": "{{ends}}"}

    replaced = await admin.put(
        f"/api/v1/templates/{expiring}", json={"pass_json": per_pass, "assets": _assets()}
    )
    assert replaced.status_code == 200, replaced.text
    async with running_worker(runtime):

        async def rendered() -> bool:
            return bool((await _pass(admin, ending))["expires_at"] == ends)

        await wait_until(rendered)

    # A pass without the value the date needs has no date (its file cannot be built).
    assert (await _pass(admin, undated))["expires_at"] is None

    # A date the same for every pass, or none, is set by the change itself: no worker runs.
    for pass_json, expected in (
        ({**TEMPLATE_JSON, "expirationDate": "2099-01-01T00:00:00+00:00"}, "2099-01-01T00:00:00Z"),
        (TEMPLATE_JSON, None),
    ):
        replaced = await admin.put(
            f"/api/v1/templates/{expiring}", json={"pass_json": pass_json, "assets": _assets()}
        )
        assert replaced.status_code == 200, replaced.text
        shown = [(await _pass(admin, p))["expires_at"] for p in (ending, undated)]
        assert shown == [expected, expected]


async def test_passes_made_or_changed_in_bulk_expire_as_one_issued_does(
    runtime: Runtime, admin: httpx.AsyncClient, builder: issuing.PassBuilder, expiring: str
) -> None:
    past, future = "2001-01-01T00:00:00Z", "2099-01-01T00:00:00Z"
    single = await issue(runtime, builder, expiring, expires=future)
    batch = await admin.post(
        "/api/v1/passes/batch",
        json={
            "template": expiring,
            "items": [
                {
                    "serial_number": "batch-past",
                    "data": {"name": "A", "balance": 1, "expires": past},
                },
                {
                    "serial_number": "batch-future",
                    "data": {"name": "B", "balance": 2, "expires": future},
                },
            ],
        },
    )
    assert batch.status_code == 200, batch.text
    assert batch.json()["created"] == 2, batch.text
    csv = f"serial_number,name,balance,expires\ncsv-past,C,3,{past}\ncsv-future,D,4,{future}\n"
    imported = await admin.post(
        "/api/v1/imports",
        data={"template": expiring, "mode": "create"},
        files={"file": ("rows.csv", csv.encode(), "text/csv")},
    )
    assert imported.status_code == 202, imported.text
    moved = await admin.post(
        "/api/v1/passes/bulk-update",
        json={"template": expiring, "where": {"name": "Ada"}, "data": {"expires": past}},
    )
    assert moved.status_code == 202, moved.text

    async def jobs_done() -> bool:
        answers = [await admin.get(job.json()["url"]) for job in (imported, moved)]
        return all(answer.json()["status"] == "done" for answer in answers)

    def named(serial: str) -> IssuedPass:
        return IssuedPass(single.pass_type_id, serial, "", 0)

    async def past_ones_voided() -> bool:
        for serial in ("batch-past", "csv-past"):
            if not (await _pass(admin, named(serial)))["voided"]:
                return False
        return bool((await _pass(admin, single))["voided"])

    async with running_worker(_with(runtime, void_expired=True)):
        await wait_until(jobs_done)
        await wait_until(past_ones_voided)

    for serial in ("batch-past", "csv-past"):
        shown = await _pass(admin, named(serial))
        assert (shown["expires_at"], shown["expired"], shown["voided"]) == (past, True, True)
    for serial in ("batch-future", "csv-future"):
        shown = await _pass(admin, named(serial))
        assert (shown["expires_at"], shown["expired"], shown["voided"]) == (future, False, False)
    # The bulk update moved the single pass's expiry as a PATCH of it would have.
    assert (await _pass(admin, single))["expires_at"] == past


def _assets() -> dict[str, str]:
    return {name: base64.b64encode(data).decode() for name, data in devmode.demo_assets().items()}


# --- retirement --------------------------------------------------------------------------


def _pass_json(pkpass: bytes) -> dict[str, Any]:
    with zipfile.ZipFile(io.BytesIO(pkpass)) as archive:
        loaded: dict[str, Any] = json.loads(archive.read("pass.json"))
    return loaded


async def test_a_retired_pass_tells_its_devices_to_stop_and_is_never_pushed_again(
    runtime: Runtime, admin: httpx.AsyncClient, client: httpx.AsyncClient, wallet_pass: IssuedPass
) -> None:
    await _register(client, wallet_pass)
    first = await client.get(wallet_pass.path, headers=wallet_pass.auth)
    assert "webServiceURL" in _pass_json(first.content)
    since = first.headers["last-modified"]
    await admin.post(f"/api/v1/passes/{wallet_pass.pass_type_id}/{wallet_pass.serial_number}/void")

    async with running_worker(_with(runtime, retention_days=0)):

        async def retired() -> bool:
            return bool((await _pass(admin, wallet_pass))["retired"])

        await wait_until(retired)

    latest = await client.get(
        wallet_pass.path, headers={**wallet_pass.auth, "If-Modified-Since": since}
    )
    pass_json = _pass_json(latest.content)
    serials = await client.get(
        f"/passkit/v1/devices/{DEVICE}/registrations/{wallet_pass.pass_type_id}"
    )
    again = await client.post(
        wallet_pass.registration_path(DEVICE), headers=wallet_pass.auth, json={"pushToken": TOKEN}
    )
    assert latest.status_code == 200
    assert pass_json["voided"] is True
    assert "webServiceURL" not in pass_json
    assert "authenticationToken" not in pass_json
    assert serials.status_code == 204
    assert again.status_code == 200
    assert await count_rows(runtime, registrations) == 0
    # A template change re-versions every pass of it: nothing is queued for the retired one.
    replaced = await admin.put(
        "/api/v1/templates/card",
        json={"pass_json": {**TEMPLATE_JSON, "logoText": "New"}, "assets": _assets()},
    )
    assert replaced.json()["passes_changed"] == 1
    assert await count_rows(runtime, push_jobs) == 0
    assert (await client.get(wallet_pass.path, headers=wallet_pass.auth)).status_code == 200


async def test_a_pass_is_retired_only_after_the_retention_period(
    runtime: Runtime,
    admin: httpx.AsyncClient,
    client: httpx.AsyncClient,
    wallet_pass: IssuedPass,
    builder: issuing.PassBuilder,
    template: str,
) -> None:
    old = await issue(runtime, builder, template)
    await _register(client, wallet_pass)
    for p in (wallet_pass, old):
        await admin.post(f"/api/v1/passes/{p.pass_type_id}/{p.serial_number}/void")
    # `old` was voided 31 days ago.
    async with runtime.database.transaction() as conn:
        await conn.execute(
            passes.update()
            .where(passes.c.id == old.pass_id)
            .values(voided_at=issuing.now_seconds() - 31 * 86400)
        )

    async with running_worker(runtime):

        async def retired() -> bool:
            return bool((await _pass(admin, old))["retired"])

        await wait_until(retired)

    assert (await _pass(admin, wallet_pass))["retired"] is False
    assert await count_rows(runtime, registrations) == 1


async def test_retiring_leaves_the_other_passes_of_a_device_registered(
    runtime: Runtime,
    database: Database,
    builder: issuing.PassBuilder,
    template: str,
    client: httpx.AsyncClient,
) -> None:
    kept, ended = await issue(runtime, builder, template), await issue(runtime, builder, template)
    for p in (kept, ended):
        await _register(client, p)
    async with database.transaction() as conn:
        await issuing.void_pass(
            conn, ended.pass_type_id, ended.serial_number, actor=pass_versions.CLI
        )

    assert await lifecycle.retire_ended(database, retention_days=0) == 1

    async with database.reader() as conn:
        left = (await conn.execute(sa.select(registrations.c.pass_id))).scalars().all()
    assert list(left) == [kept.pass_id]
