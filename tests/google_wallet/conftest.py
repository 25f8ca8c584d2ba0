"""Fixtures for Google Wallet: a fake Google on loopback (HTTPS, a test CA), a service
account it trusts, settings pointing at it, and an issuer connected through the API."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr

from conftest import ADMIN_TOKEN, SECRET_KEY
from google_wallet.fake_google import FakeGoogle
from google_wallet.keys import CLIENT_EMAIL, ISSUER_ID, CallbackKeys, service_account_info
from passhouse.bootstrap import Runtime
from passhouse.google_sync import GoogleSync
from passhouse.pkpass.devcerts import issue_server_certificate, make_dev_credentials
from passhouse.settings import Settings


@dataclass(frozen=True)
class GooglePki:
    ca_file: Path
    cert_file: Path
    key_file: Path


@pytest.fixture(scope="session")
def google_pki(tmp_path_factory: pytest.TempPathFactory) -> GooglePki:
    ca = make_dev_credentials("pass.test.google", "TEAM123456")
    cert, key = issue_server_certificate(ca.root_cert_pem, ca.root_key_pem)
    folder = tmp_path_factory.mktemp("google-pki")
    (folder / "ca.pem").write_bytes(ca.root_cert_pem)
    (folder / "server.pem").write_bytes(cert)
    (folder / "key.pem").write_bytes(key)
    return GooglePki(folder / "ca.pem", folder / "server.pem", folder / "key.pem")


@pytest.fixture(scope="session")
def service_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def callback_keys() -> CallbackKeys:
    return CallbackKeys.generate()


@pytest.fixture
async def fake_google(
    google_pki: GooglePki, service_key: rsa.RSAPrivateKey, callback_keys: CallbackKeys
) -> AsyncIterator[FakeGoogle]:
    fake = FakeGoogle(ISSUER_ID, service_key.public_key(), CLIENT_EMAIL)
    fake.keys_document = callback_keys.keys_document()
    server = await fake.serve(google_pki.cert_file, google_pki.key_file)
    try:
        yield fake
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await fake._task


@pytest.fixture
def service_account(fake_google: FakeGoogle, service_key: rsa.RSAPrivateKey) -> dict[str, Any]:
    return service_account_info(fake_google.token_url, service_key)


@pytest.fixture
def settings(
    database_url: str, tmp_path: Path, fake_google: FakeGoogle, google_pki: GooglePki
) -> Settings:
    return Settings(
        _env_file=None,
        database_url=database_url,
        public_url="https://passes.example.test",
        admin_token=SecretStr(ADMIN_TOKEN),
        secret_key=SecretStr(SECRET_KEY),
        data_dir=tmp_path / "data",
        google_api_url=fake_google.base_url,
        google_save_url=f"{fake_google.base_url}/gp/v/save/",
        google_callback_keys_url=f"{fake_google.base_url}/gp/m/issuer/keys",
        google_ca_file=google_pki.ca_file,
        google_rate_per_second=0,
        google_request_timeout_seconds=2.0,
        push_backoff_base_seconds=0.05,
        push_backoff_max_seconds=0.2,
        push_max_attempts=4,
        push_lease_seconds=2.0,
    )


@pytest.fixture
async def issuer(admin: Any, service_account: dict[str, Any]) -> str:
    response = await admin.post(
        "/api/v1/google-issuers",
        json={"issuer_id": ISSUER_ID, "service_account": service_account},
    )
    assert response.status_code == 201, response.text
    return ISSUER_ID


@pytest.fixture
async def google_sync(runtime: Runtime) -> AsyncIterator[GoogleSync]:
    sync = GoogleSync(runtime)
    try:
        yield sync
    finally:
        await sync.aclose()


async def drain(sync: GoogleSync, *, rounds: int = 50) -> None:
    """Run the Google queue until nothing is due (backoffs in tests are short)."""
    for _ in range(rounds):
        if not await sync.sync_due():
            async with sync.database.reader() as conn:
                from passhouse.storage import google_wallet as store

                due = await store.next_due_at(conn)
            if due is None:
                return
            await asyncio.sleep(0.05)
    raise AssertionError("the Google queue did not drain")


Drain = Callable[[GoogleSync], Any]
