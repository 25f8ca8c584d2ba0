"""Use cases: the one place that combines pass files, storage and the push queue.

Every function runs inside the caller's transaction and never commits: a change, its new
version and its queued pushes are saved together or not at all.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import hashlib
import io
import json
import math
import secrets
import time
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from sqlalchemy.ext.asyncio import AsyncConnection

from passhouse import google_wallet
from passhouse.errors import AlreadyPersonalized, Conflict, InvalidInput, NotFound
from passhouse.metrics import PASSES_SIGNED
from passhouse.pkpass.bundle import build_pkpass
from passhouse.pkpass.certs import (
    Problem,
    check_credentials_in_detail,
    inspect_certificate,
    load_certificate,
    load_p12,
    load_private_key,
)
from passhouse.pkpass.errors import PkpassError
from passhouse.pkpass.json_input import DEFAULT_MAX_DEPTH, MAX_DEPTH_CAP, MAX_NUMBER_DIGITS
from passhouse.pkpass.pass_json import validate_pass_json
from passhouse.pkpass.signing import PassSigner
from passhouse.pkpass.template import Template
from passhouse.push import transports
from passhouse.storage import (
    pass_lifecycle,
    pass_types,
    passes,
    push_jobs,
    registrations,
    templates,
    webhooks,
)
from passhouse.storage.database import Database
from passhouse.storage.sealing import Sealer
from passhouse.storage.tables import passes as passes_table

# Keys the server owns in every pass.json: identity and the web service pair.
SERVER_KEYS = (
    "passTypeIdentifier",
    "teamIdentifier",
    "serialNumber",
    "authenticationToken",
    "webServiceURL",
)
MAX_SERIAL_LENGTH = 128


def storable_problem(value: Any, where: str, *, _depth: int = 0) -> str | None:
    """What neither JSON nor the database can hold in `value`, naming where it is; or None.

    Python's JSON reader accepts NaN, Infinity and unpaired surrogates; PostgreSQL text
    cannot hold NUL. Left in, they would fail on save or in every later download. Depth
    and number sizes are bounded by the cap no door's parser may exceed, so whatever is
    stored can always be read back and rendered.
    """
    if isinstance(value, str):
        if "\x00" in value:
            return f"{where} contains a NUL character"
        try:
            value.encode()
        except UnicodeEncodeError:
            return f"{where} contains an unpaired surrogate"
    elif isinstance(value, float):
        if not math.isfinite(value):
            return f"{where} is NaN or Infinity, not a finite number"
    elif isinstance(value, int):
        if abs(value) >= _TOO_MANY_DIGITS:
            return f"{where} is a number of more than {MAX_NUMBER_DIGITS} digits"
    elif isinstance(value, dict | list):
        if _depth >= MAX_DEPTH_CAP:
            return f"{where} is nested more than {MAX_DEPTH_CAP} levels deep"
        if isinstance(value, dict):
            for key, item in value.items():
                problem = storable_problem(key, where) or storable_problem(
                    item, f"{where}.{key}", _depth=_depth + 1
                )
                if problem:
                    return problem
        for index, item in enumerate(value if isinstance(value, list) else ()):
            problem = storable_problem(item, f"{where}[{index}]", _depth=_depth + 1)
            if problem:
                return problem
    return None


_TOO_MANY_DIGITS = 10**MAX_NUMBER_DIGITS


def _require_storable(value: Any, what: str) -> None:
    problem = storable_problem(value, what)
    if problem:
        raise InvalidInput(problem + ".")


def now_seconds() -> int:
    return int(time.time())


def now_ms() -> int:
    return int(time.time() * 1000)


def iso_time(seconds: int) -> str:
    """Unix seconds as the ISO 8601 UTC text the API shows (2026-11-22T14:00:00Z)."""
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat().replace("+00:00", "Z")


# --- pass types -------------------------------------------------------------------------


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
            conn, signer.pass_type_id, version=version, now=now_seconds()
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


# --- templates --------------------------------------------------------------------------


def decode_assets(encoded: Mapping[str, str]) -> dict[str, bytes]:
    assets = {}
    for name, value in encoded.items():
        try:
            assets[name] = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput(f"assets[{name!r}] is not valid base64.") from None
    return assets


def checked_template(
    name: str,
    pass_json: Mapping[str, Any],
    assets: Mapping[str, bytes],
    *,
    max_json_depth: int = DEFAULT_MAX_DEPTH,
) -> Template:
    if not name.strip() or not name.isprintable():
        raise InvalidInput("A template needs a non-empty name of printable characters.")
    _require_storable(pass_json, "pass_json")
    for asset_name in assets:
        parts = asset_name.split("/")
        if asset_name.startswith("/") or any(part in ("", ".", "..") for part in parts):
            raise InvalidInput(f"Asset name {asset_name!r} is not a plain relative path.")
        if asset_name in ("pass.json", "manifest.json", "signature"):
            raise InvalidInput(f"Asset name {asset_name!r} is reserved for the pass itself.")
    template = Template(dict(pass_json), dict(assets), name=name)
    report = template.check(max_json_depth=max_json_depth)
    if report.errors:
        raise InvalidInput("The template has problems: " + "; ".join(report.errors))
    return template


async def create_template(
    conn: AsyncConnection,
    *,
    name: str,
    pass_type_id: str,
    pass_json: Mapping[str, Any],
    assets: Mapping[str, bytes],
    max_json_depth: int = DEFAULT_MAX_DEPTH,
    google: Mapping[str, Any] | None = None,
) -> int:
    assets, google = google_wallet.split_google_json(assets, google)
    if await pass_types.get_pass_type(conn, pass_type_id) is None:
        raise NotFound(f"No pass type {pass_type_id!r}: add its certificate first.")
    if await templates.name_taken(conn, name):
        raise Conflict(f"A template named {name!r} already exists.")
    checked_template(name, pass_json, assets, max_json_depth=max_json_depth)
    template_id = await templates.create_template(
        conn,
        name=name,
        pass_type_id=pass_type_id,
        pass_json=pass_json,
        assets=assets,
        now=now_seconds(),
    )
    await google_wallet.save_template(conn, template_id, pass_json, assets, google)
    return template_id


async def replace_template(
    conn: AsyncConnection,
    ref: str,
    *,
    name: str | None,
    pass_json: Mapping[str, Any],
    assets: Mapping[str, bytes],
    max_json_depth: int = DEFAULT_MAX_DEPTH,
    pass_type_id: str | None = None,
    google: Mapping[str, Any] | None = None,
) -> tuple[int, int]:
    """Replace a template; every pass made from it gets a new version and a push.

    Returns (template id, number of passes changed). Set-based: one UPDATE for the
    passes and one INSERT ... SELECT for the pushes, whatever their number.
    """
    assets, google = google_wallet.split_google_json(assets, google)
    row = await _template_or_404(conn, ref)
    if pass_type_id is not None and pass_type_id != row.pass_type_id:
        # Its passes carry the pass type in their identity and signature.
        raise Conflict(
            f"A template cannot change pass type: {row.name!r} belongs to "
            f"{row.pass_type_id!r}; create a new template for {pass_type_id!r}."
        )
    new_name = name or row.name
    if await templates.name_taken(conn, new_name, except_id=row.id):
        raise Conflict(f"A template named {new_name!r} already exists.")
    checked_template(new_name, pass_json, assets, max_json_depth=max_json_depth)
    now = now_seconds()
    await templates.replace_template(
        conn, row.id, name=new_name, pass_json=pass_json, assets=assets, now=now
    )
    # The template may move its passes' expirationDate: a worker renders it again (ADR 0020).
    await pass_lifecycle.forget_template_expiry(conn, row.id)
    # The class once, and every object of the template, through the Google queue.
    await google_wallet.save_template(conn, row.id, pass_json, assets, google)
    if await templates.count_passes(conn, row.id) == 0:
        return row.id, 0
    version = await pass_types.next_version(conn, row.pass_type_id)
    changed = await passes.bump_template_passes(conn, row.id, version=version, now=now)
    await push_jobs.enqueue_for_template(conn, row.id, now_ms=now_ms())
    await webhooks.emit_pass_events(
        conn, "pass.updated", passes_table.c.template_id == row.id, now_ms=now_ms()
    )
    return row.id, changed


async def delete_template(conn: AsyncConnection, ref: str) -> None:
    row = await _template_or_404(conn, ref)
    count = await templates.count_passes(conn, row.id)
    if count:
        raise Conflict(f"Template {row.name!r} is used by {count} passes; it cannot be deleted.")
    await templates.delete_template(conn, row.id)


async def _template_or_404(conn: AsyncConnection, ref: str | int) -> sa.Row[Any]:
    row = await templates.get_template(conn, ref)
    if row is None:
        raise NotFound(f"No template {ref!r}.")
    return row


async def get_template_or_404(conn: AsyncConnection, ref: str) -> sa.Row[Any]:
    return await _template_or_404(conn, ref)


async def template_keys(
    conn: AsyncConnection, builder: PassBuilder, ref: str
) -> tuple[sa.Row[Any], list[str]]:
    """A template and the data keys every pass of it must carry: its placeholders, sorted."""
    row = await _template_or_404(conn, ref)
    template = await builder.template(conn, row)
    return row, sorted(template.placeholders())


async def template_counts(conn: AsyncConnection, template_id: int) -> tuple[int, int]:
    """(passes issued from a template, those of them on at least one device)."""
    return (
        await templates.count_passes(conn, template_id),
        await templates.count_installed_passes(conn, template_id),
    )


# --- passes -----------------------------------------------------------------------------


def _check_serial(serial_number: str) -> None:
    if not serial_number or len(serial_number) > MAX_SERIAL_LENGTH:
        raise InvalidInput(f"serial_number must be 1 to {MAX_SERIAL_LENGTH} characters.")
    if not all(c.isascii() and (c.isalnum() or c in "-_.~") for c in serial_number):
        # Serials travel in URL paths; Apple asks for short, URL-safe values.
        raise InvalidInput("serial_number may hold only letters, digits and - _ . ~")


async def issue_pass(
    conn: AsyncConnection,
    builder: PassBuilder,
    *,
    template_ref: str,
    data: Mapping[str, Any],
    serial_number: str | None = None,
) -> sa.Row[Any]:
    _require_storable(data, "data")
    template_row = await _template_or_404(conn, template_ref)
    serial_number = serial_number or secrets.token_hex(8)
    _check_serial(serial_number)
    pass_type_id = template_row.pass_type_id
    if await passes.serial_exists(conn, pass_type_id, serial_number):
        raise Conflict(f"Pass {serial_number!r} of {pass_type_id!r} already exists.")
    token = secrets.token_urlsafe(24)  # 192 bits; Apple asks for at least 16 characters
    rendered = await builder.check_renders(
        conn, template_row, serial_number=serial_number, token=token, data=data
    )
    version = await pass_types.next_version(conn, pass_type_id)
    now = now_seconds()
    pass_id = await passes.insert_pass(
        conn,
        {
            "pass_type_id": pass_type_id,
            "serial_number": serial_number,
            "template_id": template_row.id,
            "authentication_token": token,
            "share_id": secrets.token_urlsafe(16),
            "data": dict(data),
            "voided": False,
            "version": version,
            "modified_at": now,
            "created_at": now,
            "expires_at": expiry_of(rendered),
        },
    )
    await webhooks.emit_pass_events(
        conn, "pass.created", passes_table.c.id == pass_id, now_ms=now_ms()
    )
    row = await passes.get_pass_by_id(conn, pass_id)
    assert row is not None
    await google_wallet.pass_issued(conn, row)
    return row


async def get_pass_or_404(conn: AsyncConnection, pass_type_id: str, serial: str) -> sa.Row[Any]:
    row = await passes.get_pass(conn, pass_type_id, serial)
    if row is None:
        raise NotFound(f"No pass {serial!r} of {pass_type_id!r}.")
    return row


async def get_template_pass_or_404(
    conn: AsyncConnection, template_ref: str, serial: str
) -> tuple[sa.Row[Any], sa.Row[Any]]:
    """(template, pass) for a pass named by its template and serial, as PassNinja names it.

    Serials are unique per Apple pass type, which several templates may share: a pass
    made from another template of the same pass type is not found here.
    """
    template_row = await _template_or_404(conn, template_ref)
    row = await passes.get_pass(conn, template_row.pass_type_id, serial)
    if row is None or row.template_id != template_row.id:
        raise NotFound(f"No pass {serial!r} of template {template_row.name!r}.")
    return template_row, row


async def change_pass_data(
    conn: AsyncConnection,
    builder: PassBuilder,
    pass_type_id: str,
    serial_number: str,
    data: Mapping[str, Any],
    *,
    merge: bool,
) -> tuple[sa.Row[Any], bool]:
    """PATCH (a JSON Merge Patch, RFC 7396) or PUT (replace) a pass's data; (row, changed).

    A request that changes nothing makes no version and wakes no device: Apple asks to
    push only when a pass really changed.
    """
    _require_storable(data, "data")
    row = await get_pass_or_404(conn, pass_type_id, serial_number)
    if row.voided:
        raise Conflict(f"Pass {serial_number!r} is voided; it can no longer change.")
    new_data = merge_patch(row.data, data) if merge else dict(data)
    if new_data == row.data:
        return row, False
    template_row = await _template_or_404(conn, row.template_id)
    rendered = await builder.check_renders(
        conn,
        template_row,
        serial_number=serial_number,
        token=row.authentication_token,
        data=new_data,
        personalization=row.personalization,
    )
    lifecycle = {"expires_at": expiry_of(rendered)}
    return await _save_change(conn, row, data=new_data, lifecycle=lifecycle), True


def expiry_of(pass_json: Mapping[str, Any]) -> int | None:
    """The rendered expirationDate in Unix seconds; None when there is none (or it cannot
    be read: the pass check refuses such a date before anything is saved)."""
    value = pass_json.get("expirationDate")
    if not isinstance(value, str):
        return None
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:  # Apple's dates carry a zone; read a bare one as UTC
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp())


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396: objects merge key by key, at every depth; null removes; anything else replaces."""
    if not isinstance(patch, Mapping):
        return patch
    merged = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged


