"""Pass types: an issuer's certificate, key and APNs credentials, checked and stored."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from sqlalchemy.ext.asyncio import AsyncConnection

from passhouse.errors import Conflict, InvalidInput, NotFound
from passhouse.issuing.common import now_seconds
from passhouse.pkpass.certs import (
    Problem,
    check_credentials_in_detail,
    inspect_certificate,
    load_certificate,
    load_p12,
    load_private_key,
)
from passhouse.pkpass.signing import PassSigner
from passhouse.storage import pass_types, passes
from passhouse.storage.pass_versions import Actor, Change
from passhouse.storage.sealing import Sealer


@dataclass(frozen=True, slots=True)
class Credentials:
    """What an issuer uploads for a pass type, in one of its two forms."""

    certificate_pem: bytes | None = None
    private_key_pem: bytes | None = None
    private_key_password: bytes | None = None
    wwdr_pem: bytes | None = None
    p12: bytes | None = None
    p12_password: bytes | None = None
    apns_key_p8: bytes | None = None
    apns_key_id: str | None = None
    apns_team_id: str | None = None


async def save_pass_type(
    conn: AsyncConnection,
    sealer: Sealer,
    credentials: Credentials,
    *,
    dev_mode: bool = False,
    wwdr_option: str = "wwdr_pem",
    actor: Actor,
) -> tuple[str, bool, list[str]]:
    """Check and store a pass type's credentials; (pass_type_id, created, warnings).

    The pass type id and team id are read from the certificate, never taken on trust. A
    renewal without a WWDR keeps the stored one (ADR 0012). `wwdr_option` is how the
    caller's user gives a WWDR (the API field, or the CLI flag), for the warnings.
    """
    cert_pem, key_pem, wwdr_pem = _unpack_credentials(credentials)
    warnings = []
    info = inspect_certificate(cert_pem)
    existing = await pass_types.get_pass_type(conn, info.pass_type_id or "")
    if wwdr_pem is None and existing is not None and existing.wwdr_pem:
        wwdr_pem = existing.wwdr_pem.encode()
        warnings.append(
            f"No WWDR certificate was given: the stored one is kept (give {wwdr_option} "
            "to replace it)."
        )
    signer = _checked_signer(cert_pem, key_pem, wwdr_pem)
    check = check_credentials_in_detail(cert_pem, key_pem, wwdr_pem, wwdr_option=wwdr_option)
    warnings.extend(problem.message for problem in check.problems)
    apns_values = _apns_token_values(credentials, sealer)
    created = await pass_types.save_pass_type(
        conn,
        {
            "pass_type_id": signer.pass_type_id,
            "team_id": signer.team_id,
            "certificate_pem": cert_pem.decode(),
            "private_key_encrypted": sealer.seal(key_pem),
            "wwdr_pem": wwdr_pem.decode() if wwdr_pem else None,
            "not_after": int(info.not_after.timestamp()),
            "dev_mode": dev_mode,
            "created_at": now_seconds(),
            **apns_values,
        },
    )
    if not created:
        # Passes signed with the old certificate must be rebuilt with the new one. A new
        # version moves every cache key (the shared table and each process's memory) at
        # once, as a template change does; no push is queued: installed copies stay
        # valid, and devices that ask anyway get the re-signed file.
        version = await pass_types.next_version(conn, signer.pass_type_id)
        await passes.bump_pass_type_passes(
            conn,
            signer.pass_type_id,
            version=version,
            now=now_seconds(),
            change=Change("certificate_renewed", actor),
        )
    return signer.pass_type_id, created, warnings


def pass_type_problems(row: sa.Row[Any], sealer: Sealer) -> list[dict[str, str]]:
    """What would make Wallet reject this pass type's passes (errors), or may (warnings)."""
    problems: list[Problem] = []
    key_pem: bytes | None
    try:
        key_pem = sealer.open(row.private_key_encrypted)
    except ValueError:
        key_pem = None
        problems.append(
            Problem(
                "The stored private key cannot be decrypted: PASSHOUSE_SECRET_KEY is not the "
                "key it was stored with. Set that key, or add the certificate again."
            )
        )
    check = check_credentials_in_detail(
        row.certificate_pem.encode(),
        key_pem,
        row.wwdr_pem.encode() if row.wwdr_pem else None,
        wwdr_option="wwdr_pem (API) or --wwdr (`passhouse pass-type add`)",
    )
    problems.extend(check.problems)
    return [{"severity": p.severity, "message": p.message} for p in problems]


def _unpack_credentials(credentials: Credentials) -> tuple[bytes, bytes, bytes | None]:
    """(certificate PEM, unencrypted PKCS#8 key PEM, WWDR PEM or None)."""
    if credentials.p12 is not None:
        cert_pem, key_pem, chain_pem = load_p12(credentials.p12, credentials.p12_password)
        return cert_pem, key_pem, credentials.wwdr_pem or chain_pem
    if credentials.certificate_pem is None or credentials.private_key_pem is None:
        raise InvalidInput(
            "Give either p12_base64 (with p12_password) or certificate_pem and private_key_pem."
        )
    key = load_private_key(credentials.private_key_pem, credentials.private_key_password)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return credentials.certificate_pem, key_pem, credentials.wwdr_pem


def _checked_signer(cert_pem: bytes, key_pem: bytes, wwdr_pem: bytes | None) -> PassSigner:
    signer = PassSigner.from_pem(cert_pem, key_pem, wwdr_pem)
    # Signing once proves the key and certificate work together before anything is stored.
    signer.sign(b"passhouse credentials check")
    return signer


def _apns_token_values(credentials: Credentials, sealer: Sealer) -> dict[str, Any]:
    given = [credentials.apns_key_p8, credentials.apns_key_id, credentials.apns_team_id]
    if all(value is None for value in given):
        return {"apns_key_id": None, "apns_team_id": None, "apns_key_encrypted": None}
    if any(value is None for value in given):
        raise InvalidInput(
            "APNs token authentication needs all three of apns_key_p8, apns_key_id and "
            "apns_team_id."
        )
    assert credentials.apns_key_p8 is not None
    try:
        serialization.load_pem_private_key(credentials.apns_key_p8, password=None)
    except (ValueError, TypeError):
        raise InvalidInput(
            "apns_key_p8 is not a readable .p8 key: paste the whole file, BEGIN/END lines included."
        ) from None
    return {
        "apns_key_id": credentials.apns_key_id,
        "apns_team_id": credentials.apns_team_id,
        "apns_key_encrypted": sealer.seal(credentials.apns_key_p8),
    }


async def delete_pass_type(conn: AsyncConnection, pass_type_id: str) -> None:
    if await pass_types.get_pass_type(conn, pass_type_id) is None:
        raise NotFound(f"No pass type {pass_type_id!r}.")
    if await pass_types.is_in_use(conn, pass_type_id):
        raise Conflict(
            f"Pass type {pass_type_id!r} still has templates or passes; delete those first."
        )
    await pass_types.delete_pass_type(conn, pass_type_id)


def certificate_summary(certificate_pem: str) -> dict[str, Any]:
    cert = load_certificate(certificate_pem.encode())
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "sha256": hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest(),
    }
