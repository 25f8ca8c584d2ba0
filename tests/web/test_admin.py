"""The admin REST API (/api/v1), endpoint by endpoint, as an issuer's backend calls it."""

from __future__ import annotations

import base64
import io
import json
import zipfile
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from conftest import ADMIN_TOKEN, PASS_TYPE_ID, TEAM_ID, TEMPLATE_JSON
from factories import IssuedPass, count_rows
from passhouse import devmode, issuing
from passhouse.bootstrap import Runtime
from passhouse.pkpass.devcerts import DevCredentials, issue_server_certificate
from passhouse.storage import api_keys
from passhouse.storage.tables import pass_types, passes, push_attempts, push_jobs, templates
from passhouse.worker import send_due_pushes
from push.rows import add_overdue_push
from test_worker import RecordingSender

PKPASS = "application/vnd.apple.pkpass"
DATA = {"name": "Ada", "balance": 10}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def pem_body(credentials: DevCredentials, **extra: Any) -> dict[str, Any]:
    return {
        "certificate_pem": credentials.cert_pem.decode(),
        "private_key_pem": credentials.key_pem.decode(),
        "wwdr_pem": credentials.wwdr_cert_pem.decode(),
        **extra,
    }


def p12_of(credentials: DevCredentials, password: bytes) -> bytes:
    key = serialization.load_pem_private_key(credentials.key_pem, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return pkcs12.serialize_key_and_certificates(
        b"pass",
        key,
        x509.load_pem_x509_certificate(credentials.cert_pem),
        [x509.load_pem_x509_certificate(credentials.wwdr_cert_pem)],
        serialization.BestAvailableEncryption(password),
    )


def template_body(name: str = "coffee", **extra: Any) -> dict[str, Any]:
    assets = {name: b64(data) for name, data in devmode.demo_assets().items()}
    return {
        "name": name,
        "pass_type_id": PASS_TYPE_ID,
        "pass_json": TEMPLATE_JSON,
        "assets": assets,
        **extra,
    }


def template_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("pass.json", json.dumps(TEMPLATE_JSON))
        for name, data in devmode.demo_assets().items():
            archive.writestr(name, data)
    return buffer.getvalue()


def pass_url(wallet_pass: IssuedPass) -> str:
    return f"/api/v1/passes/{wallet_pass.pass_type_id}/{wallet_pass.serial_number}"


def pass_json_in(pkpass: bytes) -> dict[str, Any]:
    with zipfile.ZipFile(io.BytesIO(pkpass)) as archive:
        loaded: dict[str, Any] = json.loads(archive.read("pass.json"))
    return loaded


count = count_rows


async def register_device(
    client: httpx.AsyncClient, wallet_pass: IssuedPass, device: str = "device-0001"
) -> None:
    response = await client.post(
        wallet_pass.registration_path(device),
        headers=wallet_pass.auth,
        json={"pushToken": f"token-of-{device}"},
    )
    assert response.status_code == 201


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"code", "message"}
    if code is not None:
        assert error["code"] == code
    message: str = error["message"]
    return message


# --- authentication ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer ", "Bearer wrong-key", f"Basic {ADMIN_TOKEN}", ADMIN_TOKEN],
)
async def test_a_request_without_a_valid_key_is_401(
    client: httpx.AsyncClient, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}

    response = await client.get("/api/v1/pass-types", headers=headers)

    assert_error(response, 401, "unauthorized")


async def test_the_bearer_scheme_is_case_insensitive(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/api/v1/pass-types", headers={"Authorization": f"bearer {ADMIN_TOKEN}"}
    )

    assert response.status_code == 200


