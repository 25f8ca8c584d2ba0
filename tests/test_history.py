"""The version history: every cause records one row with its actor and diff, in the
change's own transaction; set-based for template changes; nothing for a failed change;
read newest first, a page at a time, through the admin API and the CLI (ADR 0029)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from conftest import ADMIN_TOKEN, PASS_TYPE_ID, TEMPLATE_JSON
from factories import IssuedPass, count_rows, issue
from passhouse import devmode, issuing, lifecycle
from passhouse.bootstrap import Runtime
from passhouse.pkpass.devcerts import DevCredentials
from passhouse.storage import api_keys, pass_versions
from passhouse.storage.tables import pass_versions as history
from passhouse.storage.tables import passes
from web.test_bulk import import_csv, run_jobs

KEY = "ph_history-key-abcdefghijklmnopqrstuvwxyz"


@pytest.fixture
async def key_id(runtime: Runtime) -> int:
    async with runtime.database.transaction() as conn:
        return await api_keys.add_key(conn, name="shop", key=KEY, now=issuing.now_seconds())


@pytest.fixture
async def keyed(app: Any, key_id: int) -> Any:
    """An issuer holding a key made with `api-key create` (named "shop")."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport,
        base_url="https://passes.example.test",
        headers={"Authorization": f"Bearer {KEY}"},
    ) as http:
        yield http


def shop(key_id: int) -> dict[str, Any]:
    return {"kind": "api_key", "key_id": key_id, "name": "shop"}


ADMIN = {"kind": "admin_token", "key_id": None, "name": "PASSHOUSE_ADMIN_TOKEN"}
CLI = {"kind": "cli", "key_id": None, "name": None}
SCHEDULER = {"kind": "scheduler", "key_id": None, "name": None}


async def versions(admin: httpx.AsyncClient, serial: str, **params: Any) -> list[dict[str, Any]]:
    response = await admin.get(f"/api/v1/passes/{PASS_TYPE_ID}/{serial}/versions", params=params)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def newest(admin: httpx.AsyncClient, serial: str) -> dict[str, Any]:
    return (await versions(admin, serial))[0]


async def stored_rows(runtime: Runtime) -> list[Any]:
    async with runtime.database.reader() as conn:
        return list((await conn.execute(sa.select(history).order_by(history.c.seq))).all())


async def current_version(runtime: Runtime, serial: str) -> int:
    async with runtime.database.reader() as conn:
        found = await conn.scalar(
            sa.select(passes.c.version).where(passes.c.serial_number == serial)
        )
    assert found is not None
    return int(found)


# --- each cause, its actor and its diff ----------------------------------------------------


async def test_issuing_records_the_key_and_every_data_key_as_added(
    keyed: httpx.AsyncClient, admin: httpx.AsyncClient, template: str, key_id: int
) -> None:
    response = await keyed.post(
        "/api/v1/passes",
        json={"template": template, "serial_number": "h-1", "data": {"name": "Ada", "balance": 5}},
    )

    assert response.status_code == 201
    (only,) = await versions(admin, "h-1")
    assert only["version"] == response.json()["version"]
    assert (only["cause"], only["actor"]) == ("issued", shop(key_id))
    assert only["by"] == f"API key shop (id {key_id})"
    assert only["changes"] == {
        "data": [{"key": "balance", "new": 5}, {"key": "name", "new": "Ada"}]
    }


async def test_a_data_change_records_old_and_new_values_and_who_made_it(
    keyed: httpx.AsyncClient, admin: httpx.AsyncClient, wallet_pass: IssuedPass, key_id: int
) -> None:
    url = f"/api/v1/passes/{PASS_TYPE_ID}/{wallet_pass.serial_number}"

    patched = await keyed.patch(url, json={"data": {"balance": 20, "member": {"tier": "gold"}}})
    replaced = await admin.put(url, json={"data": {"name": "Ada", "balance": 20}})
    unchanged = await admin.put(url, json={"data": {"name": "Ada", "balance": 20}})

    assert (patched.status_code, replaced.status_code, unchanged.json()["changed"]) == (
        200,
        200,
        False,
    )
    put, patch, issued = await versions(admin, wallet_pass.serial_number)
    assert issued["cause"] == "issued"
    assert (patch["cause"], patch["actor"], patch["version"]) == (
        "data_changed",
        shop(key_id),
        patched.json()["version"],
    )
    assert patch["changes"] == {
        "data": [
            {"key": "balance", "old": 10, "new": 20},
            {"key": "member.tier", "new": "gold"},
        ]
    }
    assert (put["actor"], put["version"]) == (ADMIN, replaced.json()["version"])
    assert put["changes"] == {"data": [{"key": "member.tier", "old": "gold"}]}


