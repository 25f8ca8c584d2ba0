"""What GET /api/v1/pass-types shows: every problem that will make Wallet reject the passes."""

from __future__ import annotations

from typing import Any

import httpx
import sqlalchemy as sa
from cryptography import x509

from certs import renewed_certificate
from conftest import PASS_TYPE_ID
from passhouse.bootstrap import Runtime
from passhouse.pkpass.devcerts import DevCredentials, make_dev_credentials
from passhouse.storage.tables import pass_types


async def test_the_api_shows_what_will_make_wallet_reject_the_passes(
    admin: httpx.AsyncClient, credentials: DevCredentials
) -> None:
    body: dict[str, Any] = {
        "certificate_pem": credentials.cert_pem.decode(),
        "private_key_pem": credentials.key_pem.decode(),
    }
    added = await admin.post("/api/v1/pass-types", json=body)
    shown = await admin.get(f"/api/v1/pass-types/{PASS_TYPE_ID}")
    listed = await admin.get("/api/v1/pass-types")
    renewed = await admin.post(
        "/api/v1/pass-types", json={**body, "wwdr_pem": credentials.wwdr_cert_pem.decode()}
    )
    fixed = await admin.get(f"/api/v1/pass-types/{PASS_TYPE_ID}")

    assert added.status_code == 201
    assert any("give it with wwdr_pem" in warning for warning in added.json()["warnings"])
    errors = [p for p in shown.json()["problems"] if p["severity"] == "error"]
    assert len(errors) == 1
    assert errors[0]["message"].startswith("No WWDR intermediate certificate was given")
    assert listed.json()["items"][0]["problems"] == shown.json()["problems"]
    assert renewed.status_code == 200
    assert fixed.json()["has_wwdr"] is True
    assert [p["severity"] for p in fixed.json()["problems"]] == ["warning"]  # a dev WWDR


async def test_a_renewal_through_the_api_without_wwdr_keeps_it(
    admin: httpx.AsyncClient, credentials: DevCredentials
) -> None:
    first = {
        "certificate_pem": credentials.cert_pem.decode(),
        "private_key_pem": credentials.key_pem.decode(),
        "wwdr_pem": credentials.wwdr_cert_pem.decode(),
    }
    cert_pem, key_pem = renewed_certificate(credentials)
    await admin.post("/api/v1/pass-types", json=first)

    renewed = await admin.post(
        "/api/v1/pass-types",
        json={"certificate_pem": cert_pem.decode(), "private_key_pem": key_pem.decode()},
    )

    assert renewed.status_code == 200
    assert renewed.json()["has_wwdr"] is True
    assert not [p for p in renewed.json()["problems"] if p["severity"] == "error"]
    assert "the stored one is kept (give wwdr_pem" in renewed.json()["warnings"][0]


async def test_an_expired_certificate_and_a_mismatched_key_are_shown(
    admin: httpx.AsyncClient, pass_type: str, runtime: Runtime
) -> None:
    # A stored certificate that has since expired, and (for the same price) is not the
    # stored key's: both happen to a running installation without any upload.
    expired = make_dev_credentials(PASS_TYPE_ID, "TESTTEAM42", valid_days=-1)
    async with runtime.database.transaction() as conn:
        await conn.execute(
            sa.update(pass_types).values(
                certificate_pem=expired.cert_pem.decode(),
                not_after=int(
                    x509.load_pem_x509_certificate(expired.cert_pem).not_valid_after_utc.timestamp()
                ),
            )
        )

    shown = await admin.get(f"/api/v1/pass-types/{PASS_TYPE_ID}")

    errors = " ".join(p["message"] for p in shown.json()["problems"] if p["severity"] == "error")
    assert "The certificate expired on" in errors
    assert "The private key does not match the certificate" in errors
    assert shown.json()["expired"] is True