async def test_a_key_made_with_add_key_works_until_revoked(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    key = "ph_test-key-abcdefghijklmnopqrstuvwxyz"
    async with runtime.database.transaction() as conn:
        key_id = await api_keys.add_key(conn, name="ci", key=key, now=issuing.now_seconds())
    headers = {"Authorization": f"Bearer {key}"}

    before = await client.get("/api/v1/pass-types", headers=headers)
    async with runtime.database.transaction() as conn:
        await api_keys.revoke_key(conn, key_id, now=issuing.now_seconds())
    after = await client.get("/api/v1/pass-types", headers=headers)

    assert before.status_code == 200
    assert_error(after, 401, "unauthorized")


async def test_a_wrong_key_changes_nothing(client: httpx.AsyncClient, runtime: Runtime) -> None:
    response = await client.post(
        "/api/v1/passes",
        headers={"Authorization": "Bearer nope"},
        json={"template": "card", "data": {}},
    )

    assert_error(response, 401)
    assert await count(runtime, passes) == 0


# --- pass types -------------------------------------------------------------------------


async def test_adding_a_pass_type_from_pem_reads_ids_from_the_certificate(
    admin: httpx.AsyncClient, credentials: DevCredentials
) -> None:
    response = await admin.post("/api/v1/pass-types", json=pem_body(credentials))

    assert response.status_code == 201
    body = response.json()
    assert (body["pass_type_id"], body["team_id"]) == (PASS_TYPE_ID, TEAM_ID)
    assert body["has_wwdr"] is True
    # Only what every dev certificate gets: its WWDR is not Apple's.
    assert [w for w in body["warnings"] if "not Apple's" not in w] == []


async def test_a_pass_type_without_wwdr_is_added_with_a_warning(
    admin: httpx.AsyncClient, credentials: DevCredentials
) -> None:
    body = pem_body(credentials)
    del body["wwdr_pem"]

    response = await admin.post("/api/v1/pass-types", json=body)

    assert response.status_code == 201
    assert "WWDR" in response.json()["warnings"][0]


async def test_an_encrypted_key_is_opened_with_its_password(
    admin: httpx.AsyncClient, credentials: DevCredentials
) -> None:
    key = serialization.load_pem_private_key(credentials.key_pem, password=None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"s3cret"),
    )
    body = pem_body(credentials, private_key_pem=encrypted.decode())

    wrong = await admin.post("/api/v1/pass-types", json={**body, "private_key_password": "x"})
    right = await admin.post("/api/v1/pass-types", json={**body, "private_key_password": "s3cret"})

    assert 400 <= wrong.status_code < 500
    assert_error(wrong, wrong.status_code)
    assert right.status_code == 201


async def test_a_p12_export_is_accepted(
    admin: httpx.AsyncClient, credentials: DevCredentials
) -> None:
    p12 = p12_of(credentials, b"p12-password")

    response = await admin.post(
        "/api/v1/pass-types", json={"p12_base64": b64(p12), "p12_password": "p12-password"}
    )

    assert response.status_code == 201
    assert response.json()["pass_type_id"] == PASS_TYPE_ID
    assert response.json()["has_wwdr"] is True


async def test_a_p12_with_the_wrong_password_is_refused_and_stores_nothing(
    admin: httpx.AsyncClient, credentials: DevCredentials, runtime: Runtime
) -> None:
    p12 = p12_of(credentials, b"p12-password")

    response = await admin.post(
        "/api/v1/pass-types", json={"p12_base64": b64(p12), "p12_password": "wrong"}
    )

    message = assert_error(response, 422)
    assert "password" in message
    assert await count(runtime, pass_types) == 0


async def test_p12_that_is_not_base64_is_422(admin: httpx.AsyncClient) -> None:
    response = await admin.post(
        "/api/v1/pass-types", json={"p12_base64": "not base64!", "p12_password": "x"}
    )

    assert "base64" in assert_error(response, 422, "invalid_input")


async def test_a_key_that_does_not_match_the_certificate_is_refused(
    admin: httpx.AsyncClient, credentials: DevCredentials, runtime: Runtime
) -> None:
    body = pem_body(credentials, private_key_pem=credentials.wwdr_key_pem.decode())

    response = await admin.post("/api/v1/pass-types", json=body)

    assert_error(response, 422)
    assert await count(runtime, pass_types) == 0


async def test_a_certificate_that_is_not_a_pass_certificate_is_refused(
    admin: httpx.AsyncClient, credentials: DevCredentials, runtime: Runtime
) -> None:
    cert_pem, key_pem = issue_server_certificate(
        credentials.root_cert_pem, credentials.root_key_pem
    )
    body = pem_body(
        credentials, certificate_pem=cert_pem.decode(), private_key_pem=key_pem.decode()
    )

    response = await admin.post("/api/v1/pass-types", json=body)

    assert_error(response, 422)
    assert await count(runtime, pass_types) == 0


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"certificate_pem": "x"},
        {"certificate_pem": "not a certificate", "private_key_pem": "not a key"},
        {"certificate_pem": 12, "private_key_pem": []},
        {"p12_base64": ""},
        {"unknown_field": "x"},
    ],
)
async def test_incomplete_or_garbled_credentials_are_422(
    admin: httpx.AsyncClient, runtime: Runtime, body: dict[str, Any]
) -> None:
    response = await admin.post("/api/v1/pass-types", json=body)

    assert_error(response, 422)
    assert await count(runtime, pass_types) == 0


