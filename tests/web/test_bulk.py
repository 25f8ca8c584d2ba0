"""Batches, CSV imports and bulk updates through the admin API, run by the real job code."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import sqlalchemy as sa

from conftest import ADMIN_TOKEN, PASS_TYPE_ID
from passhouse import bulk, issuing
from passhouse.bootstrap import Runtime
from passhouse.storage import api_keys
from passhouse.storage.tables import (
    devices,
    idempotency_keys,
    job_rows,
    passes,
    push_jobs,
    registrations,
)

CSV_HEADER = "serial_number,name,balance,member.tier,member.since\n"


async def run_jobs(runtime: Runtime, builder: issuing.PassBuilder) -> None:
    """What a worker does: claim each queued job and run it to its end."""
    while (claimed := await bulk.claim_job(runtime.database, runtime.settings)) is not None:
        await bulk.run_claimed(runtime.database, builder, runtime.settings, *claimed)


async def import_csv(
    admin: httpx.AsyncClient, text: str | bytes, *, mode: str = "create", **headers: str
) -> httpx.Response:
    content = text.encode() if isinstance(text, str) else text
    return await admin.post(
        "/api/v1/imports",
        data={"template": "card", "mode": mode},
        files={"file": ("members.csv", content, "text/csv")},
        headers=headers,
    )


async def pass_row(runtime: Runtime, serial: str) -> Any:
    async with runtime.database.reader() as conn:
        return (
            await conn.execute(sa.select(passes).where(passes.c.serial_number == serial))
        ).first()


async def count_passes(runtime: Runtime) -> int:
    async with runtime.database.reader() as conn:
        return int(await conn.scalar(sa.select(sa.func.count()).select_from(passes)) or 0)


async def register(runtime: Runtime, serial: str, token: str) -> None:
    row = await pass_row(runtime, serial)
    async with runtime.database.transaction() as conn:
        device_id = await conn.scalar(
            devices.insert()
            .values(device_library_id=f"device-{token}", created_at=0)
            .returning(devices.c.id)
        )
        await conn.execute(
            registrations.insert().values(
                device_id=device_id, pass_id=row.id, push_token=token, registered_at_ms=0
            )
        )


async def queued_tokens(runtime: Runtime) -> list[str]:
    async with runtime.database.reader() as conn:
        result = await conn.execute(sa.select(push_jobs.c.push_token).order_by("push_token"))
        return list(result.scalars())


# --- batch --------------------------------------------------------------------------------


async def test_a_batch_creates_the_valid_items_and_names_each_failure(
    admin: httpx.AsyncClient, runtime: Runtime, template: str
) -> None:
    await admin.post(
        "/api/v1/passes",
        json={"template": template, "serial_number": "taken", "data": {"name": "A", "balance": 1}},
    )
    items: list[dict[str, Any]] = [
        {"serial_number": "b-1", "data": {"name": "Ada", "balance": 1}},
        {"data": {"name": "Grace", "balance": 2}},
        {"serial_number": "b-3", "data": {"balance": 3}},  # no name: {{name}} unfilled
        {"serial_number": "taken", "data": {"name": "B", "balance": 4}},
        {"serial_number": "b-1", "data": {"name": "Twice", "balance": 5}},
        {"serial_number": "bad serial!", "data": {"name": "C", "balance": 6}},
    ]
    response = await admin.post("/api/v1/passes/batch", json={"template": template, "items": items})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["created"], body["failed"]) == (2, 4)
    assert [r["index"] for r in body["items"]] == [0, 1, 2, 3, 4, 5]
    statuses = [r["status"] for r in body["items"]]
    assert statuses == ["created", "created", "failed", "failed", "failed", "failed"]
    first = body["items"][0]["pass"]
    assert first["serial_number"] == "b-1"
    assert first["urls"]["pkpass"].endswith(f"/api/v1/passes/{PASS_TYPE_ID}/b-1/pkpass")
    assert (await admin.get(first["urls"]["pkpass"])).content[:2] == b"PK"
    codes = [r["error"]["code"] for r in body["items"][2:]]
    assert codes == ["invalid_input", "conflict", "conflict", "invalid_input"]
    assert "name" in body["items"][2]["error"]["message"]
    assert "item 0" in body["items"][4]["error"]["message"]
    assert await count_passes(runtime) == 3
    assert (await pass_row(runtime, "b-3")) is None


async def test_a_batch_is_bounded_and_needs_a_known_template(
    admin: httpx.AsyncClient, template: str
) -> None:
    item = {"data": {"name": "A", "balance": 1}}
    too_many = await admin.post(
        "/api/v1/passes/batch", json={"template": template, "items": [item] * 1001}
    )
    assert too_many.status_code == 422
    unknown = await admin.post("/api/v1/passes/batch", json={"template": "nope", "items": [item]})
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "not_found"


# --- imports ------------------------------------------------------------------------------


async def test_an_import_creates_a_pass_per_row_and_reports_bad_rows(
    admin: httpx.AsyncClient, runtime: Runtime, builder: issuing.PassBuilder, template: str
) -> None:
    text = (
        "\ufeff"
        + CSV_HEADER
        + "m-1,Ada,10,gold,2020\n"
        + "m-2,Grace,20,silver,\n"
        + "m-3,Short,30\n"  # ragged: 3 fields
        + "\n"
        + ',"Quoted, name",40,gold,2021\n'
        + "m-5,,50,gold,2022\n"  # no name
    )
    response = await import_csv(admin, text)
    assert response.status_code == 202, response.text
    job = response.json()
    assert (job["status"], job["kind"], job["total"], job["done"]) == ("queued", "import", 5, 0)
    await run_jobs(runtime, builder)
    done = (await admin.get(job["url"])).json()
    assert done["status"] == "done"
    assert (done["total"], done["done"], done["created"], done["failed"]) == (5, 5, 3, 2)
    assert [(e["row"], e["serial_number"]) for e in done["errors"]] == [(4, None), (7, "m-5")]
    assert "3 fields" in done["errors"][0]["message"]
    assert "name" in done["errors"][1]["message"]
    ada = await pass_row(runtime, "m-1")
    assert ada.data == {
        "name": "Ada",
        "balance": "10",
        "member": {"tier": "gold", "since": "2020"},
    }
    grace = await pass_row(runtime, "m-2")
    assert grace.data["member"] == {"tier": "silver"}  # an empty cell sets nothing
    async with runtime.database.reader() as conn:
        quoted = (
            await conn.execute(
                sa.select(passes.c.data).where(passes.c.serial_number.notlike("m-%"))
            )
        ).scalar_one()
        staged = await conn.scalar(sa.select(sa.func.count()).select_from(job_rows))
    assert quoted["name"] == "Quoted, name"
    assert staged == 0  # the staged rows go when the job is done
    errors = (await admin.get(f"{job['url']}/errors", params={"limit": 1})).json()
    assert [e["row"] for e in errors["items"]] == [4]
    rest = (
        await admin.get(f"{job['url']}/errors", params={"cursor": errors["next_cursor"]})
    ).json()
    assert [e["row"] for e in rest["items"]] == [7]
    listed = (await admin.get("/api/v1/jobs")).json()
    assert [item["id"] for item in listed["items"]] == [job["id"]]


async def test_an_upsert_import_merges_rows_into_existing_passes_and_pushes_once_each(
    admin: httpx.AsyncClient, runtime: Runtime, builder: issuing.PassBuilder, template: str
) -> None:
    first = await import_csv(admin, CSV_HEADER + "u-1,Ada,10,gold,2020\nu-2,Bob,5,,\n")
    await run_jobs(runtime, builder)
    assert (await admin.get(first.json()["url"])).json()["created"] == 2
    await register(runtime, "u-1", "token-a")
    await register(runtime, "u-2", "token-b")
    before = await pass_row(runtime, "u-1")
    again = await import_csv(admin, "serial_number,balance\nu-1,99\nu-2,5\nu-3,1\n", mode="upsert")
    await run_jobs(runtime, builder)
    job = (await admin.get(again.json()["url"])).json()
    assert (job["mode"], job["updated"], job["unchanged"], job["failed"]) == ("upsert", 1, 1, 1)
    assert job["errors"][0]["row"] == 4  # a new pass needs its name
    after = await pass_row(runtime, "u-1")
    assert after.data == {**before.data, "balance": "99"}
    assert after.version > before.version
    assert await queued_tokens(runtime) == ["token-a"]
    created_again = await import_csv(admin, "serial_number,name,balance\nu-1,X,1\n")
    await run_jobs(runtime, builder)
    refused = (await admin.get(created_again.json()["url"])).json()
    assert refused["failed"] == 1
    assert "already exists" in refused["errors"][0]["message"]


async def test_unreadable_csv_files_are_refused_before_anything_is_stored(
    admin: httpx.AsyncClient, runtime: Runtime, template: str
) -> None:
    runtime.settings.import_max_columns = 5
    runtime.settings.import_max_rows = 3
    cases: list[tuple[bytes, int, str]] = [
        (b"", 422, "empty"),
        (b"name,balance\n", 422, "no data rows"),
        ("name,balance\nZo\xe9,1\n".encode("latin-1"), 422, "UTF-8"),
        (b"name,name\nA,B\n", 422, "twice"),
        (b"member,member.tier\nA,B\n", 422, "cannot be text and an object"),
        (b"name,,balance\nA,1,2\n", 422, "no name"),
        (b"a,b,c,d,e,f\n1,2,3,4,5,6\n", 422, "PASSHOUSE_IMPORT_MAX_COLUMNS"),
        (b"name\nA\nB\nC\nD\n", 413, "PASSHOUSE_IMPORT_MAX_ROWS"),
        (b'name,balance\n"unclosed,1\n', 422, "not valid CSV"),
    ]
    for content, status, words in cases:
        response = await import_csv(admin, content)
        assert response.status_code == status, (content, response.text)
        assert words in response.json()["error"]["message"], (content, response.text)
    runtime.settings.import_max_bytes = 1024
    large = await import_csv(admin, b"name\n" + b"x" * 2000 + b"\n")
    assert large.status_code == 413
    assert "PASSHOUSE_IMPORT_MAX_BYTES" in large.json()["error"]["message"]
    assert (await admin.get("/api/v1/jobs")).json()["items"] == []
    unknown = await admin.post(
        "/api/v1/imports",
        data={"template": "nope"},
        files={"file": ("a.csv", b"name\nA\n", "text/csv")},
    )
    assert unknown.status_code == 404


# --- bulk updates -------------------------------------------------------------------------


async def test_a_bulk_update_changes_the_matching_passes_once_each(
    admin: httpx.AsyncClient, runtime: Runtime, builder: issuing.PassBuilder, template: str
) -> None:
    rows = "".join(f"p-{i},Name {i},{i},{'gold' if i % 2 else 'silver'},\n" for i in range(1, 7))
    await import_csv(admin, CSV_HEADER + rows)
    await run_jobs(runtime, builder)
    await admin.post("/api/v1/passes/batch", json={"template": template, "items": []})
    await admin.post(f"/api/v1/passes/{PASS_TYPE_ID}/p-5/void")
    for serial in ("p-1", "p-2", "p-3"):
        await register(runtime, serial, f"token-{serial}")
    before = {s: await pass_row(runtime, s) for s in ("p-1", "p-2", "p-3", "p-5")}
    async with runtime.database.transaction() as conn:
        await conn.execute(push_jobs.delete())
    response = await admin.post(
        "/api/v1/passes/bulk-update",
        json={
            "template": template,
            "where": {"member.tier": "gold", "voided": False},
            "data": {"offer": "double points", "member": {"since": "now"}},
        },
    )
    assert response.status_code == 202, response.text
    job = response.json()
    assert (job["kind"], job["total"]) == ("bulk_update", 5)  # p-5 is voided
    await run_jobs(runtime, builder)
    done = (await admin.get(job["url"])).json()
    assert (done["status"], done["done"], done["updated"], done["failed"]) == ("done", 5, 2, 0)
    one = await pass_row(runtime, "p-1")
    assert one.data["offer"] == "double points"
    assert one.data["member"] == {"tier": "gold", "since": "now"}
    assert one.version > before["p-1"].version
    assert (await pass_row(runtime, "p-2")).version == before["p-2"].version
    assert (await pass_row(runtime, "p-5")).data == before["p-5"].data
    assert await queued_tokens(runtime) == ["token-p-1", "token-p-3"]
    # The same patch again changes nothing, and a patch that breaks the pass is refused.
    await admin.post(
        "/api/v1/passes/bulk-update",
        json={
            "template": template,
            "where": {"member.tier": "gold"},
            "data": {"offer": "double points"},
        },
    )
    broken = await admin.post(
        "/api/v1/passes/bulk-update",
        json={"template": template, "where": {"member.tier": "silver"}, "data": {"name": None}},
    )
    await run_jobs(runtime, builder)
    same = (await admin.get(f"/api/v1/jobs/{broken.json()['id'] - 1}")).json()
    assert (same["updated"], same["unchanged"]) == (0, 2)
    refused = (await admin.get(broken.json()["url"])).json()
    assert (refused["updated"], refused["failed"]) == (0, 3)
    assert {e["serial_number"] for e in refused["errors"]} == {"p-2", "p-4", "p-6"}
    assert "name" in (await pass_row(runtime, "p-2")).data


async def test_a_bulk_update_refuses_what_cannot_match(
    admin: httpx.AsyncClient, template: str
) -> None:
    for body, status in [
        ({"template": template, "where": {"voided": True}, "data": {"a": "b"}}, 422),
        ({"template": template, "where": {"voided": "no"}, "data": {"a": "b"}}, 422),
        ({"template": template, "where": {"a..b": 1}, "data": {"a": "b"}}, 422),
        ({"template": template, "data": {}}, 422),
        ({"template": "nope", "data": {"a": "b"}}, 404),
    ]:
        response = await admin.post("/api/v1/passes/bulk-update", json=body)
        assert response.status_code == status, (body, response.text)
    assert (await admin.get("/api/v1/jobs/99")).status_code == 404


# --- Idempotency-Key ----------------------------------------------------------------------


async def test_a_retried_post_answers_the_first_answer_and_creates_nothing(
    admin: httpx.AsyncClient, runtime: Runtime, template: str
) -> None:
    body = {"template": template, "data": {"name": "Ada", "balance": 1}}
    key = {"Idempotency-Key": "retry-1"}
    first = await admin.post("/api/v1/passes", json=body, headers=key)
    again = await admin.post("/api/v1/passes", json=body, headers=key)
    assert first.status_code == again.status_code == 201
    assert first.content == again.content
    assert again.headers["idempotent-replayed"] == "true"
    assert await count_passes(runtime) == 1
    other = await admin.post(
        "/api/v1/passes", json={**body, "data": {"name": "Bob", "balance": 1}}, headers=key
    )
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    elsewhere = await admin.post(
        "/api/v1/passes/batch",
        json={"template": template, "items": [{"data": body["data"]}]},
        headers=key,
    )
    assert elsewhere.status_code == 422
    assert elsewhere.json()["error"]["code"] == "idempotency_key_reused"
    assert await count_passes(runtime) == 1
    # Scoped per API key: another key's "retry-1" is another request.
    other_key = "second-api-key-0123456789abcdef"
    async with runtime.database.transaction() as conn:
        await api_keys.add_key(conn, name="second", key=other_key, now=0)
    second = await admin.post(
        "/api/v1/passes",
        json=body,
        headers={**key, "Authorization": f"Bearer {other_key}"},
    )
    assert second.status_code == 201
    assert second.json()["serial_number"] != first.json()["serial_number"]


async def test_a_failed_request_does_not_keep_its_key(
    admin: httpx.AsyncClient, runtime: Runtime, template: str
) -> None:
    key = {"Idempotency-Key": "after-a-404"}
    missing = await admin.post(
        "/api/v1/passes", json={"template": "later", "data": {"name": "A"}}, headers=key
    )
    assert missing.status_code == 404
    # Nothing was made, so the key is free again, even for another body.
    body = {"template": template, "data": {"name": "A", "balance": 1}}
    assert (await admin.post("/api/v1/passes", json=body, headers=key)).status_code == 201
    assert await count_passes(runtime) == 1


async def test_expired_keys_are_forgotten(
    admin: httpx.AsyncClient, runtime: Runtime, template: str
) -> None:
    body = {"template": template, "data": {"name": "A", "balance": 1}}
    key = {"Idempotency-Key": "old"}
    first = await admin.post("/api/v1/passes", json=body, headers=key)
    async with runtime.database.transaction() as conn:
        await conn.execute(idempotency_keys.update().values(created_at=0))
    again = await admin.post("/api/v1/passes", json=body, headers=key)
    assert again.status_code == 201
    assert again.json()["serial_number"] != first.json()["serial_number"]
    await bulk.housekeeping(runtime.database, runtime.settings)
    async with runtime.database.reader() as conn:
        kept = await conn.scalar(sa.select(sa.func.count()).select_from(idempotency_keys))
    assert kept == 1  # the fresh one


async def test_an_import_retried_with_its_key_makes_one_job(
    admin: httpx.AsyncClient, runtime: Runtime, template: str
) -> None:
    text = "name,balance\nAda,1\n"
    first = await import_csv(admin, text, **{"Idempotency-Key": "import-1"})
    again = await import_csv(admin, text, **{"Idempotency-Key": "import-1"})
    assert first.status_code == again.status_code == 202
    assert first.content == again.content
    other = await import_csv(admin, "name,balance\nBob,1\n", **{"Idempotency-Key": "import-1"})
    assert other.status_code == 422
    assert len((await admin.get("/api/v1/jobs")).json()["items"]) == 1


async def test_concurrent_duplicates_create_one_pass(
    app: Any, runtime: Runtime, template: str
) -> None:
    """Requests racing with one key, each on its own connection: one pass, one answer."""
    body = {"template": template, "data": {"name": "Ada", "balance": 1}}
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Idempotency-Key": "race"}
    async with httpx.AsyncClient(transport=transport, base_url="https://x.test") as http:
        answers = await asyncio.gather(
            *(http.post("/api/v1/passes", json=body, headers=headers) for _ in range(8)),
            *(
                http.post(
                    "/api/v1/passes/batch",
                    json={"template": template, "items": [{"data": body["data"]}]},
                    headers={**headers, "Idempotency-Key": "race-batch"},
                )
                for _ in range(8)
            ),
        )
    singles, batches = answers[:8], answers[8:]
    assert {a.status_code for a in singles} == {201}
    assert len({a.content for a in singles}) == 1
    assert {a.status_code for a in batches} == {200}
    assert len({a.content for a in batches}) == 1
    assert await count_passes(runtime) == 2


async def test_passes_made_and_changed_in_bulk_are_searchable(
    admin: httpx.AsyncClient, runtime: Runtime, builder: issuing.PassBuilder, template: str
) -> None:
    await admin.post(
        "/api/v1/passes/batch",
        json={"template": template, "items": [{"data": {"name": "Zelda", "balance": 1}}]},
    )
    await import_csv(admin, "serial_number,name,balance\ns-1,Ygritte,2\n")
    await run_jobs(runtime, builder)
    await admin.post(
        "/api/v1/passes/bulk-update",
        json={"template": template, "where": {"name": "Ygritte"}, "data": {"name": "Xena"}},
    )
    await run_jobs(runtime, builder)

    async def found(q: str) -> list[str]:
        page = (await admin.get("/api/v1/passes", params={"q": q})).json()
        return [item["data"]["name"] for item in page["items"]]

    assert await found("zel") == ["Zelda"]
    assert await found("xen") == ["Xena"]
    assert await found("ygr") == []
