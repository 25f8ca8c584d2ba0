"""Apple's PassKit web service, endpoint by endpoint, as a device's Wallet calls it."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import io
import os
import subprocess
import time
import zipfile
from collections.abc import Iterator
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from certs import issuer_serial, sha256_fingerprint, signed_data_facts
from factories import IssuedPass, count_rows, issue
from passhouse import devmode, issuing
from passhouse.bootstrap import Runtime
from passhouse.metrics import PASSES_SIGNED
from passhouse.pkpass.devcerts import DevCredentials, make_dev_credentials
from passhouse.storage import pass_versions
from passhouse.storage import push_jobs as push_jobs_storage
from passhouse.storage.tables import device_logs, devices, passes, push_jobs, registrations
from passhouse.worker import send_due_pushes
from test_worker import RecordingSender

DEVICE = "device-library-0001"


def openssl_verify(signature: bytes, content: bytes, root_pem: bytes, folder: Path) -> str:
    """Check a detached DER PKCS#7 signature with the real openssl; its stderr if it fails."""
    paths = {"sig": signature, "content": content, "root.pem": root_pem}
    for name, data in paths.items():
        (folder / name).write_bytes(data)
    result = subprocess.run(
        [
            "openssl", "smime", "-verify", "-binary", "-inform", "DER",
            "-in", str(folder / "sig"), "-content", str(folder / "content"),
            "-CAfile", str(folder / "root.pem"), "-purpose", "any", "-out", "/dev/null",
        ],
        capture_output=True,
        check=False,
    )  # fmt: skip
    return "" if result.returncode == 0 else result.stderr.decode()


def serials_path(pass_type_id: str, device: str = DEVICE) -> str:
    return f"/passkit/v1/devices/{device}/registrations/{pass_type_id}"


async def register(
    client: httpx.AsyncClient, wallet_pass: IssuedPass, device: str = DEVICE, token: str = "t1"
) -> httpx.Response:
    return await client.post(
        wallet_pass.registration_path(device), headers=wallet_pass.auth, json={"pushToken": token}
    )


async def change(
    runtime: Runtime, builder: issuing.PassBuilder, p: IssuedPass, **data: object
) -> int:
    async with runtime.database.transaction() as conn:
        row, changed = await issuing.change_pass_data(
            conn,
            builder,
            p.pass_type_id,
            p.serial_number,
            data,
            merge=True,
            actor=pass_versions.CLI,
        )
    assert changed
    return int(row.version)


# --- register ---------------------------------------------------------------------------


async def test_registering_twice_answers_201_then_200(
    client: httpx.AsyncClient, wallet_pass: IssuedPass
) -> None:
    first = await register(client, wallet_pass)
    again = await register(client, wallet_pass)

    assert (first.status_code, again.status_code) == (201, 200)


async def test_reregistering_replaces_the_push_token(
    client: httpx.AsyncClient, wallet_pass: IssuedPass, runtime: Runtime
) -> None:
    await register(client, wallet_pass, token="old-token")
    await register(client, wallet_pass, token="new-token" * 40)  # tokens are unbounded text

    async with runtime.database.reader() as conn:
        tokens = (await conn.execute(sa.select(registrations.c.push_token))).scalars().all()
    assert tokens == ["new-token" * 40]


async def test_reregistering_after_a_410_keeps_the_device(
    client: httpx.AsyncClient, wallet_pass: IssuedPass, runtime: Runtime
) -> None:
    await register(client, wallet_pass, token="kept-token")
    unregistered_at = await _a_later_millisecond(issuing.now_ms())
    # APNs answered 410 for the token at `unregistered_at`; then the device came back.
    await _a_later_millisecond(unregistered_at)
    again = await register(client, wallet_pass, token="kept-token")

    async with runtime.database.transaction() as conn:
        forgotten = await push_jobs_storage.forget_push_token(
            conn, "kept-token", wallet_pass.pass_type_id, unregistered_at_ms=unregistered_at
        )

    assert again.status_code == 200
    assert forgotten == 0
    assert await count_rows(runtime, registrations) == 1
    assert await count_rows(runtime, devices) == 1


async def _a_later_millisecond(after_ms: int) -> int:
    await asyncio.sleep(0.002)
    now = issuing.now_ms()
    assert now > after_ms
    return now