async def test_uploading_the_certificate_again_replaces_it_with_200(
    admin: httpx.AsyncClient, credentials: DevCredentials
) -> None:
    first = await admin.post("/api/v1/pass-types", json=pem_body(credentials))

    again = await admin.post("/api/v1/pass-types", json=pem_body(credentials))

    assert (first.status_code, again.status_code) == (201, 200)


async def test_reading_pass_types_never_shows_key_material(
    admin: httpx.AsyncClient, credentials: DevCredentials
) -> None:
    await admin.post("/api/v1/pass-types", json=pem_body(credentials))

    listed = await admin.get("/api/v1/pass-types")
    one = await admin.get(f"/api/v1/pass-types/{PASS_TYPE_ID}")

    assert listed.status_code == one.status_code == 200
    assert listed.json()["items"] == [one.json()]
    for text in (listed.text, one.text):
        assert "PRIVATE KEY" not in text
        assert "private_key" not in text
        assert credentials.key_pem.decode().splitlines()[1] not in text
    assert one.json()["certificate"]["sha256"]


async def test_an_unknown_pass_type_is_404(admin: httpx.AsyncClient) -> None:
    got = await admin.get("/api/v1/pass-types/pass.no.such")
    deleted = await admin.delete("/api/v1/pass-types/pass.no.such")

    assert_error(got, 404, "not_found")
    assert_error(deleted, 404, "not_found")


async def test_a_pass_type_in_use_cannot_be_deleted(
    admin: httpx.AsyncClient, template: str, runtime: Runtime
) -> None:
    response = await admin.delete(f"/api/v1/pass-types/{PASS_TYPE_ID}")

    assert_error(response, 409, "conflict")
    assert await count(runtime, pass_types) == 1


async def test_an_unused_pass_type_is_deleted(
    admin: httpx.AsyncClient, pass_type: str, runtime: Runtime
) -> None:
    response = await admin.delete(f"/api/v1/pass-types/{pass_type}")

    assert response.status_code == 204
    assert await count(runtime, pass_types) == 0


# --- templates --------------------------------------------------------------------------


async def test_a_template_is_created_from_json_with_base64_assets(
    admin: httpx.AsyncClient, pass_type: str
) -> None:
    response = await admin.post("/api/v1/templates", json=template_body())

    assert response.status_code == 201
    body = response.json()
    assert body["name"] == "coffee"
    assert "icon.png" in body["assets"]
    assert body["pass_count"] == 0


async def test_localized_assets_are_kept(admin: httpx.AsyncClient, pass_type: str) -> None:
    body = template_body()
    body["assets"]["en.lproj/pass.strings"] = b64('"balance" = "Balance";'.encode("utf-16"))

    response = await admin.post("/api/v1/templates", json=body)

    assert response.status_code == 201
    assert "en.lproj/pass.strings" in response.json()["assets"]


async def test_a_template_is_created_from_a_zip_upload(
    admin: httpx.AsyncClient, pass_type: str
) -> None:
    response = await admin.post(
        "/api/v1/templates/upload",
        data={"name": "zipped", "pass_type_id": pass_type},
        files={"file": ("template.zip", template_zip(), "application/zip")},
    )

    assert response.status_code == 201, response.text
    assert response.json()["name"] == "zipped"
    assert "icon.png" in response.json()["assets"]


async def test_a_zip_upload_that_is_not_a_zip_is_422(
    admin: httpx.AsyncClient, pass_type: str, runtime: Runtime
) -> None:
    response = await admin.post(
        "/api/v1/templates/upload",
        data={"name": "zipped", "pass_type_id": pass_type},
        files={"file": ("template.zip", b"not a zip", "application/zip")},
    )

    assert_error(response, 422)
    assert await count(runtime, templates) == 0


async def test_bad_base64_in_an_asset_is_422_naming_it(
    admin: httpx.AsyncClient, pass_type: str, runtime: Runtime
) -> None:
    body = template_body()
    body["assets"]["logo.png"] = "%%% not base64"

    response = await admin.post("/api/v1/templates", json=body)

    assert "logo.png" in assert_error(response, 422, "invalid_input")
    assert await count(runtime, templates) == 0


async def test_a_template_without_an_icon_is_422(
    admin: httpx.AsyncClient, pass_type: str, runtime: Runtime
) -> None:
    body = template_body()
    body["assets"] = {k: v for k, v in body["assets"].items() if not k.startswith("icon")}

    response = await admin.post("/api/v1/templates", json=body)

    assert "icon" in assert_error(response, 422)
    assert await count(runtime, templates) == 0