async def test_voiding_records_one_row_and_voiding_again_none(
    keyed: httpx.AsyncClient, admin: httpx.AsyncClient, wallet_pass: IssuedPass, key_id: int
) -> None:
    url = f"/api/v1/passes/{PASS_TYPE_ID}/{wallet_pass.serial_number}/void"

    await keyed.post(url)
    await keyed.post(url)

    voided, _ = await versions(admin, wallet_pass.serial_number)
    assert (voided["cause"], voided["actor"], voided["changes"]) == (
        "voided",
        shop(key_id),
        {"voided": True},
    )


async def test_a_template_change_records_one_row_per_pass_with_one_insert(
    runtime: Runtime,
    keyed: httpx.AsyncClient,
    admin: httpx.AsyncClient,
    builder: issuing.PassBuilder,
    template: str,
    key_id: int,
) -> None:
    made = [await issue(runtime, builder, template, balance=i) for i in range(25)]
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "pass_versions" in statement:
            statements.append(statement.split()[0].upper())

    engine = runtime.database.engine.sync_engine
    sa.event.listen(engine, "before_cursor_execute", seen)
    try:
        response = await keyed.put(
            f"/api/v1/templates/{template}",
            json={"pass_json": {**TEMPLATE_JSON, "logoText": "New"}, "assets": _assets()},
        )
    finally:
        sa.event.remove(engine, "before_cursor_execute", seen)

    assert response.status_code == 200, response.text
    assert response.json()["passes_changed"] == 25
    # One INSERT ... SELECT for 25 passes, and the prune: no statement per pass.
    assert statements == ["INSERT", "DELETE"]
    revision = response.json()["revision"]
    for p in made:
        latest, first = await versions(admin, p.serial_number)
        assert (latest["cause"], latest["actor"]) == ("template_changed", shop(key_id))
        changes = {
            "template": {"id": response.json()["id"], "name": template, "revision": revision}
        }
        assert latest["changes"] == changes
        assert latest["version"] == await current_version(runtime, p.serial_number)
        assert first["cause"] == "issued"
    assert len(await stored_rows(runtime)) == 50


def _assets() -> dict[str, str]:
    import base64

    return {name: base64.b64encode(data).decode() for name, data in devmode.demo_assets().items()}


async def test_a_renewed_certificate_records_a_version_of_each_pass(
    runtime: Runtime,
    keyed: httpx.AsyncClient,
    admin: httpx.AsyncClient,
    wallet_pass: IssuedPass,
    credentials: DevCredentials,
    key_id: int,
) -> None:
    response = await keyed.post(
        "/api/v1/pass-types",
        json={
            "certificate_pem": credentials.cert_pem.decode(),
            "private_key_pem": credentials.key_pem.decode(),
            "wwdr_pem": credentials.wwdr_cert_pem.decode(),
        },
    )

    assert response.status_code == 200, response.text
    latest = await newest(admin, wallet_pass.serial_number)
    assert (latest["cause"], latest["actor"], latest["changes"]) == (
        "certificate_renewed",
        shop(key_id),
        {},
    )


async def test_a_republish_after_a_url_change_is_the_servers(
    runtime: Runtime, client: httpx.AsyncClient, admin: httpx.AsyncClient, wallet_pass: IssuedPass
) -> None:
    signed = await client.get(wallet_pass.path, headers=wallet_pass.auth)  # a file for this URL
    assert signed.status_code == 200

    async with runtime.database.transaction() as conn:
        counts = await issuing.republish_for_build_key(conn, issuing.build_key("https://moved/pk"))

    assert counts == {PASS_TYPE_ID: 1}
    latest = await newest(admin, wallet_pass.serial_number)
    assert (latest["cause"], latest["actor"]["kind"], latest["by"]) == (
        "republished",
        "system",
        "the server",
    )
    assert latest["version"] == await current_version(runtime, wallet_pass.serial_number)


