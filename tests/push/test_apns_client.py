from __future__ import annotations

import asyncio
import base64
import json
import socket
import time
from collections.abc import AsyncIterator

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from passhouse.push.apns import ApnsConnectionError, ApnsSender, _Pool, client_context, make_sender
from passhouse.push.sender import PushOutcome
from passhouse.settings import Settings
from passhouse.storage.database import Database
from passhouse.storage.sealing import Sealer
from passhouse.storage.tables import pass_types
from push import fake_apns as fake
from push.conftest import PASS_TYPE_ID, Pki, add_real_pass_type
from push.fake_apns import FakeApns

TOKEN = "ab" * 32


@pytest.fixture
async def sender(
    database: Database, settings: Settings, sealer: Sealer, pki: Pki
) -> AsyncIterator[ApnsSender]:
    async with database.transaction() as conn:
        await add_real_pass_type(conn, pki)
    apns = make_sender(settings, database, sealer)
    try:
        yield apns
    finally:
        await apns.aclose()


async def test_a_push_is_an_empty_dictionary_to_the_pass_type_topic(
    sender: ApnsSender, fake_apns: FakeApns
) -> None:
    before = int(time.time())

    result = await sender.send(TOKEN, PASS_TYPE_ID)

    assert result.outcome is PushOutcome.DELIVERED
    [push] = fake_apns.received
    assert push.token == TOKEN
    assert push.body == b"{}"
    assert push.headers[":method"] == "POST"
    assert push.headers[":path"] == f"/3/device/{TOKEN}"
    assert push.headers["apns-topic"] == PASS_TYPE_ID
    assert push.headers["apns-push-type"] == "background"
    assert push.headers["apns-priority"] == "5"
    assert before + 86_400 <= int(push.headers["apns-expiration"]) <= int(time.time()) + 86_400
    # The TLS client certificate was the pass type's, checked against the test CA.
    assert fake_apns.client_subjects == [f"Pass Type ID: {PASS_TYPE_ID}"]


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        (fake.OK, PushOutcome.DELIVERED),
        (fake.BAD_DEVICE_TOKEN, PushOutcome.DEVICE_GONE),
        (fake.unregistered(1_700_000_000_123), PushOutcome.DEVICE_GONE),
        (fake.BAD_CERTIFICATE, PushOutcome.CREDENTIALS_REJECTED),
        (fake.TOO_MANY_REQUESTS, PushOutcome.RETRY),
        (fake.SERVICE_UNAVAILABLE, PushOutcome.RETRY),
        (fake.Answer(400, "BadTopic"), PushOutcome.REJECTED),
    ],
)
async def test_apns_answers_become_outcomes(
    sender: ApnsSender, fake_apns: FakeApns, answer: fake.Answer, outcome: PushOutcome
) -> None:
    fake_apns.answer(TOKEN, answer)

    result = await sender.send(TOKEN, PASS_TYPE_ID)

    assert (result.status, result.reason, result.outcome) == (answer.status, answer.reason, outcome)
    assert result.timestamp_ms == answer.timestamp_ms


async def test_many_pushes_share_few_connections_as_concurrent_streams(
    sender: ApnsSender, fake_apns: FakeApns, settings: Settings
) -> None:
    fake_apns.delay = 0.05
    tokens = [f"{i:064x}" for i in range(600)]

    results = await asyncio.gather(*(sender.send(token, PASS_TYPE_ID) for token in tokens))

    assert {r.outcome for r in results} == {PushOutcome.DELIVERED}
    assert sorted(fake_apns.tokens()) == tokens
    assert fake_apns.connections <= settings.apns_connections_per_pass_type


async def test_the_server_stream_limit_is_respected(
    sender: ApnsSender, fake_apns: FakeApns
) -> None:
    fake_apns.max_concurrent_streams = 3
    fake_apns.delay = 0.02

    results = await asyncio.gather(*(sender.send(f"{i:064x}", PASS_TYPE_ID) for i in range(30)))

    assert {r.status for r in results} == {200}, [r.reason for r in results if r.status is None]


async def test_goaway_moves_pushes_to_a_new_connection(
    sender: ApnsSender, fake_apns: FakeApns
) -> None:
    fake_apns.goaway_after = 25
    tokens = [f"{i:064x}" for i in range(60)]

    results = await asyncio.gather(*(sender.send(token, PASS_TYPE_ID) for token in tokens))
    later = await sender.send(TOKEN, PASS_TYPE_ID)

    assert fake_apns.goaways >= 1
    # Every push either went through or came back as retryable, none was lost silently.
    assert {r.outcome for r in results} <= {PushOutcome.DELIVERED, PushOutcome.RETRY}
    delivered = {t for t, r in zip(tokens, results, strict=True) if r.status == 200}
    assert delivered <= set(fake_apns.tokens())
    assert len(delivered) >= 25
    assert later.status == 200