@pytest.mark.parametrize(
    "authorization",
    ["ApplePass wrong-token-000000000000", "", "Bearer {token}", "ApplePass", "applepass {token}"],
)
async def test_register_with_a_wrong_token_is_401_and_stores_nothing(
    client: httpx.AsyncClient, wallet_pass: IssuedPass, runtime: Runtime, authorization: str
) -> None:
    headers = {"Authorization": authorization.format(token=wallet_pass.authentication_token)}

    response = await client.post(
        wallet_pass.registration_path(DEVICE), headers=headers, json={"pushToken": "t"}
    )

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert await count_rows(runtime, devices) == 0


async def test_unknown_pass_and_wrong_token_give_the_same_401(
    client: httpx.AsyncClient, wallet_pass: IssuedPass
) -> None:
    unknown = IssuedPass(wallet_pass.pass_type_id, "no-such-serial", "x" * 32, 0)
    wrong = IssuedPass(wallet_pass.pass_type_id, wallet_pass.serial_number, "x" * 32, 0)

    a = await register(client, unknown)
    b = await register(client, wrong)

    assert (a.status_code, a.content) == (b.status_code, b.content)
    assert a.status_code == 401


@pytest.mark.parametrize("body", [b"{not json", b'{"pushToken": ""}', b'{"pushToken": "t"}'])
async def test_register_with_a_wrong_token_is_401_whatever_the_body(
    client: httpx.AsyncClient, wallet_pass: IssuedPass, runtime: Runtime, body: bytes
) -> None:
    """The token is checked before the body is judged: a bad body does not turn a 401
    into a 400, and so does not tell a caller without the token more."""
    response = await client.post(
        wallet_pass.registration_path(DEVICE),
        headers={"Authorization": "ApplePass wrong-token-000000000000"},
        content=body,
    )

    assert response.status_code == 401
    assert await count_rows(runtime, devices) == 0


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[]", b'{"pushToken": 5}', b'{"pushToken": ""}', b"{}", b"\xff\xfe"],
)
async def test_register_with_a_bad_body_is_400_json(
    client: httpx.AsyncClient, wallet_pass: IssuedPass, body: bytes
) -> None:
    response = await client.post(
        wallet_pass.registration_path(DEVICE),
        headers={**wallet_pass.auth, "Content-Type": "application/json"},
        content=body,
    )

    assert response.status_code == 400
    assert response.json()["error"]["message"]


async def test_a_huge_body_is_refused_with_413(
    client: httpx.AsyncClient, wallet_pass: IssuedPass
) -> None:
    response = await client.post(
        wallet_pass.registration_path(DEVICE),
        headers=wallet_pass.auth,
        json={"pushToken": "x" * 100_000},
    )

    assert response.status_code == 413
    assert "larger than" in response.json()["error"]["message"]


async def test_an_over_long_device_id_is_400(
    client: httpx.AsyncClient, wallet_pass: IssuedPass
) -> None:
    response = await register(client, wallet_pass, device="d" * 300)

    assert response.status_code == 400


async def test_a_double_slash_after_the_web_service_url_works(
    client: httpx.AsyncClient, wallet_pass: IssuedPass
) -> None:
    path = wallet_pass.registration_path(DEVICE).replace("/passkit/v1", "/passkit//v1")

    response = await client.post(path, headers=wallet_pass.auth, json={"pushToken": "t"})

    assert response.status_code == 201


# --- unregister -------------------------------------------------------------------------


async def test_unregister_answers_200_and_forgets_the_device(
    client: httpx.AsyncClient, wallet_pass: IssuedPass, runtime: Runtime
) -> None:
    await register(client, wallet_pass)

    response = await client.delete(wallet_pass.registration_path(DEVICE), headers=wallet_pass.auth)

    assert response.status_code == 200
    assert await count_rows(runtime, devices) == 0
    assert await count_rows(runtime, registrations) == 0