async def void_pass(
    conn: AsyncConnection, pass_type_id: str, serial_number: str
) -> tuple[sa.Row[Any], bool]:
    row = await get_pass_or_404(conn, pass_type_id, serial_number)
    if row.voided:
        return row, False
    return await _save_change(conn, row, voided=True, lifecycle={"voided_at": now_seconds()}), True


async def _save_change(
    conn: AsyncConnection,
    row: sa.Row[Any],
    *,
    data: Mapping[str, Any] | None = None,
    voided: bool | None = None,
    personalization: Mapping[str, Any] | None = None,
    lifecycle: Mapping[str, int | None] | None = None,
) -> sa.Row[Any]:
    version = await pass_types.next_version(conn, row.pass_type_id)
    updated = await passes.save_new_version(
        conn,
        row.id,
        version=version,
        now=now_seconds(),
        data=data,
        voided=voided,
        personalization=personalization,
        lifecycle=lifecycle,
    )
    if updated is None:  # personalization was given, and the pass already holds some
        # Raised before the pushes are queued; the caller's transaction rolls back the
        # version taken above, so nothing changes.
        raise AlreadyPersonalized(
            "This pass is already personalized; a pass can be personalized only once."
        )
    # Queued in the same transaction: devices hear about the change iff it is saved.
    await push_jobs.enqueue_for_pass(conn, row.id, now_ms=now_ms())
    event = "pass.voided" if voided else "pass.updated"
    await webhooks.emit_pass_events(conn, event, passes_table.c.id == row.id, now_ms=now_ms())
    await google_wallet.pass_changed(conn, row.id)
    return updated