async def test_an_invalid_pass_json_is_422(
    admin: httpx.AsyncClient, pass_type: str, runtime: Runtime
) -> None:
    body = template_body(pass_json={**TEMPLATE_JSON, "formatVersion": "one"})
    del body["pass_json"]["description"]

    response = await admin.post("/api/v1/templates", json=body)

    assert_error(response, 422)
    assert await count(runtime, templates) == 0


@pytest.mark.parametrize("asset", ["../icon.png", "/icon.png", "a//b.png", "pass.json"])
async def test_unsafe_or_reserved_asset_names_are_422(
    admin: httpx.AsyncClient, pass_type: str, asset: str
) -> None:
    body = template_body()
    body["assets"][asset] = b64(devmode.solid_png(29, 29))

    response = await admin.post("/api/v1/templates", json=body)

    assert_error(response, 422)


async def test_a_template_for_an_unknown_pass_type_is_404(admin: httpx.AsyncClient) -> None:
    response = await admin.post("/api/v1/templates", json=template_body())

    assert_error(response, 404)


async def test_a_duplicate_template_name_is_409(
    admin: httpx.AsyncClient, template: str, runtime: Runtime
) -> None:
    response = await admin.post("/api/v1/templates", json=template_body(name=template))

    assert_error(response, 409, "conflict")
    assert await count(runtime, templates) == 1


async def test_templates_are_read_by_name_or_id(admin: httpx.AsyncClient, template: str) -> None:
    listed = await admin.get("/api/v1/templates")
    template_id = listed.json()["items"][0]["id"]

    by_name = await admin.get(f"/api/v1/templates/{template}")
    by_id = await admin.get(f"/api/v1/templates/{template_id}")
    missing = await admin.get("/api/v1/templates/no-such-template")

    assert by_name.json() == by_id.json() == listed.json()["items"][0]
    assert_error(missing, 404, "not_found")


async def test_replacing_a_template_gives_every_pass_a_new_version_and_queues_pushes(
    admin: httpx.AsyncClient,
    client: httpx.AsyncClient,
    template: str,
    runtime: Runtime,
) -> None:
    first = (await admin.post("/api/v1/passes", json={"template": template, "data": DATA})).json()
    second = (await admin.post("/api/v1/passes", json={"template": template, "data": DATA})).json()
    holder = IssuedPass(first["pass_type_id"], first["serial_number"], "", 0)
    async with runtime.database.reader() as conn:
        token = await conn.scalar(
            sa.select(passes.c.authentication_token).where(
                passes.c.serial_number == first["serial_number"]
            )
        )
    holder = IssuedPass(holder.pass_type_id, holder.serial_number, str(token), 0)
    await register_device(client, holder)
    body = template_body(name=template, pass_json={**TEMPLATE_JSON, "description": "New look"})
    del body["pass_type_id"]

    response = await admin.put(f"/api/v1/templates/{template}", json=body)

    assert response.status_code == 200, response.text
    assert response.json()["passes_changed"] == 2
    assert response.json()["revision"] == 2
    for issued in (first, second):
        now = (await admin.get(f"/api/v1/passes/{PASS_TYPE_ID}/{issued['serial_number']}")).json()
        assert now["version"] > issued["version"]
    async with runtime.database.reader() as conn:
        queued = (await conn.execute(sa.select(push_jobs.c.push_token))).scalars().all()
    assert queued == ["token-of-device-0001"]
    download = await admin.get(f"/api/v1/passes/{PASS_TYPE_ID}/{first['serial_number']}/pkpass")
    assert pass_json_in(download.content)["description"] == "New look"


async def test_replacing_an_unknown_template_is_404(
    admin: httpx.AsyncClient, pass_type: str
) -> None:
    body = template_body()
    del body["pass_type_id"]

    response = await admin.put("/api/v1/templates/nope", json=body)

    assert_error(response, 404)


async def test_a_template_is_replaced_from_a_zip_upload(
    admin: httpx.AsyncClient, template: str
) -> None:
    response = await admin.put(
        f"/api/v1/templates/{template}/upload",
        files={"file": ("template.zip", template_zip(), "application/zip")},
    )

    assert response.status_code == 200, response.text
    assert response.json()["revision"] == 2


async def test_a_template_used_by_passes_cannot_be_deleted(
    admin: httpx.AsyncClient, wallet_pass: IssuedPass, template: str, runtime: Runtime
) -> None:
    response = await admin.delete(f"/api/v1/templates/{template}")

    assert_error(response, 409, "conflict")
    assert await count(runtime, templates) == 1