async def test_unregister_keeps_a_device_that_holds_other_passes(
    client: httpx.AsyncClient,
    wallet_pass: IssuedPass,
    runtime: Runtime,
    builder: issuing.PassBuilder,
    template: str,
) -> None:
    other = await issue(runtime, builder, template)
    await register(client, wallet_pass)
    await register(client, other)

    await client.delete(wallet_pass.registration_path(DEVICE), headers=wallet_pass.auth)

    assert await count_rows(runtime, devices) == 1


async def test_unregister_with_a_wrong_token_is_401_and_keeps_the_registration(
    client: httpx.AsyncClient, wallet_pass: IssuedPass, runtime: Runtime
) -> None:
    await register(client, wallet_pass)

    response = await client.delete(
        wallet_pass.registration_path(DEVICE), headers={"Authorization": "ApplePass nope"}
    )

    assert response.status_code == 401
    assert await count_rows(runtime, registrations) == 1


# --- changed serials --------------------------------------------------------------------


async def test_an_unknown_device_gets_204(
    client: httpx.AsyncClient, wallet_pass: IssuedPass
) -> None:
    response = await client.get(serials_path(wallet_pass.pass_type_id, "never-seen"))

    assert response.status_code == 204


async def test_first_call_without_a_tag_lists_every_registered_serial(
    client: httpx.AsyncClient,
    wallet_pass: IssuedPass,
    runtime: Runtime,
    builder: issuing.PassBuilder,
    template: str,
) -> None:
    other = await issue(runtime, builder, template)
    not_registered = await issue(runtime, builder, template)
    await register(client, wallet_pass)
    await register(client, other)

    response = await client.get(serials_path(wallet_pass.pass_type_id))

    assert response.status_code == 200
    body = response.json()
    assert sorted(body["serialNumbers"]) == sorted([wallet_pass.serial_number, other.serial_number])
    assert not_registered.serial_number not in body["serialNumbers"]
    assert isinstance(body["lastUpdated"], str)
    assert response.headers["content-type"] == "application/json"


async def test_after_the_tag_only_changed_serials_are_listed(
    client: httpx.AsyncClient,
    wallet_pass: IssuedPass,
    runtime: Runtime,
    builder: issuing.PassBuilder,
    template: str,
) -> None:
    other = await issue(runtime, builder, template)
    await register(client, wallet_pass)
    await register(client, other)
    tag = (await client.get(serials_path(wallet_pass.pass_type_id))).json()["lastUpdated"]

    unchanged = await client.get(
        serials_path(wallet_pass.pass_type_id), params={"passesUpdatedSince": tag}
    )
    version = await change(runtime, builder, other, balance=99)
    changed = await client.get(
        serials_path(wallet_pass.pass_type_id), params={"passesUpdatedSince": tag}
    )

    assert unchanged.status_code == 204
    assert changed.json() == {"serialNumbers": [other.serial_number], "lastUpdated": str(version)}


async def test_serials_of_another_pass_type_are_not_listed(
    client: httpx.AsyncClient, wallet_pass: IssuedPass
) -> None:
    await register(client, wallet_pass)

    response = await client.get(serials_path("pass.other.type"))

    assert response.status_code == 204


async def test_each_device_lists_only_its_own_passes(
    client: httpx.AsyncClient,
    wallet_pass: IssuedPass,
    runtime: Runtime,
    builder: issuing.PassBuilder,
    template: str,
) -> None:
    other = await issue(runtime, builder, template)
    await register(client, wallet_pass, device="device-a")
    await register(client, other, device="device-b")
    tag = str(await change(runtime, builder, wallet_pass, balance=1) - 1)
    await change(runtime, builder, other, balance=2)

    a = await client.get(serials_path(wallet_pass.pass_type_id, "device-a"))
    b = await client.get(serials_path(wallet_pass.pass_type_id, "device-b"))
    a_since = await client.get(
        serials_path(wallet_pass.pass_type_id, "device-a"), params={"passesUpdatedSince": tag}
    )
    b_since = await client.get(
        serials_path(wallet_pass.pass_type_id, "device-b"), params={"passesUpdatedSince": tag}
    )

    assert a.json()["serialNumbers"] == [wallet_pass.serial_number]
    assert b.json()["serialNumbers"] == [other.serial_number]
    assert a_since.json()["serialNumbers"] == [wallet_pass.serial_number]
    assert b_since.json()["serialNumbers"] == [other.serial_number]