async def test_a_batch_an_import_and_a_bulk_update_record_their_key(
    runtime: Runtime,
    keyed: httpx.AsyncClient,
    admin: httpx.AsyncClient,
    builder: issuing.PassBuilder,
    template: str,
    key_id: int,
) -> None:
    batch = await keyed.post(
        "/api/v1/passes/batch",
        json={
            "template": template,
            "items": [{"serial_number": "b-1", "data": {"name": "B", "balance": 1}}],
        },
    )
    imported = await import_csv(
        keyed, "serial_number,name,balance\nc-1,C,2\nb-1,B,3\n", mode="upsert"
    )
    await run_jobs(runtime, builder)
    updated = await keyed.post(
        "/api/v1/passes/bulk-update",
        json={"template": template, "where": {"name": "C"}, "data": {"tier": "gold"}},
    )
    await run_jobs(runtime, builder)

    assert (batch.status_code, imported.status_code, updated.status_code) == (200, 202, 202)
    b_import, b_batch = await versions(admin, "b-1")
    assert (b_batch["cause"], b_batch["actor"]) == ("batch_issued", shop(key_id))
    assert b_batch["changes"]["data"] == [{"key": "balance", "new": 1}, {"key": "name", "new": "B"}]
    assert (b_import["cause"], b_import["actor"]) == ("csv_import", shop(key_id))
    # CSV cells are text: the diff shows the number 1 replaced by the text "3".
    assert b_import["changes"] == {"data": [{"key": "balance", "old": 1, "new": "3"}]}
    c_bulk, c_import = await versions(admin, "c-1")
    assert (c_import["cause"], c_import["changes"]["data"][1]) == (
        "csv_import",
        {"key": "name", "new": "C"},
    )
    assert (c_bulk["cause"], c_bulk["actor"]) == ("bulk_update", shop(key_id))
    assert c_bulk["changes"] == {"data": [{"key": "tier", "new": "gold"}]}
    assert c_bulk["version"] == await current_version(runtime, "c-1")


async def test_scheduled_changes_expiry_and_retirement_are_the_schedulers(
    runtime: Runtime,
    admin: httpx.AsyncClient,
    builder: issuing.PassBuilder,
    template: str,
) -> None:
    changed = await issue(runtime, builder, template)
    expiring = await issue(runtime, builder, template)
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    async with runtime.database.transaction() as conn:
        await lifecycle.schedule_change(
            conn,
            lifecycle.ChangeRequest(
                at=past,
                pass_type_id=PASS_TYPE_ID,
                serial_number=changed.serial_number,
                data={"balance": 99},
            ),
        )
        await conn.execute(
            passes.update().where(passes.c.id == expiring.pass_id).values(expires_at=1_000)
        )

    assert await lifecycle.apply_due_change(runtime.database, builder)
    assert await lifecycle.void_expired(runtime.database) == 1
    assert await lifecycle.retire_ended(runtime.database, retention_days=0) == 1

    scheduled = await newest(admin, changed.serial_number)
    assert (scheduled["cause"], scheduled["actor"], scheduled["by"]) == (
        "scheduled_change",
        SCHEDULER,
        "the scheduler",
    )
    assert scheduled["changes"] == {"data": [{"key": "balance", "old": 10, "new": 99}]}
    retired, expired, _ = await versions(admin, expiring.serial_number)
    assert (expired["cause"], expired["actor"], expired["changes"]) == (
        "expired",
        SCHEDULER,
        {"voided": True},
    )
    assert (retired["cause"], retired["changes"]) == ("retired", {"retired": True})


PERSONALIZATION = (
    b'{"description": "Join the club", "requiredPersonalizationFields": '
    b'["PKPassPersonalizationFieldName", "PKPassPersonalizationFieldEmailAddress"]}'
)


async def test_personalizing_is_the_devices_and_keeps_field_names_not_values(
    runtime: Runtime,
    client: httpx.AsyncClient,
    admin: httpx.AsyncClient,
    builder: issuing.PassBuilder,
    pass_type: str,
) -> None:
    async with runtime.database.transaction() as conn:
        await issuing.create_template(
            conn,
            name="club",
            pass_type_id=pass_type,
            pass_json={**devmode.DEMO_PASS_JSON, "nfc": {"message": "member"}},
            assets={**devmode.demo_assets(), "personalization.json": PERSONALIZATION},
        )
    p = await issue(runtime, builder, "club")
    body = {
        "personalizationToken": "token-from-wallet",
        "requiredPersonalizationInfo": {"fullName": "Ada Lovelace", "emailAddress": "a@b.c"},
    }

    first = await client.post(p.path + "/personalize", json=body)
    again = await client.post(p.path + "/personalize", json=body)

    assert first.status_code == 200
    assert again.status_code != 200  # once only: the second one failed, and records nothing
    personalized, _ = await versions(admin, p.serial_number)
    assert (personalized["cause"], personalized["actor"]["kind"]) == ("personalized", "device")
    assert personalized["changes"] == {"personalization": ["emailAddress", "fullName"]}
    assert "Ada Lovelace" not in json.dumps(personalized)


async def test_the_passninja_api_records_the_key_it_was_called_with(
    client: httpx.AsyncClient, admin: httpx.AsyncClient, template: str, key_id: int
) -> None:
    headers = {"X-API-KEY": KEY}

    created = await client.post(
        "/v1/passes",
        headers=headers,
        json={"passType": template, "pass": {"name": "Ada", "balance": 1}, "serialNumber": "pn-1"},
    )
    changed = await client.patch(
        f"/v1/passes/{template}/pn-1", headers=headers, json={"pass": {"balance": 2}}
    )

    assert (created.status_code, changed.status_code) == (201, 200), changed.text
    update, issued = await versions(admin, "pn-1")
    assert (issued["actor"], update["actor"]) == (shop(key_id), shop(key_id))