PERSONALIZATION_KEYS = (
    "fullName",
    "givenName",
    "familyName",
    "emailAddress",
    "postalCode",
    "ISOCountryCode",
    "phoneNumber",
)


async def personalize_pass(
    conn: AsyncConnection,
    builder: PassBuilder,
    pass_row: sa.Row[Any],
    *,
    personalization_token: str,
    info: Mapping[str, str],
) -> bytes:
    """Store what the person entered and return the token signed with the pass certificate.

    The next download of the pass is the personalized one, without personalization.json.
    A pass is personalized once; later attempts raise AlreadyPersonalized (ADR 0010).
    """
    template_row = await _template_or_404(conn, pass_row.template_id)
    template = await builder.template(conn, template_row)
    if "personalization.json" not in template.assets:
        raise InvalidInput("This pass is not personalizable.")
    await _save_change(conn, pass_row, personalization=dict(info))
    signer = await builder.signer(conn, pass_row.pass_type_id)
    return signer.sign(personalization_token.encode())


async def list_registrations(
    conn: AsyncConnection, pass_id: int, *, after_device_id: int | None, limit: int
) -> tuple[list[dict[str, Any]], int | None]:
    """A page of a pass's registrations, and the device id to continue after."""
    rows = await registrations.registrations_for_pass(
        conn, pass_id, after_device_id=after_device_id, limit=limit
    )
    items = [
        {
            "device_library_id": _shorten(device_library_id),
            "push_token": _shorten(push_token),
            "registered_at": iso_time(int(registered_at_ms) // 1000),
            "transport": transport,
            "app": transports.APPS.get(transport, transport),
            "push_service": urlsplit(push_service_url).hostname if push_service_url else None,
        }
        for _, device_library_id, push_token, registered_at_ms, transport, push_service_url in rows
    ]
    return items, (int(rows[-1][0]) if rows else None)


async def recent_pushes(conn: AsyncConnection, pass_id: int) -> list[dict[str, Any]]:
    """The latest push attempts to the devices holding a pass, newest first."""
    return [
        {
            "at": iso_time(int(attempt["at_ms"]) // 1000),
            "outcome": attempt["outcome"],
            "status": attempt["status"],
            "reason": attempt["reason"],
            "latency_ms": attempt["latency_ms"],
            "push_token": _shorten(attempt["push_token"]),
            "transport": attempt["transport"],
        }
        for attempt in await push_jobs.recent_attempts_for_pass(conn, pass_id)
    ]


def _shorten(value: str) -> str:
    """A device credential (library id, push token) shortened: enough to tell them apart,
    not enough to use."""
    return value if len(value) <= 12 else f"{value[:8]}…{value[-4:]}"


def pass_json_of(pkpass: bytes) -> dict[str, Any]:
    """pass.json of a built .pkpass (for pages that show its description)."""
    with zipfile.ZipFile(io.BytesIO(pkpass)) as archive:
        loaded: dict[str, Any] = json.loads(archive.read("pass.json"))
    return loaded


async def republish_for_build_key(conn: AsyncConnection, key: str) -> dict[str, int]:
    """New versions for passes whose current signed file was built for another key.

    Run when a server starts: after PASSHOUSE_PUBLIC_URL changed, a device holding the old
    file would otherwise get a 304 for ever, and changed-serials would not list the pass.
    The new version moves Last-Modified forward and queues a push, so a device that still
    reaches the server (an old address kept during a move) fetches the file with the new
    webServiceURL. Returns pass type -> passes changed (ADR 0012).
    """
    counts = await passes.count_built_for_another_key(conn, key)
    now = now_seconds()
    for pass_type_id in counts:
        # Queued before the bump: afterwards the versions no longer match the cached files.
        await push_jobs.enqueue_for_built_for_another_key(conn, pass_type_id, key, now_ms=now_ms())
        version = await pass_types.next_version(conn, pass_type_id)
        await passes.bump_built_for_another_key(conn, pass_type_id, key, version=version, now=now)
    return counts


# --- building the signed file -----------------------------------------------------------


@dataclass(slots=True)
class _ByteBudgetCache:
    """LRU of values up to a total size in bytes."""

    budget: int
    _items: OrderedDict[Any, tuple[Any, int]] = field(default_factory=OrderedDict)
    _size: int = 0

    def get(self, key: Any) -> Any:
        item = self._items.get(key)
        if item is None:
            return None
        self._items.move_to_end(key)
        return item[0]

    def put(self, key: Any, value: Any, size: int) -> None:
        if size > self.budget:
            return
        old = self._items.pop(key, None)
        if old is not None:
            self._size -= old[1]
        self._items[key] = (value, size)
        self._size += size
        while self._size > self.budget:
            _, (_, evicted) = self._items.popitem(last=False)
            self._size -= evicted

    def discard_where(self, predicate: Any) -> None:
        for key in [k for k in self._items if predicate(k)]:
            self._size -= self._items.pop(key)[1]


def build_key(web_service_url: str) -> str:
    """A value naming everything that goes into a signed file besides the pass's version.

    The version covers the pass's data, template and certificate; the webServiceURL comes
    from the server's settings, so a server moved to another address must not serve (or
    answer 304 for) files built for the old one (ADR 0012).
    """
    inputs = json.dumps({"webServiceURL": web_service_url}, sort_keys=True)
    return hashlib.sha256(inputs.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class RenderChecked:
    """What a bulk job needs of one pass's render: why it would be invalid (None: it is
    valid), and its expires_at as issue_pass and change_pass_data record it."""

    problem: str | None
    expires_at: int | None = None


RenderCheck = Callable[..., RenderChecked]


class PassBuilder:
    """Renders and signs passes, caching templates, signers and signed bytes in memory.

    A .pkpass is signed once per (pass, version, build key): the bytes go to the
    pkpass_cache table (shared by every server process) and to an in-process LRU for the
    hot path.
    """

    def __init__(
        self, sealer: Sealer, web_service_url: str, *, cache_bytes: int = 256 * 1024 * 1024
    ) -> None:
        self._sealer = sealer
        self._web_service_url = web_service_url
        self.build_key = build_key(web_service_url)
        self._files = _ByteBudgetCache(cache_bytes)
        self._templates = _ByteBudgetCache(64 * 1024 * 1024)
        self._signers: dict[str, tuple[tuple[str, str | None, bytes], PassSigner]] = {}
        self._building: dict[tuple[int, int], asyncio.Future[tuple[bytes, int]]] = {}

    def cached_pkpass(self, pass_id: int, version: int) -> bytes | None:
        data: bytes | None = self._files.get((pass_id, version, self.build_key))
        return data

    async def pkpass(self, database: Database, pass_id: int, version: int) -> tuple[bytes, int]:
        """Signed bytes of a pass at `version` or newer, and the version they are of."""
        data = self.cached_pkpass(pass_id, version)
        if data is not None:
            return data, version
        # Single flight: concurrent downloads of one uncached version sign it once.
        key = (pass_id, version)
        pending = self._building.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[tuple[bytes, int]] = asyncio.get_running_loop().create_future()
        self._building[key] = future
        try:
            result = await self._load_or_build(database, pass_id, version)
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # retrieved here, so a lone caller does not leave it unread
            raise
        else:
            future.set_result(result)
            return result
        finally:
            del self._building[key]

    async def _load_or_build(
        self, database: Database, pass_id: int, version: int
    ) -> tuple[bytes, int]:
        # The pass, its credentials and any signed file in one round trip on the driver
        # (SQLAlchemy's async layer cost more than the signature: see docs/benchmarks.md).
        for _ in range(3):
            found = await database.hot.build_inputs(pass_id, self.build_key)
            if found is None:
                raise NotFound("The pass no longer exists.")
            key = (found.id, found.version, self.build_key)
            if found.cached is not None:
                self._files.put(key, found.cached, len(found.cached))
                return found.cached, found.version
            template = self._templates.get((found.template_id, found.template_revision))
            if template is None:
                async with database.reader() as conn:
                    template_row = await _template_or_404(conn, found.template_id)
                    if template_row.revision != found.template_revision:
                        continue  # edited meanwhile: the pass has a newer version now
                    template = await self.template(conn, template_row)
            stored = (found.certificate_pem, found.wwdr_pem, found.private_key_encrypted)
            signer = self._signer_for(found.pass_type_id, stored)
            pass_json, assets = self._render_with(
                template,
                found.pass_type_id,
                found.team_id,
                serial_number=found.serial_number,
                token=found.authentication_token,
                data=found.data,
                personalization=found.personalization,
                voided=found.voided,
                retired=found.retired,
            )
            PASSES_SIGNED.inc()
            # Built outside any transaction: signing must not hold SQLite's write lock.
            data = build_pkpass(pass_json, assets, signer)
            await database.hot.store_pkpass(found.id, found.version, self.build_key, data)
            self._files.put(key, data, len(data))
            return data, found.version
        raise Conflict("The pass's template keeps changing; try again.")

    async def build(self, conn: AsyncConnection, row: sa.Row[Any]) -> bytes:
        pass_json, assets = await self._render_row(conn, row)
        signer = await self.signer(conn, row.pass_type_id)
        PASSES_SIGNED.inc()
        return build_pkpass(pass_json, assets, signer)

    async def rendered_pass_json(self, conn: AsyncConnection, row: sa.Row[Any]) -> dict[str, Any]:
        """pass.json of a pass as its current version renders (nothing signed)."""
        pass_json, _ = await self._render_row(conn, row)
        return pass_json

    async def _render_row(
        self, conn: AsyncConnection, row: sa.Row[Any]
    ) -> tuple[dict[str, Any], dict[str, bytes]]:
        template_row = await _template_or_404(conn, row.template_id)
        return await self._render(
            conn,
            template_row,
            serial_number=row.serial_number,
            token=row.authentication_token,
            data=row.data,
            personalization=row.personalization,
            voided=row.voided,
            retired=row.retired_at is not None,
        )

    async def check_renders(
        self,
        conn: AsyncConnection,
        template_row: sa.Row[Any],
        *,
        serial_number: str,
        token: str,
        data: Mapping[str, Any],
        personalization: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Refuse data that would make an invalid pass, before anything is saved; returns
        the rendered pass.json."""
        pass_json, _ = await self._render(
            conn,
            template_row,
            serial_number=serial_number,
            token=token,
            data=data,
            personalization=personalization,
            voided=False,
        )
        report = validate_pass_json(pass_json)
        if report.errors:
            raise InvalidInput("The pass would be invalid: " + "; ".join(report.errors))
        return pass_json

    async def _render(
        self,
        conn: AsyncConnection,
        template_row: sa.Row[Any],
        *,
        serial_number: str,
        token: str,
        data: Mapping[str, Any],
        personalization: Mapping[str, Any] | None,
        voided: bool,
        retired: bool = False,
    ) -> tuple[dict[str, Any], dict[str, bytes]]:
        template = await self.template(conn, template_row)
        team_id = await pass_types.team_id(conn, template_row.pass_type_id)
        return self._render_with(
            template,
            template_row.pass_type_id,
            team_id,
            serial_number=serial_number,
            token=token,
            data=data,
            personalization=personalization,
            voided=voided,
            retired=retired,
        )

    async def render_checker(self, conn: AsyncConnection, template_row: sa.Row[Any]) -> RenderCheck:
        """check_renders for many passes of one template (bulk jobs): the template and team
        are read once, and the returned function (no I/O, safe in a thread) gives the
        reason a pass would be invalid (or None) with its rendered expiry."""
        template = await self.template(conn, template_row)
        team_id = await pass_types.team_id(conn, template_row.pass_type_id)

        def problem(
            serial_number: str,
            token: str,
            data: Mapping[str, Any],
            personalization: Mapping[str, Any] | None = None,
        ) -> RenderChecked:
            try:
                pass_json, _ = self._render_with(
                    template,
                    template_row.pass_type_id,
                    team_id,
                    serial_number=serial_number,
                    token=token,
                    data=data,
                    personalization=personalization,
                    voided=False,
                )
            except InvalidInput as error:
                return RenderChecked(error.message)
            report = validate_pass_json(pass_json)
            if report.errors:
                return RenderChecked("The pass would be invalid: " + "; ".join(report.errors))
            return RenderChecked(None, expiry_of(pass_json))

        return problem

    def _render_with(
        self,
        template: Template,
        pass_type_id: str,
        team_id: str | None,
        *,
        serial_number: str,
        token: str,
        data: Mapping[str, Any],
        personalization: Mapping[str, Any] | None,
        voided: bool,
        retired: bool = False,
    ) -> tuple[dict[str, Any], dict[str, bytes]]:
        overrides: dict[str, Any] = {
            "passTypeIdentifier": pass_type_id,
            "teamIdentifier": team_id,
            "serialNumber": serial_number,
            "authenticationToken": token,
            "webServiceURL": self._web_service_url,
        }
        if voided:
            overrides["voided"] = True
        if retired:
            # Apple's advice for passes the server is done with: a voided pass with neither
            # webServiceURL nor authenticationToken, so Wallet stops asking (ADR 0020).
            overrides.update(voided=True, webServiceURL=None, authenticationToken=None)
        render_data = dict(data)
        if personalization:
            render_data.setdefault("personalization", dict(personalization))
        try:
            return template.render(
                render_data, overrides=overrides, personalized=bool(personalization)
            )
        except PkpassError as error:
            raise InvalidInput(error.message) from None

    async def template(self, conn: AsyncConnection, template_row: sa.Row[Any]) -> Template:
        key = (template_row.id, template_row.revision)
        cached: Template | None = self._templates.get(key)
        if cached is not None:
            return cached
        assets = await templates.get_assets(conn, template_row.id)
        template = Template(dict(template_row.pass_json), assets, name=template_row.name)
        self._templates.discard_where(lambda k: k[0] == template_row.id)
        self._templates.put(key, template, sum(map(len, assets.values())) + 1024)
        return template

    async def signer(self, conn: AsyncConnection, pass_type_id: str) -> PassSigner:
        row = await pass_types.get_pass_type(conn, pass_type_id)
        if row is None:
            raise NotFound(f"No pass type {pass_type_id!r}.")
        # Keyed by everything the signer is made of: a renewal may change only the WWDR.
        stored = (row.certificate_pem, row.wwdr_pem, bytes(row.private_key_encrypted))
        return self._signer_for(pass_type_id, stored)

    def _signer_for(self, pass_type_id: str, stored: tuple[str, str | None, bytes]) -> PassSigner:
        cached = self._signers.get(pass_type_id)
        if cached is not None and cached[0] == stored:
            return cached[1]
        certificate_pem, wwdr_pem, key_encrypted = stored
        key_pem = self._sealer.open(key_encrypted)
        wwdr = wwdr_pem.encode() if wwdr_pem else None
        signer = PassSigner.from_pem(certificate_pem.encode(), key_pem, wwdr)
        self._signers[pass_type_id] = (stored, signer)
        return signer