@pytest.mark.parametrize(
    ("device", "pass_type_id"),
    [("d" * 256, "pass.test.passhouse"), ("device", "p" * 256)],
)
async def test_changed_serials_refuse_an_over_long_segment(
    client: httpx.AsyncClient, wallet_pass: IssuedPass, device: str, pass_type_id: str
) -> None:
    await register(client, wallet_pass)

    response = await client.get(serials_path(pass_type_id, device))

    assert response.status_code == 400
    assert "1 to 255 characters" in response.json()["error"]["message"]


@pytest.mark.parametrize("tag", ["not-a-number", "2024-01-01T00:00:00Z", "-5", ""])
async def test_an_unreadable_tag_lists_everything(
    client: httpx.AsyncClient, wallet_pass: IssuedPass, tag: str
) -> None:
    await register(client, wallet_pass)

    response = await client.get(
        serials_path(wallet_pass.pass_type_id), params={"passesUpdatedSince": tag}
    )

    assert response.json()["serialNumbers"] == [wallet_pass.serial_number]


async def test_a_voided_pass_is_listed_as_changed(
    client: httpx.AsyncClient, admin: httpx.AsyncClient, wallet_pass: IssuedPass
) -> None:
    await register(client, wallet_pass)
    tag = (await client.get(serials_path(wallet_pass.pass_type_id))).json()["lastUpdated"]

    await admin.delete(f"/api/v1/passes/{wallet_pass.pass_type_id}/{wallet_pass.serial_number}")
    response = await client.get(
        serials_path(wallet_pass.pass_type_id), params={"passesUpdatedSince": tag}
    )

    assert response.json()["serialNumbers"] == [wallet_pass.serial_number]


# --- latest pass ------------------------------------------------------------------------


async def test_the_latest_pass_is_a_signed_pkpass_with_last_modified(
    client: httpx.AsyncClient, wallet_pass: IssuedPass
) -> None:
    response = await client.get(wallet_pass.path, headers=wallet_pass.auth)

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/vnd.apple.pkpass"
    assert parsedate_to_datetime(response.headers["last-modified"])
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        names = set(archive.namelist())
    assert {"pass.json", "manifest.json", "signature", "icon.png"} <= names


async def test_the_pass_carries_the_web_service_and_token(
    client: httpx.AsyncClient, wallet_pass: IssuedPass
) -> None:
    response = await client.get(wallet_pass.path, headers=wallet_pass.auth)

    pass_json = issuing.pass_json_of(response.content)
    assert pass_json["webServiceURL"] == "https://passes.example.test/passkit"
    assert pass_json["authenticationToken"] == wallet_pass.authentication_token
    assert pass_json["serialNumber"] == wallet_pass.serial_number
    assert pass_json["storeCard"]["primaryFields"][0]["value"] == 10


async def test_the_signature_verifies_with_openssl(
    client: httpx.AsyncClient, wallet_pass: IssuedPass, credentials: DevCredentials, tmp_path: Path
) -> None:
    response = await client.get(wallet_pass.path, headers=wallet_pass.auth)
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        manifest, signature = archive.read("manifest.json"), archive.read("signature")

    problem = openssl_verify(signature, manifest, credentials.root_cert_pem, tmp_path)

    assert problem == ""


async def test_the_served_signature_is_sha256_and_carries_the_wwdr_certificate(
    client: httpx.AsyncClient, wallet_pass: IssuedPass, credentials: DevCredentials
) -> None:
    response = await client.get(wallet_pass.path, headers=wallet_pass.auth)
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        manifest, signature = archive.read("manifest.json"), archive.read("signature")

    facts = signed_data_facts(signature)

    assert facts.digest_algorithms == ["sha256", "sha256"]
    assert facts.message_digest == hashlib.sha256(manifest).digest()
    assert sha256_fingerprint(credentials.wwdr_cert_pem) in facts.certificate_sha256
    assert facts.signer_issuer_serial == [issuer_serial(credentials.cert_pem)]


async def test_if_modified_since_the_last_modified_gives_304(
    client: httpx.AsyncClient, wallet_pass: IssuedPass
) -> None:
    first = await client.get(wallet_pass.path, headers=wallet_pass.auth)

    again = await client.get(
        wallet_pass.path,
        headers={**wallet_pass.auth, "If-Modified-Since": first.headers["last-modified"]},
    )

    assert again.status_code == 304
    assert again.content == b""