async def test_an_unused_template_is_deleted(
    admin: httpx.AsyncClient, template: str, runtime: Runtime
) -> None:
    response = await admin.delete(f"/api/v1/templates/{template}")
    again = await admin.delete(f"/api/v1/templates/{template}")

    assert response.status_code == 204
    assert_error(again, 404)
    assert await count(runtime, templates) == 0


# --- passes -----------------------------------------------------------------------------


async def test_issuing_a_pass_answers_201_with_its_links(
    admin: httpx.AsyncClient, template: str
) -> None:
    response = await admin.post(
        "/api/v1/passes",
        json={"template": template, "serial_number": "card-001", "data": DATA},
    )

    assert response.status_code == 201
    body = response.json()
    assert (body["pass_type_id"], body["serial_number"]) == (PASS_TYPE_ID, "card-001")
    assert body["data"] == DATA
    assert body["voided"] is False
    assert body["version"] >= 1
    base = "https://passes.example.test"
    assert body["urls"]["pkpass"] == f"{base}/api/v1/passes/{PASS_TYPE_ID}/card-001/pkpass"
    assert body["urls"]["share"].startswith(f"{base}/p/")


async def test_a_pass_issued_without_a_serial_gets_a_random_one(
    admin: httpx.AsyncClient, template: str
) -> None:
    first = await admin.post("/api/v1/passes", json={"template": template, "data": DATA})
    second = await admin.post("/api/v1/passes", json={"template": template, "data": DATA})

    assert first.status_code == second.status_code == 201
    assert first.json()["serial_number"] != second.json()["serial_number"]


async def test_a_template_can_be_named_by_its_id(admin: httpx.AsyncClient, template: str) -> None:
    template_id = (await admin.get(f"/api/v1/templates/{template}")).json()["id"]

    response = await admin.post("/api/v1/passes", json={"template": str(template_id), "data": DATA})

    assert response.status_code == 201
    assert response.json()["template"] == template


async def test_a_duplicate_serial_is_409(
    admin: httpx.AsyncClient, template: str, runtime: Runtime
) -> None:
    body = {"template": template, "serial_number": "dup-1", "data": DATA}
    await admin.post("/api/v1/passes", json=body)

    response = await admin.post("/api/v1/passes", json=body)

    assert_error(response, 409, "conflict")
    assert await count(runtime, passes) == 1


@pytest.mark.parametrize(
    "serial",
    ["has space", "a/b", "semi;colon", "x" * 129, "", "é-accent", "serial²", "\uff21\uff22"],
)
async def test_a_serial_with_unsafe_characters_is_422(
    admin: httpx.AsyncClient, template: str, runtime: Runtime, serial: str
) -> None:
    response = await admin.post(
        "/api/v1/passes", json={"template": template, "serial_number": serial, "data": DATA}
    )

    assert_error(response, 422)
    assert await count(runtime, passes) == 0


async def test_issuing_from_an_unknown_template_is_404(
    admin: httpx.AsyncClient, pass_type: str
) -> None:
    response = await admin.post("/api/v1/passes", json={"template": "nope"})

    assert_error(response, 404)


async def test_a_missing_placeholder_value_is_422_naming_it(
    admin: httpx.AsyncClient, pass_type: str, runtime: Runtime
) -> None:
    pass_json = {
        **TEMPLATE_JSON,
        "storeCard": {"primaryFields": [{"key": "tier", "label": "Tier", "value": "{{tier}}"}]},
    }
    del pass_json["barcodes"]
    created = await admin.post(
        "/api/v1/templates", json=template_body(name="tiered", pass_json=pass_json)
    )
    assert created.status_code == 201, created.text

    response = await admin.post("/api/v1/passes", json={"template": "tiered", "data": {}})

    assert "tier" in assert_error(response, 422)
    assert await count(runtime, passes) == 0


async def test_a_pass_is_read_back(admin: httpx.AsyncClient, wallet_pass: IssuedPass) -> None:
    response = await admin.get(pass_url(wallet_pass))

    assert response.status_code == 200
    assert response.json()["data"] == {"name": "Ada", "balance": 10}
    assert response.json()["template"] == "card"


async def test_an_unknown_pass_is_404(admin: httpx.AsyncClient, template: str) -> None:
    response = await admin.get(f"/api/v1/passes/{PASS_TYPE_ID}/no-such-serial")

    assert_error(response, 404, "not_found")