async def test_a_slow_server_gives_a_retryable_timeout(
    sender: ApnsSender, fake_apns: FakeApns, settings: Settings
) -> None:
    fake_apns.delay = settings.apns_request_timeout_seconds + 1

    result = await sender.send(TOKEN, PASS_TYPE_ID)

    assert (result.status, result.reason, result.outcome) == (None, "Timeout", PushOutcome.RETRY)


async def test_a_connection_gone_silent_is_replaced_after_one_timeout(
    sender: ApnsSender, fake_apns: FakeApns, settings: Settings
) -> None:
    first = await sender.send(TOKEN, PASS_TYPE_ID)
    fake_apns.go_silent()

    lost = await sender.send("cd" * 32, PASS_TYPE_ID)
    after = await sender.send("ef" * 32, PASS_TYPE_ID)

    assert (first.status, lost.reason, after.status) == (200, "Timeout", 200)
    assert fake_apns.connections == 2


async def test_an_unreachable_server_gives_a_retryable_connection_error(
    database: Database, settings: Settings, sealer: Sealer, pki: Pki, fake_apns: FakeApns
) -> None:
    async with database.transaction() as conn:
        await add_real_pass_type(conn, pki)
    await fake_apns.close()
    apns = make_sender(settings, database, sealer)

    result = await apns.send(TOKEN, PASS_TYPE_ID)
    await apns.aclose()

    assert result.outcome is PushOutcome.RETRY
    assert str(result.reason).startswith("ConnectionError")


async def test_token_auth_sends_an_es256_provider_token(
    database: Database, settings: Settings, sealer: Sealer, pki: Pki, fake_apns: FakeApns
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    p8 = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    async with database.transaction() as conn:
        await add_real_pass_type(conn, pki)
        await conn.execute(
            pass_types.update().values(
                apns_key_id="KEY1234567",
                apns_team_id="TEAM123456",
                apns_key_encrypted=sealer.seal(p8),
            )
        )
    fake_apns.client_ca_pem = None  # token auth: no client certificate
    await fake_apns.close()
    await fake_apns.start()
    apns = make_sender(settings, database, sealer)

    first = await apns.send(TOKEN, PASS_TYPE_ID)
    second = await apns.send(TOKEN, PASS_TYPE_ID)
    await apns.aclose()

    assert (first.status, second.status) == (200, 200)
    tokens = [push.headers["authorization"] for push in fake_apns.received]
    assert tokens[0] == tokens[1]  # reused, not made per push
    header, claims, signature = tokens[0].removeprefix("bearer ").split(".")
    assert json.loads(_unb64(header)) == {"alg": "ES256", "kid": "KEY1234567"}
    assert json.loads(_unb64(claims))["iss"] == "TEAM123456"
    raw = _unb64(signature)
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    key.public_key().verify(der, f"{header}.{claims}".encode(), ec.ECDSA(hashes.SHA256()))
    assert fake_apns.client_subjects == []


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


async def test_a_push_for_a_deleted_pass_type_is_rejected_not_blocked(
    sender: ApnsSender, fake_apns: FakeApns
) -> None:
    result = await sender.send(TOKEN, "pass.test.gone")

    assert (result.reason, result.outcome) == ("UnknownPassType", PushOutcome.REJECTED)
    assert fake_apns.received == []


def _pool(settings: Settings, pki: Pki, port: int) -> _Pool:
    context = client_context(pki.ca_file, pki.credentials.cert_pem, pki.credentials.key_pem)
    return _Pool(("127.0.0.1", port), context, settings, None)


async def _ten_acquires(pool: _Pool, within: float) -> list[BaseException | object]:
    async with asyncio.timeout(within):
        return await asyncio.gather(*(pool.acquire() for _ in range(10)), return_exceptions=True)


async def test_acquire_with_nothing_listening_fails_every_caller_promptly(
    settings: Settings, pki: Pki
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    pool = _pool(settings, pki, port)

    # Refused at once: the 8 callers waiting for the 2 opens must hear of their failure.
    results = await _ten_acquires(pool, within=settings.apns_connect_timeout_seconds)

    assert [type(r) for r in results] == [ApnsConnectionError] * 10
    again = await _ten_acquires(pool, within=settings.apns_connect_timeout_seconds)
    assert [type(r) for r in again] == [ApnsConnectionError] * 10


async def test_acquire_against_a_server_that_never_answers_is_bounded(
    settings: Settings, pki: Pki
) -> None:
    silent = await asyncio.get_running_loop().create_server(asyncio.Protocol, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    quick = settings.model_copy(update={"apns_connect_timeout_seconds": 0.3})
    pool = _pool(quick, pki, port)

    try:
        started = time.monotonic()
        results = await _ten_acquires(pool, within=10)
        elapsed = time.monotonic() - started
    finally:
        silent.close()

    assert [type(r) for r in results] == [ApnsConnectionError] * 10
    assert elapsed >= 0.3  # the TLS handshake was really waited for