@pytest.mark.parametrize(
    "header", ["garbage", "Mon, 99 Foo 2020", "0", "Thu, 01 Jan 1970 00:00:00 GMT"]
)
async def test_an_old_or_unreadable_if_modified_since_sends_the_pass(
    client: httpx.AsyncClient, wallet_pass: IssuedPass, header: str
) -> None:
    response = await client.get(
        wallet_pass.path, headers={**wallet_pass.auth, "If-Modified-Since": header}
    )

    assert response.status_code == 200


async def test_a_unix_seconds_if_modified_since_is_understood(
    client: httpx.AsyncClient, wallet_pass: IssuedPass
) -> None:
    first = await client.get(wallet_pass.path, headers=wallet_pass.auth)
    seconds = int(parsedate_to_datetime(first.headers["last-modified"]).timestamp())

    again = await client.get(
        wallet_pass.path, headers={**wallet_pass.auth, "If-Modified-Since": str(seconds)}
    )

    assert again.status_code == 304


@pytest.fixture(params=["UTC+1", "UTC-1"])
def local_zone(request: pytest.FixtureRequest) -> Iterator[str]:
    """The server's local time zone set an hour away from UTC (POSIX TZ: the sign flips)."""
    posix = {"UTC+1": "TST-1", "UTC-1": "TST+1"}[request.param]
    saved = os.environ.get("TZ")
    os.environ["TZ"] = posix
    time.tzset()
    try:
        yield request.param
    finally:
        if saved is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = saved
        time.tzset()


async def test_an_if_modified_since_without_a_zone_is_read_as_gmt(
    client: httpx.AsyncClient, wallet_pass: IssuedPass, local_zone: str
) -> None:
    first = await client.get(wallet_pass.path, headers=wallet_pass.auth)
    modified = parsedate_to_datetime(first.headers["last-modified"])
    # RFC 5322's "-0000": a time in UTC whose zone is unknown; Python reads it as naive.
    naive = format_datetime(modified.replace(tzinfo=None))
    a_second_before = format_datetime(modified.replace(tzinfo=None) - dt.timedelta(seconds=1))

    same = await client.get(
        wallet_pass.path, headers={**wallet_pass.auth, "If-Modified-Since": naive}
    )
    older = await client.get(
        wallet_pass.path, headers={**wallet_pass.auth, "If-Modified-Since": a_second_before}
    )

    assert naive.endswith("-0000")
    assert (same.status_code, older.status_code) == (304, 200)


async def test_two_changes_in_one_second_are_both_delivered(
    client: httpx.AsyncClient,
    wallet_pass: IssuedPass,
    runtime: Runtime,
    builder: issuing.PassBuilder,
) -> None:
    await change(runtime, builder, wallet_pass, balance=1)
    first = await client.get(wallet_pass.path, headers=wallet_pass.auth)
    await change(runtime, builder, wallet_pass, balance=2)

    second = await client.get(
        wallet_pass.path,
        headers={**wallet_pass.auth, "If-Modified-Since": first.headers["last-modified"]},
    )

    assert second.status_code == 200
    assert issuing.pass_json_of(second.content)["storeCard"]["primaryFields"][0]["value"] == 2
    assert parsedate_to_datetime(second.headers["last-modified"]) > parsedate_to_datetime(
        first.headers["last-modified"]
    )


async def test_the_latest_pass_with_a_wrong_token_is_401(
    client: httpx.AsyncClient, wallet_pass: IssuedPass
) -> None:
    response = await client.get(wallet_pass.path, headers={"Authorization": "ApplePass nope"})

    assert response.status_code == 401