async def test_patch_merges_data_and_makes_a_new_version(
    admin: httpx.AsyncClient, wallet_pass: IssuedPass
) -> None:
    before = (await admin.get(pass_url(wallet_pass))).json()

    response = await admin.patch(pass_url(wallet_pass), json={"data": {"balance": 20}})

    assert response.status_code == 200
    body = response.json()
    assert body["changed"] is True
    assert body["data"] == {"name": "Ada", "balance": 20}
    assert body["version"] > before["version"]


async def test_patch_queues_a_push_for_each_registered_device(
    admin: httpx.AsyncClient, client: httpx.AsyncClient, wallet_pass: IssuedPass, runtime: Runtime
) -> None:
    await register_device(client, wallet_pass, "device-a")
    await register_device(client, wallet_pass, "device-b")

    await admin.patch(pass_url(wallet_pass), json={"data": {"balance": 20}})

    async with runtime.database.reader() as conn:
        tokens = (await conn.execute(sa.select(push_jobs.c.push_token))).scalars().all()
    assert sorted(tokens) == ["token-of-device-a", "token-of-device-b"]


async def test_a_patch_that_changes_nothing_makes_no_version_and_no_push(
    admin: httpx.AsyncClient, client: httpx.AsyncClient, wallet_pass: IssuedPass, runtime: Runtime
) -> None:
    await register_device(client, wallet_pass)
    before = (await admin.get(pass_url(wallet_pass))).json()

    response = await admin.patch(pass_url(wallet_pass), json={"data": {"balance": 10}})

    assert response.status_code == 200
    assert response.json()["changed"] is False
    assert response.json()["version"] == before["version"]
    assert await count(runtime, push_jobs) == 0


async def test_put_replaces_the_data(admin: httpx.AsyncClient, wallet_pass: IssuedPass) -> None:
    response = await admin.put(
        pass_url(wallet_pass), json={"data": {"name": "Grace", "balance": 1}}
    )

    assert response.status_code == 200
    assert response.json()["data"] == {"name": "Grace", "balance": 1}
    assert response.json()["changed"] is True


async def test_a_change_that_breaks_a_placeholder_is_422_and_keeps_the_old_data(
    admin: httpx.AsyncClient, wallet_pass: IssuedPass
) -> None:
    response = await admin.put(pass_url(wallet_pass), json={"data": {"name": "Grace"}})

    assert "balance" in assert_error(response, 422)
    assert (await admin.get(pass_url(wallet_pass))).json()["data"]["balance"] == 10


@pytest.mark.parametrize("method", ["PATCH", "PUT"])
async def test_changing_an_unknown_pass_is_404(
    admin: httpx.AsyncClient, template: str, method: str
) -> None:
    response = await admin.request(
        method, f"/api/v1/passes/{PASS_TYPE_ID}/no-such", json={"data": {"a": 1}}
    )

    assert_error(response, 404)


async def test_delete_voids_the_pass_with_a_new_version_and_a_push(
    admin: httpx.AsyncClient, client: httpx.AsyncClient, wallet_pass: IssuedPass, runtime: Runtime
) -> None:
    await register_device(client, wallet_pass)
    before = (await admin.get(pass_url(wallet_pass))).json()

    response = await admin.delete(pass_url(wallet_pass))

    assert response.status_code == 200
    body = response.json()
    assert (body["voided"], body["changed"]) == (True, True)
    assert body["version"] > before["version"]
    assert await count(runtime, push_jobs) == 1
    download = await admin.get(f"{pass_url(wallet_pass)}/pkpass")
    assert pass_json_in(download.content)["voided"] is True


async def test_voiding_twice_changes_nothing_the_second_time(
    admin: httpx.AsyncClient, wallet_pass: IssuedPass
) -> None:
    first = await admin.delete(pass_url(wallet_pass))

    again = await admin.delete(pass_url(wallet_pass))

    assert again.status_code == 200
    assert again.json()["changed"] is False
    assert again.json()["version"] == first.json()["version"]


async def test_a_voided_pass_cannot_change(
    admin: httpx.AsyncClient, wallet_pass: IssuedPass
) -> None:
    await admin.delete(pass_url(wallet_pass))

    response = await admin.patch(pass_url(wallet_pass), json={"data": {"balance": 99}})

    assert_error(response, 409, "conflict")