# --- what is not recorded ------------------------------------------------------------------


async def test_a_failed_change_records_nothing(
    runtime: Runtime,
    admin: httpx.AsyncClient,
    builder: issuing.PassBuilder,
    wallet_pass: IssuedPass,
    template: str,
) -> None:
    url = f"/api/v1/passes/{PASS_TYPE_ID}/{wallet_pass.serial_number}"
    before = await stored_rows(runtime)
    # null removes "name", which the template's {{name}} placeholders need: checked after
    # the pass was read, before anything is written.
    breaking = {"name": None, "balance": 5}
    async with runtime.database.transaction() as conn:
        await lifecycle.schedule_change(
            conn,
            lifecycle.ChangeRequest(
                at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1),
                pass_type_id=PASS_TYPE_ID,
                serial_number=wallet_pass.serial_number,
                data=breaking,
            ),
        )

    assert await lifecycle.apply_due_change(runtime.database, builder)  # applied as failed
    invalid = await admin.patch(url, json={"data": breaking})
    nul = await admin.put(url, json={"data": {"name": "Ada\u0000"}})
    bad_template = await admin.put(
        f"/api/v1/templates/{template}", json={"pass_json": {"formatVersion": 1}, "assets": {}}
    )
    unknown = await admin.patch(f"/api/v1/passes/{PASS_TYPE_ID}/nope", json={"data": {"a": 1}})

    assert invalid.status_code == 422, invalid.text
    assert nul.status_code in (400, 422), nul.text
    assert bad_template.status_code == 422, bad_template.text
    assert unknown.status_code == 404
    assert await stored_rows(runtime) == before


async def test_a_change_rolled_back_after_its_version_leaves_no_row(
    runtime: Runtime, builder: issuing.PassBuilder, wallet_pass: IssuedPass
) -> None:
    before = await count_rows(runtime, history)

    class Abort(Exception):
        pass

    async def change_then_fail() -> None:
        async with runtime.database.transaction() as conn:
            await issuing.change_pass_data(
                conn,
                builder,
                PASS_TYPE_ID,
                wallet_pass.serial_number,
                {"balance": 11},
                merge=True,
                actor=pass_versions.CLI,
            )
            raise Abort  # whatever fails later in the request's transaction

    with pytest.raises(Abort):
        await change_then_fail()

    assert await count_rows(runtime, history) == before


# --- reading -------------------------------------------------------------------------------


async def test_the_history_is_newest_first_in_keyset_pages(
    runtime: Runtime, admin: httpx.AsyncClient, wallet_pass: IssuedPass
) -> None:
    url = f"/api/v1/passes/{PASS_TYPE_ID}/{wallet_pass.serial_number}"
    for balance in range(11, 16):
        await admin.patch(url, json={"data": {"balance": balance}})

    first = (await admin.get(f"{url}/versions", params={"limit": 4})).json()
    second = (
        await admin.get(f"{url}/versions", params={"limit": 4, "cursor": first["next_cursor"]})
    ).json()

    seen = [v["version"] for v in first["items"] + second["items"]]
    assert len(seen) == 6
    assert seen == sorted(seen, reverse=True)
    assert [v["changes"]["data"][0]["new"] for v in first["items"]] == [15, 14, 13, 12]
    assert second["items"][-1]["cause"] == "issued"
    assert second["next_cursor"] is None
    assert first["kept"] == pass_versions.HISTORY_LIMIT
    assert first["items"][0]["at"].endswith("Z")


@pytest.mark.parametrize("cursor", ["abc", "-1", "1" * 19, "²"])
async def test_a_cursor_not_returned_by_the_api_is_a_4xx(
    admin: httpx.AsyncClient, wallet_pass: IssuedPass, cursor: str
) -> None:
    response = await admin.get(
        f"/api/v1/passes/{PASS_TYPE_ID}/{wallet_pass.serial_number}/versions",
        params={"cursor": cursor},
    )

    assert response.status_code in (400, 422)
    assert "error" in response.json()


async def test_the_history_of_an_unknown_pass_is_a_404(
    admin: httpx.AsyncClient, pass_type: str
) -> None:
    response = await admin.get(f"/api/v1/passes/{PASS_TYPE_ID}/nope/versions")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


async def test_the_history_needs_the_api_key(
    client: httpx.AsyncClient, wallet_pass: IssuedPass
) -> None:
    response = await client.get(
        f"/api/v1/passes/{PASS_TYPE_ID}/{wallet_pass.serial_number}/versions",
        headers={"Authorization": f"Bearer not-{ADMIN_TOKEN}"},
    )

    assert response.status_code == 401