async def test_a_pass_is_signed_once_per_version(
    client: httpx.AsyncClient,
    wallet_pass: IssuedPass,
    runtime: Runtime,
    builder: issuing.PassBuilder,
) -> None:
    signed_before = PASSES_SIGNED._value.get()

    first = [await client.get(wallet_pass.path, headers=wallet_pass.auth) for _ in range(3)]
    after_first = PASSES_SIGNED._value.get()
    version = await change(runtime, builder, wallet_pass, balance=11)
    second = [await client.get(wallet_pass.path, headers=wallet_pass.auth) for _ in range(3)]
    after_second = PASSES_SIGNED._value.get()
    # Another process (its own builder, empty memory) finds the bytes in pkpass_cache.
    elsewhere, elsewhere_version = await builder.pkpass(
        runtime.database, wallet_pass.pass_id, version
    )

    assert {r.status_code for r in first + second} == {200}
    assert (after_first - signed_before, after_second - after_first) == (1, 1)
    assert PASSES_SIGNED._value.get() == after_second
    assert (elsewhere, elsewhere_version) == (second[0].content, version)


# --- log --------------------------------------------------------------------------------


async def test_log_messages_are_stored_and_listed(
    client: httpx.AsyncClient, admin: httpx.AsyncClient
) -> None:
    response = await client.post("/passkit/v1/log", json={"logs": ["first", "second"]})
    bare = await client.post("/passkit/v1/log", json=["bare array"])

    listed = await admin.get("/api/v1/device-logs")

    assert (response.status_code, bare.status_code) == (200, 200)
    assert [item["message"] for item in listed.json()["items"]] == ["bare array", "second", "first"]


@pytest.mark.parametrize("body", [{"logs": "one"}, {"logs": [1, 2]}, {"nothing": []}, 7])
async def test_a_malformed_log_body_is_400(
    client: httpx.AsyncClient, runtime: Runtime, body: object
) -> None:
    response = await client.post("/passkit/v1/log", json=body)

    assert response.status_code == 400
    assert await count_rows(runtime, device_logs) == 0


# --- personalize ------------------------------------------------------------------------

PERSONALIZATION = (
    b'{"description": "Join the club", "requiredPersonalizationFields": '
    b'["PKPassPersonalizationFieldName", "PKPassPersonalizationFieldEmailAddress"]}'
)


@pytest.fixture
async def personalizable_pass(
    runtime: Runtime, builder: issuing.PassBuilder, pass_type: str
) -> IssuedPass:
    pass_json = {**devmode.DEMO_PASS_JSON, "nfc": {"message": "member"}}
    async with runtime.database.transaction() as conn:
        await issuing.create_template(
            conn,
            name="club",
            pass_type_id=pass_type,
            pass_json=pass_json,
            assets={**devmode.demo_assets(), "personalization.json": PERSONALIZATION},
        )
    return await issue(runtime, builder, "club")


async def test_personalize_signs_the_token_and_the_next_pass_is_personalized(
    client: httpx.AsyncClient,
    personalizable_pass: IssuedPass,
    credentials: DevCredentials,
    tmp_path: Path,
) -> None:
    before = await client.get(personalizable_pass.path, headers=personalizable_pass.auth)
    body = {
        "personalizationToken": "token-from-wallet",
        "requiredPersonalizationInfo": {"fullName": "Ada Lovelace", "emailAddress": "a@b.c"},
    }

    response = await client.post(personalizable_pass.path + "/personalize", json=body)
    after = await client.get(
        personalizable_pass.path,
        headers={**personalizable_pass.auth, "If-Modified-Since": before.headers["last-modified"]},
    )

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    assert (
        openssl_verify(response.content, b"token-from-wallet", credentials.root_cert_pem, tmp_path)
        == ""
    )
    with zipfile.ZipFile(io.BytesIO(before.content)) as archive:
        assert "personalization.json" in archive.namelist()
    assert after.status_code == 200
    with zipfile.ZipFile(io.BytesIO(after.content)) as archive:
        assert "personalization.json" not in archive.namelist()


async def personalization_of(runtime: Runtime, p: IssuedPass) -> tuple[object, int]:
    async with runtime.database.reader() as conn:
        row = (
            await conn.execute(
                sa.select(passes.c.personalization, passes.c.version).where(
                    passes.c.id == p.pass_id
                )
            )
        ).one()
    return row.personalization, int(row.version)