@pytest.mark.parametrize(("sort", "newest_first"), [(None, True), ("created", False)])
async def test_passes_are_listed_page_by_page(
    admin: httpx.AsyncClient, template: str, sort: str | None, newest_first: bool
) -> None:
    serials = [f"page-{n}" for n in range(5)]
    for serial in serials:
        await admin.post(
            "/api/v1/passes", json={"template": template, "serial_number": serial, "data": DATA}
        )

    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        if sort:
            params["sort"] = sort
        page = (await admin.get("/api/v1/passes", params=params)).json()
        seen += [item["serial_number"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break

    # Newest first unless sort=created asks for the issuing order.
    assert seen == (serials[::-1] if newest_first else serials)
    assert pages == 3


async def test_passes_are_filtered_by_template(
    admin: httpx.AsyncClient, template: str, wallet_pass: IssuedPass
) -> None:
    await admin.post("/api/v1/templates", json=template_body(name="other"))
    await admin.post(
        "/api/v1/passes", json={"template": "other", "serial_number": "o-1", "data": DATA}
    )

    other = await admin.get("/api/v1/passes", params={"template": "other"})
    card = await admin.get("/api/v1/passes", params={"template": template})
    everything = await admin.get("/api/v1/passes")

    assert [item["serial_number"] for item in other.json()["items"]] == ["o-1"]
    assert [item["serial_number"] for item in card.json()["items"]] == [wallet_pass.serial_number]
    assert len(everything.json()["items"]) == 2


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"template": "nope"}, 404),
        ({"cursor": "abc"}, 422),
        ({"cursor": "-1"}, 422),
        ({"limit": "0"}, 422),
        ({"limit": "100000"}, 422),
        ({"limit": "ten"}, 422),
    ],
)
async def test_bad_list_parameters_are_4xx(
    admin: httpx.AsyncClient, template: str, params: dict[str, str], status: int
) -> None:
    response = await admin.get("/api/v1/passes", params=params)

    assert_error(response, status)


async def test_the_pkpass_download_is_the_signed_file(
    admin: httpx.AsyncClient, wallet_pass: IssuedPass
) -> None:
    response = await admin.get(f"{pass_url(wallet_pass)}/pkpass")

    assert response.status_code == 200
    assert response.headers["content-type"] == PKPASS
    pass_json = pass_json_in(response.content)
    assert pass_json["serialNumber"] == wallet_pass.serial_number
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert {"manifest.json", "signature", "icon.png"} <= set(archive.namelist())


async def test_the_pkpass_of_an_unknown_pass_is_404(
    admin: httpx.AsyncClient, template: str
) -> None:
    response = await admin.get(f"/api/v1/passes/{PASS_TYPE_ID}/nope/pkpass")

    assert_error(response, 404)


async def test_registrations_list_the_devices_holding_the_pass(
    admin: httpx.AsyncClient, client: httpx.AsyncClient, wallet_pass: IssuedPass
) -> None:
    empty = await admin.get(f"{pass_url(wallet_pass)}/registrations")
    await register_device(client, wallet_pass, "device-library-id-0000000001")

    response = await admin.get(f"{pass_url(wallet_pass)}/registrations")

    assert empty.json() == {"items": [], "next_cursor": None}
    assert response.status_code == 200
    [item] = response.json()["items"]
    # Device credentials are shown shortened, never whole.
    assert item["device_library_id"] != "device-library-id-0000000001"
    assert item["device_library_id"].startswith("device-l")
    assert item["registered_at"].endswith("Z")


