"""The Android pkpass apps on the device endpoints: Wallet Passes, PassWallet, Pass2U and
Passworks register, fetch and are woken through their own relays."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from factories import IssuedPass, count_rows
from passhouse.bootstrap import Runtime
from passhouse.pkpass.devcerts import issue_server_certificate, make_dev_credentials
from passhouse.push.apns import make_sender
from passhouse.push.relays import make_relay_senders
from passhouse.push.sender import PushSender
from passhouse.settings import Settings
from passhouse.storage import push_jobs
from passhouse.storage.tables import registrations
from passhouse.worker import send_due_pushes
from push.fake_apns import FakeApns
from push.fake_relays import PASS2U, PASSWALLET, PASSWORKS, WALLETPASSES, FakeRelay

DEVICE = "android-device-0001"
PUSH_SERVICE = "http://127.0.0.1:9/PassWallet"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes, Path]:
    """A throwaway root and a loopback server certificate under it, for the fakes."""
    root = make_dev_credentials("pass.test.relays", "TEAM000001")
    cert, key = issue_server_certificate(root.root_cert_pem, root.root_key_pem)
    ca_file = tmp_path_factory.mktemp("relay-ca") / "ca.pem"
    ca_file.write_bytes(root.root_cert_pem)
    return cert, key, ca_file


@pytest.fixture
async def fakes(tls: tuple[bytes, bytes, Path]) -> AsyncIterator[dict[str, FakeRelay]]:
    cert, key, _ = tls
    made = {
        WALLETPASSES: FakeRelay(WALLETPASSES, None, cert, key),
        PASS2U: FakeRelay(PASS2U, "p2u-key", cert, key),
        PASSWORKS: FakeRelay(PASSWORKS, "pw-key", cert, key),
        PASSWALLET: FakeRelay(PASSWALLET),
    }
    for fake in made.values():
        await fake.start()
    try:
        yield made
    finally:
        for fake in made.values():
            await fake.stop()


@pytest.fixture
async def fake_apns(tls: tuple[bytes, bytes, Path]) -> AsyncIterator[FakeApns]:
    cert, key, _ = tls
    server = FakeApns(cert, key, None)
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
def settings(
    settings: Settings,
    fakes: dict[str, FakeRelay],
    fake_apns: FakeApns,
    tls: tuple[bytes, bytes, Path],
) -> Settings:
    return settings.model_copy(
        update={
            "apns_url": fake_apns.url,
            "apns_ca_file": tls[2],
            "relay_walletpasses_url": fakes[WALLETPASSES].url,
            "relay_pass2u_url": fakes[PASS2U].url,
            "relay_pass2u_api_key": SecretStr("p2u-key"),
            "relay_passworks_url": fakes[PASSWORKS].url,
            "relay_passworks_api_key": SecretStr("pw-key"),
            "relay_ca_file": tls[2],
            "passwallet_push_hosts": ("127.0.0.1",),
            "push_rate_per_second": 0,
        }
    )


def attido_path(wallet_pass: IssuedPass, device: str = DEVICE) -> str:
    return (
        f"/passkit/v1/devices/{device}/registrations_attido/"
        f"{wallet_pass.pass_type_id}/{wallet_pass.serial_number}"
    )


def auth(wallet_pass: IssuedPass, scheme: str) -> dict[str, str]:
    return {"Authorization": f"{scheme} {wallet_pass.authentication_token}"}


async def stored(runtime: Runtime) -> list[tuple[str, str, str]]:
    async with runtime.database.reader() as conn:
        rows = await conn.execute(
            sa.select(
                registrations.c.push_token,
                registrations.c.transport,
                registrations.c.push_service_url,
            ).order_by(registrations.c.push_token)
        )
        return [tuple(row) for row in rows]


# --- registration: each app, each scheme ---------------------------------------------


@pytest.mark.parametrize(
    ("headers", "transport"),
    [
        ({"Authorization": "ApplePass {token}"}, "apns"),
        ({"Authorization": "AndroidPass {token}"}, "walletpasses"),
        (
            {"Authorization": "ApplePass {token}", "User-Agent": "WalletPasses/2.9.1 Android"},
            "walletpasses",
        ),
        ({"Authorization": "ApplePass {token}", "X-Pass-Client": "Passes"}, "pass2u"),
        ({"Authorization": "ApplePass {token}", "X-Pass-Client": "Passworks"}, "passworks"),
    ],
)
async def test_each_app_registering_on_apples_endpoint_records_its_transport(
    client: httpx.AsyncClient,
    wallet_pass: IssuedPass,
    runtime: Runtime,
    headers: dict[str, str],
    transport: str,
) -> None:
    sent = {k: v.format(token=wallet_pass.authentication_token) for k, v in headers.items()}

    first = await client.post(
        wallet_pass.registration_path(DEVICE), headers=sent, json={"pushToken": "tok-1"}
    )
    again = await client.post(
        wallet_pass.registration_path(DEVICE), headers=sent, json={"pushToken": "tok-1"}
    )

    assert (first.status_code, again.status_code) == (201, 200)
    assert await stored(runtime) == [("tok-1", transport, "")]


async def test_passwallet_registers_on_its_own_endpoint_with_its_push_service(
    client: httpx.AsyncClient, wallet_pass: IssuedPass, runtime: Runtime
) -> None:
    body = {"pushToken": "pw-token", "pushServiceUrl": PUSH_SERVICE}

    first = await client.post(
        attido_path(wallet_pass), headers=auth(wallet_pass, "AttidoPass"), json=body
    )
    again = await client.post(
        attido_path(wallet_pass), headers=auth(wallet_pass, "AttidoPass"), json=body
    )

    assert (first.status_code, again.status_code) == (201, 200)
    assert await stored(runtime) == [("pw-token", "passwallet", PUSH_SERVICE)]


async def test_a_device_that_moves_to_another_app_is_woken_through_the_new_one(
    client: httpx.AsyncClient, wallet_pass: IssuedPass, runtime: Runtime
) -> None:
    await client.post(
        wallet_pass.registration_path(DEVICE),
        headers=auth(wallet_pass, "ApplePass"),
        json={"pushToken": "t"},
    )

    moved = await client.post(
        attido_path(wallet_pass),
        headers=auth(wallet_pass, "AttidoPass"),
        json={"pushToken": "t2", "pushServiceUrl": PUSH_SERVICE},
    )

    assert moved.status_code == 200
    assert await stored(runtime) == [("t2", "passwallet", PUSH_SERVICE)]


@pytest.mark.parametrize(
    ("path", "scheme", "body", "status"),
    [
        ("attido", "AttidoPass", {"pushToken": "t", "pushServiceUrl": PUSH_SERVICE}, 201),
        ("attido", "Bearer", {"pushToken": "t", "pushServiceUrl": PUSH_SERVICE}, 401),
        ("attido", "AttidoPass", {"pushToken": "t"}, 400),
        ("attido", "AttidoPass", {"pushServiceUrl": PUSH_SERVICE}, 400),
        ("attido", "AttidoPass", {"pushToken": "t", "pushServiceUrl": 7}, 400),
        ("apple", "AndroidPass", {"pushToken": "t"}, 201),
        ("apple", "androidpass", {"pushToken": "t"}, 401),
    ],
)
async def test_the_registration_endpoints_answer_as_apples_does(
    client: httpx.AsyncClient,
    wallet_pass: IssuedPass,
    runtime: Runtime,
    path: str,
    scheme: str,
    body: dict[str, object],
    status: int,
) -> None:
    url = attido_path(wallet_pass) if path == "attido" else wallet_pass.registration_path(DEVICE)

    response = await client.post(url, headers=auth(wallet_pass, scheme), json=body)

    assert response.status_code == status
    if status != 201:
        assert "error" in response.json()
        assert await count_rows(runtime, registrations) == 0


@pytest.mark.parametrize(
    "push_service_url",
    [
        "http://127.0.0.2/PassWallet",  # loopback, not the listed address
        "http://10.1.2.3/PassWallet",
        "http://192.168.0.10/PassWallet",
        "http://[::1]/PassWallet",
        "http://metadata.internal/PassWallet",
        "http://user:secret@127.0.0.1/PassWallet",
        "ftp://127.0.0.1/PassWallet",
        "http://127.0.0.1:99999/PassWallet",
        "not a url",
    ],
)
async def test_a_push_service_off_the_allow_list_is_refused_and_nothing_stored(
    client: httpx.AsyncClient, wallet_pass: IssuedPass, runtime: Runtime, push_service_url: str
) -> None:
    response = await client.post(
        attido_path(wallet_pass),
        headers=auth(wallet_pass, "AttidoPass"),
        json={"pushToken": "t", "pushServiceUrl": push_service_url},
    )

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "push_service_not_allowed"
    assert await count_rows(runtime, registrations) == 0


@pytest.mark.parametrize(
    ("allowed", "push_service_url", "status"),
    [
        # The default list: PassWallet's published push service only.
        (None, "http://proxy.ravensoft.co.uk/PassWallet", 201),
        (None, "http://127.0.0.1/PassWallet", 403),
        (None, "http://10.0.0.5/PassWallet", 403),
        (("10.0.0.0/8",), "http://10.0.0.5/PassWallet", 201),
        (("push.example.com",), "https://PUSH.example.com/PassWallet", 201),
        (("push.example.com",), "https://evil.push.example.com/PassWallet", 403),
    ],
)
async def test_the_allow_list_names_the_push_services_that_may_be_called(
    client: httpx.AsyncClient,
    wallet_pass: IssuedPass,
    runtime: Runtime,
    allowed: tuple[str, ...] | None,
    push_service_url: str,
    status: int,
) -> None:
    if allowed is None:
        runtime.settings.passwallet_push_hosts = Settings(_env_file=None).passwallet_push_hosts
    else:
        runtime.settings.passwallet_push_hosts = allowed

    response = await client.post(
        attido_path(wallet_pass),
        headers=auth(wallet_pass, "AttidoPass"),
        json={"pushToken": "t", "pushServiceUrl": push_service_url},
    )

    assert response.status_code == status


def test_the_allow_list_setting_reads_names_addresses_and_networks() -> None:
    parsed = Settings(
        _env_file=None, passwallet_push_hosts="Push.Example.com, 127.0.0.1,10.0.0.0/8 ,::1"
    )

    assert parsed.passwallet_push_hosts == ("push.example.com", "127.0.0.1", "10.0.0.0/8", "::1")
    with pytest.raises(ValueError, match="not a host name"):
        Settings(_env_file=None, passwallet_push_hosts="http://x.example/")


# --- the other device endpoints take the Android schemes --------------------------------


@pytest.mark.parametrize("scheme", ["ApplePass", "AndroidPass", "AttidoPass"])
async def test_the_latest_pass_and_unregister_accept_each_apps_scheme(
    client: httpx.AsyncClient, wallet_pass: IssuedPass, runtime: Runtime, scheme: str
) -> None:
    await client.post(
        wallet_pass.registration_path(DEVICE),
        headers=auth(wallet_pass, scheme),
        json={"pushToken": "t"},
    )

    latest = await client.get(wallet_pass.path, headers=auth(wallet_pass, scheme))
    wrong = await client.get(wallet_pass.path, headers={"Authorization": f"{scheme} nope"})
    removed = await client.delete(
        wallet_pass.registration_path(DEVICE), headers=auth(wallet_pass, scheme)
    )

    assert latest.status_code == 200
    assert latest.headers["content-type"] == "application/vnd.apple.pkpass"
    assert wrong.status_code == 401
    assert removed.status_code == 200
    assert await count_rows(runtime, registrations) == 0


# --- the registrations view and one change reaching every app ----------------------------


async def _register_everywhere(client: httpx.AsyncClient, wallet_pass: IssuedPass) -> None:
    apple = wallet_pass.registration_path
    calls = [
        (apple("iphone"), {"Authorization": "ApplePass {t}"}, {"pushToken": "apns-token"}),
        (apple("wp"), {"Authorization": "AndroidPass {t}"}, {"pushToken": "wp-token"}),
        (
            apple("p2u"),
            {"Authorization": "ApplePass {t}", "X-Pass-Client": "Passes"},
            {"pushToken": "p2u-token"},
        ),
        (
            apple("pw"),
            {"Authorization": "ApplePass {t}", "X-Pass-Client": "Passworks"},
            {"pushToken": "pwk-token"},
        ),
    ]
    for url, headers, body in calls:
        sent = {k: v.format(t=wallet_pass.authentication_token) for k, v in headers.items()}
        assert (await client.post(url, headers=sent, json=body)).status_code == 201


async def test_the_registrations_view_names_each_devices_app(
    client: httpx.AsyncClient,
    admin: httpx.AsyncClient,
    wallet_pass: IssuedPass,
    fakes: dict[str, FakeRelay],
) -> None:
    await _register_everywhere(client, wallet_pass)
    await client.post(
        attido_path(wallet_pass, "passwallet"),
        headers=auth(wallet_pass, "AttidoPass"),
        json={"pushToken": "pwl-token", "pushServiceUrl": fakes[PASSWALLET].url},
    )

    response = await admin.get(
        f"/api/v1/passes/{wallet_pass.pass_type_id}/{wallet_pass.serial_number}/registrations"
    )

    assert response.status_code == 200
    seen = {(r["transport"], r["app"], r["push_service"]) for r in response.json()["items"]}
    assert seen == {
        ("apns", "Apple Wallet", None),
        ("walletpasses", "Wallet Passes", None),
        ("pass2u", "Pass2U Wallet", None),
        ("passworks", "Passworks Wallet", None),
        ("passwallet", "PassWallet", "127.0.0.1"),
    }


async def test_one_change_wakes_every_app_once_through_its_own_transport(
    client: httpx.AsyncClient,
    admin: httpx.AsyncClient,
    wallet_pass: IssuedPass,
    runtime: Runtime,
    fakes: dict[str, FakeRelay],
    fake_apns: FakeApns,
) -> None:
    await _register_everywhere(client, wallet_pass)
    await client.post(
        attido_path(wallet_pass, "passwallet"),
        headers=auth(wallet_pass, "AttidoPass"),
        json={"pushToken": "pwl-token", "pushServiceUrl": fakes[PASSWALLET].url},
    )
    senders: dict[str, PushSender] = {
        "apns": make_sender(runtime.settings, runtime.database, runtime.sealer),
        **make_relay_senders(runtime.settings),
    }

    changed = await admin.patch(
        f"/api/v1/passes/{wallet_pass.pass_type_id}/{wallet_pass.serial_number}",
        json={"data": {"balance": 42}},
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            async with runtime.database.reader() as conn:
                if not await push_jobs.queue_depth(conn):
                    break
            assert time.monotonic() < deadline, "the queue did not drain"
            if not await send_due_pushes(runtime.database, senders, runtime.settings):
                await asyncio.sleep(0.02)
        stats = await admin.get("/api/v1/push/stats")
        pushes = await admin.get(
            f"/api/v1/passes/{wallet_pass.pass_type_id}/{wallet_pass.serial_number}/pushes"
        )
    finally:
        for sender in senders.values():
            await sender.aclose()

    assert changed.status_code == 200, changed.text
    assert fake_apns.tokens() == ["apns-token"]
    assert fakes[WALLETPASSES].tokens() == ["wp-token"]
    assert fakes[PASS2U].tokens() == ["p2u-token"]
    assert fakes[PASSWORKS].tokens() == ["pwk-token"]
    assert fakes[PASSWALLET].tokens() == ["pwl-token"]
    assert stats.status_code == 200
    per_transport = stats.json()["transports"]
    assert {t: c["sent"] for t, c in per_transport.items()} == {
        "apns": 1,
        "passwallet": 1,
        "pass2u": 1,
        "passworks": 1,
        "walletpasses": 1,
    }
    assert sorted(p["transport"] for p in pushes.json()["items"]) == sorted(per_transport)