async def test_a_pass_is_personalized_once_even_by_callers_holding_its_token(
    client: httpx.AsyncClient, personalizable_pass: IssuedPass, runtime: Runtime
) -> None:
    # The token is in every copy of the pass, the public share link's included.
    await register(client, personalizable_pass, "device-a", token="push-a")
    await register(client, personalizable_pass, "device-b", token="push-b")
    _, version_before = await personalization_of(runtime, personalizable_pass)
    sender = RecordingSender()
    settings = runtime.settings.model_copy(update={"push_rate_per_second": 0.0})
    statuses, codes = [], []

    for attempt in range(30):
        body = {
            "personalizationToken": f"token-{attempt}",
            "requiredPersonalizationInfo": {"fullName": f"Person {attempt}"},
        }
        headers = personalizable_pass.auth if attempt % 2 else {}
        response = await client.post(
            personalizable_pass.path + "/personalize", json=body, headers=headers
        )
        statuses.append(response.status_code)
        codes.append(response.json()["error"]["code"] if response.status_code != 200 else None)
        await send_due_pushes(runtime.database, sender, settings)  # the worker keeps up

    stored, version_after = await personalization_of(runtime, personalizable_pass)
    assert statuses == [200] + [409] * 29
    assert set(codes[1:]) == {"already_personalized"}
    assert stored == {"fullName": "Person 0"}
    assert version_after == version_before + 1
    assert sorted(sender.tokens()) == ["push-a", "push-b"]  # one push per device, once


async def test_concurrent_personalizations_store_exactly_one(
    client: httpx.AsyncClient, personalizable_pass: IssuedPass, runtime: Runtime
) -> None:
    _, version_before = await personalization_of(runtime, personalizable_pass)

    responses = await asyncio.gather(
        *(
            client.post(
                personalizable_pass.path + "/personalize",
                json={
                    "personalizationToken": "t",
                    "requiredPersonalizationInfo": {"fullName": f"Racer {i}"},
                },
                headers=personalizable_pass.auth,
            )
            for i in range(8)
        )
    )

    statuses = sorted(response.status_code for response in responses)
    stored, version_after = await personalization_of(runtime, personalizable_pass)
    assert statuses == [200] + [409] * 7
    winner = next(i for i, r in enumerate(responses) if r.status_code == 200)
    assert stored == {"fullName": f"Racer {winner}"}
    assert version_after == version_before + 1


async def test_personalize_with_a_wrong_token_is_401_and_changes_nothing(
    client: httpx.AsyncClient, personalizable_pass: IssuedPass, runtime: Runtime
) -> None:
    body = {"personalizationToken": "t", "requiredPersonalizationInfo": {"fullName": "A"}}

    response = await client.post(
        personalizable_pass.path + "/personalize",
        json=body,
        headers={"Authorization": "ApplePass wrong-token-000000000000"},
    )

    assert response.status_code == 401
    assert (await personalization_of(runtime, personalizable_pass))[0] is None


@pytest.mark.parametrize(
    "body",
    [
        {"requiredPersonalizationInfo": {}},
        {"personalizationToken": "t"},
        {"personalizationToken": 5, "requiredPersonalizationInfo": {}},
        {"personalizationToken": "t", "requiredPersonalizationInfo": {"fullName": ["x"]}},
        # Nothing to store: it would use up the one personalization and sign up nobody.
        {"personalizationToken": "t", "requiredPersonalizationInfo": {}},
        {"personalizationToken": "t", "requiredPersonalizationInfo": {"favouriteColour": "x"}},
    ],
)
async def test_a_malformed_personalization_is_400(
    client: httpx.AsyncClient, personalizable_pass: IssuedPass, body: object, runtime: Runtime
) -> None:
    response = await client.post(personalizable_pass.path + "/personalize", json=body)

    assert response.status_code == 400
    assert (await personalization_of(runtime, personalizable_pass))[0] is None


async def test_personalizing_a_plain_pass_is_refused(
    client: httpx.AsyncClient, wallet_pass: IssuedPass, runtime: Runtime
) -> None:
    body = {"personalizationToken": "t", "requiredPersonalizationInfo": {"fullName": "A"}}

    response = await client.post(wallet_pass.path + "/personalize", json=body)

    assert response.status_code == 422
    assert await count_rows(runtime, push_jobs) == 0