async def test_registrations_are_listed_page_by_page(
    admin: httpx.AsyncClient, client: httpx.AsyncClient, wallet_pass: IssuedPass
) -> None:
    for n in range(5):
        await register_device(client, wallet_pass, f"device-library-id-{n:010d}")
    # Re-registering refreshes registered_at; the device keeps its place in the pages.
    await client.post(
        wallet_pass.registration_path("device-library-id-0000000001"),
        headers=wallet_pass.auth,
        json={"pushToken": "renewed"},
    )

    sizes: list[int] = []
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = (await admin.get(f"{pass_url(wallet_pass)}/registrations", params=params)).json()
        sizes.append(len(page["items"]))
        seen += [item["device_library_id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert sizes == [2, 2, 1]
    assert seen == [f"device-l…{n:04d}" for n in range(5)]


@pytest.mark.parametrize(
    "params", [{"cursor": "abc"}, {"cursor": "-1"}, {"limit": "0"}, {"limit": "100000"}]
)
async def test_bad_registration_list_parameters_are_422(
    admin: httpx.AsyncClient, wallet_pass: IssuedPass, params: dict[str, str]
) -> None:
    response = await admin.get(f"{pass_url(wallet_pass)}/registrations", params=params)

    assert_error(response, 422)


async def test_pushes_of_a_pass_show_shortened_tokens_and_iso_times(
    admin: httpx.AsyncClient, client: httpx.AsyncClient, wallet_pass: IssuedPass, runtime: Runtime
) -> None:
    push_token = "a1b2c3d4" + "0" * 56
    await client.post(
        wallet_pass.registration_path("device-0001"),
        headers=wallet_pass.auth,
        json={"pushToken": push_token},
    )
    await admin.patch(pass_url(wallet_pass), json={"data": {"balance": 11}})
    settings = runtime.settings.model_copy(update={"push_rate_per_second": 0.0})
    await send_due_pushes(runtime.database, RecordingSender(), settings)

    pushes = await admin.get(f"{pass_url(wallet_pass)}/pushes")
    registered = await admin.get(f"{pass_url(wallet_pass)}/registrations")

    assert pushes.status_code == 200
    [attempt] = pushes.json()["items"]
    assert attempt["outcome"] == "delivered"
    # The same shortening as the registrations list: never the whole credential.
    assert attempt["push_token"] == registered.json()["items"][0]["push_token"]
    assert attempt["push_token"] == "a1b2c3d4…0000"
    assert "at_ms" not in attempt
    assert issuing.iso_time(issuing.now_seconds()) >= attempt["at"] > "2026-"
    assert attempt["at"].endswith("Z")


async def test_push_stats_answer_json(admin: httpx.AsyncClient) -> None:
    stats = await admin.get("/api/v1/push/stats")

    assert stats.status_code == 200
    assert isinstance(stats.json(), dict)


async def test_pushes_due_with_none_sent_show_as_stalled_in_stats_and_metrics(
    admin: httpx.AsyncClient, client: httpx.AsyncClient, runtime: Runtime, pass_type: str
) -> None:
    # No worker runs here: a push that has been due for twice the stall time, nothing sent.
    now = issuing.now_ms()
    async with runtime.database.transaction() as conn:
        await add_overdue_push(
            conn, pass_type, now_ms=now, overdue_seconds=2 * runtime.settings.push_stall_seconds
        )

    stalled = (await admin.get("/api/v1/push/stats")).json()
    stalled_metrics = (await client.get("/metrics")).text
    async with runtime.database.transaction() as conn:
        await conn.execute(
            push_attempts.insert().values(
                push_token="cd" * 32, pass_type_id=pass_type, outcome="delivered", at_ms=now
            )
        )
    sending = (await admin.get("/api/v1/push/stats")).json()
    sending_metrics = (await client.get("/metrics")).text

    assert stalled["stalled"] is True
    assert "is a push worker running" in stalled["stall_reason"]
    assert stalled["oldest_due_age_seconds"] >= 2 * runtime.settings.push_stall_seconds
    assert "\npasshouse_push_stalled 1.0\n" in stalled_metrics
    assert (sending["stalled"], sending["stall_reason"]) == (False, None)
    assert "\npasshouse_push_stalled 0.0\n" in sending_metrics


# --- device logs, service endpoints -----------------------------------------------------


async def test_device_logs_are_listed_newest_first(
    admin: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    await client.post("/passkit/v1/log", json={"logs": ["first"]})
    await client.post("/passkit/v1/log", json={"logs": ["second"]})

    response = await admin.get("/api/v1/device-logs")
    older = await admin.get(
        "/api/v1/device-logs", params={"before": response.json()["items"][0]["id"]}
    )

    assert response.status_code == 200
    assert [item["message"] for item in response.json()["items"]] == ["second", "first"]
    assert [item["message"] for item in older.json()["items"]] == ["first"]


async def test_device_logs_need_the_api_key(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/device-logs")

    assert_error(response, 401)


async def test_health_metrics_and_openapi_answer_without_a_key(client: httpx.AsyncClient) -> None:
    health = await client.get("/healthz")
    metrics = await client.get("/metrics")
    openapi = await client.get("/api/openapi.json")

    assert health.json()["status"] == "ok"
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    assert "/api/v1/passes" in openapi.json()["paths"]


async def test_renaming_a_template_to_a_taken_name_is_409(
    admin: httpx.AsyncClient, template: str
) -> None:
    await admin.post("/api/v1/templates", json=template_body(name="other"))
    body = template_body(name=template)
    del body["pass_type_id"]

    response = await admin.put("/api/v1/templates/other", json=body)

    assert_error(response, 409, "conflict")
    assert (await admin.get("/api/v1/templates/other")).status_code == 200