async def test_concurrent_downloads_of_a_new_version_sign_it_once(
    client: httpx.AsyncClient, wallet_pass: IssuedPass
) -> None:
    before = PASSES_SIGNED._value.get()

    responses = await asyncio.gather(
        *(client.get(wallet_pass.path, headers=wallet_pass.auth) for _ in range(8))
    )

    assert {r.status_code for r in responses} == {200}
    assert len({r.content for r in responses}) == 1
    assert PASSES_SIGNED._value.get() - before == 1


async def test_unregistering_the_last_device_drops_its_queued_push(
    client: httpx.AsyncClient,
    wallet_pass: IssuedPass,
    runtime: Runtime,
    builder: issuing.PassBuilder,
    template: str,
) -> None:
    other = await issue(runtime, builder, template)
    await register(client, wallet_pass, device="phone", token="shared-token")
    await register(client, other, device="phone", token="shared-token")
    await change(runtime, builder, wallet_pass, balance=50)

    await client.delete(wallet_pass.registration_path("phone"), headers=wallet_pass.auth)
    kept = await count_rows(runtime, push_jobs)
    await client.delete(other.registration_path("phone"), headers=other.auth)
    dropped = await count_rows(runtime, push_jobs)

    assert (kept, dropped) == (1, 0)  # the token still held `other` until its own DELETE


async def test_admin_api_says_plainly_when_the_body_is_not_json(
    admin: httpx.AsyncClient, template: str
) -> None:
    broken = await admin.post(
        "/api/v1/passes",
        content=b'{"template": "card", "data": {',
        headers={"Content-Type": "application/json"},
    )
    untyped = await admin.post("/api/v1/passes", content=b'{"template": "card"}')

    assert broken.status_code == 400
    assert broken.json()["error"]["message"] == "The request body is not valid JSON."
    assert untyped.status_code == 422
    assert "Content-Type: application/json" in untyped.json()["error"]["message"]


async def test_a_renewed_certificate_signs_the_next_download(
    client: httpx.AsyncClient, wallet_pass: IssuedPass, runtime: Runtime, tmp_path: Path
) -> None:
    first = await client.get(wallet_pass.path, headers=wallet_pass.auth)
    renewed = make_dev_credentials(wallet_pass.pass_type_id, "TESTTEAM42")
    async with runtime.database.transaction() as conn:
        await issuing.save_pass_type(
            conn,
            runtime.sealer,
            issuing.Credentials(
                certificate_pem=renewed.cert_pem,
                private_key_pem=renewed.key_pem,
                wwdr_pem=renewed.wwdr_cert_pem,
            ),
            actor=pass_versions.CLI,
        )

    again = await client.get(
        wallet_pass.path,
        headers={**wallet_pass.auth, "If-Modified-Since": first.headers["last-modified"]},
    )

    assert again.status_code == 200
    with zipfile.ZipFile(io.BytesIO(again.content)) as archive:
        manifest, signature = archive.read("manifest.json"), archive.read("signature")
    assert openssl_verify(signature, manifest, renewed.root_cert_pem, tmp_path) == ""


# --- paths outside the route templates ----------------------------------------------------


async def test_paths_that_fit_no_route_template_are_answered_as_by_starlettes_router(
    client: httpx.AsyncClient, wallet_pass: IssuedPass
) -> None:
    # web/passkit.py's DeviceRouter matches the exact templates and hands anything else
    # to the Starlette router built from the same routes: these answers are its own.
    path = f"/passkit/v1/passes/{wallet_pass.pass_type_id}/{wallet_pass.serial_number}"

    slash = await client.get(path + "/", headers=wallet_pass.auth)
    trace = await client.request("TRACE", path, headers=wallet_pass.auth)
    put = await client.put(path, headers=wallet_pass.auth)
    extra = await client.get(path + "/more/segments", headers=wallet_pass.auth)
    exact = await client.get(path, headers=wallet_pass.auth)

    assert slash.status_code == 307
    assert slash.headers["location"].endswith(path)
    assert trace.status_code == 405
    assert put.status_code == 405
    assert put.json()["error"]["code"] == "method_not_allowed"
    assert put.headers["allow"] == "GET"
    assert extra.status_code == 404
    assert extra.json()["error"]["code"] == "not_found"
    assert exact.status_code == 200
    assert "last-modified" in exact.headers
