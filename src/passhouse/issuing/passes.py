"""Passes: issue, change data (merge patch or replace), void, personalize; the rendered
expiry; the devices and pushes of one pass.

Every function runs inside the caller's transaction and never commits: a change, its new
version and its queued pushes are saved together or not at all.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from passhouse.errors import AlreadyPersonalized, Conflict, InvalidInput, NotFound
from passhouse.issuing import google_wallet
from passhouse.issuing.building import PassBuilder
from passhouse.issuing.common import (
    MAX_SERIAL_LENGTH,
    _require_storable,
    _template_or_404,
    expiry_of,
    iso_time,
    now_ms,
    now_seconds,
)
from passhouse.push import transports
from passhouse.storage import pass_types, pass_versions, passes, push_jobs, registrations, webhooks
from passhouse.storage.pass_versions import Actor, Cause, Change
from passhouse.storage.tables import passes as passes_table


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
    actor: Actor,
) -> sa.Row[Any]:
    """Issue a pass; its first version is recorded as issued by `actor` (ADR 0029)."""
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
        change=Change("issued", actor),
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
    actor: Actor,
    cause: Cause = "data_changed",
) -> tuple[sa.Row[Any], bool]:
    """PATCH (a JSON Merge Patch, RFC 7396) or PUT (replace) a pass's data; (row, changed).

    A request that changes nothing makes no version and wakes no device: Apple asks to
    push only when a pass really changed. The new version is recorded with `cause`,
    `actor` and the changed keys.
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
    change = Change(cause, actor, pass_versions.data_changes(row.data, new_data))
    return await _save_change(conn, row, change, data=new_data, lifecycle=lifecycle), True


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
    conn: AsyncConnection,
    pass_type_id: str,
    serial_number: str,
    *,
    actor: Actor,
    cause: Cause = "voided",
) -> tuple[sa.Row[Any], bool]:
    row = await get_pass_or_404(conn, pass_type_id, serial_number)
    if row.voided:
        return row, False
    change = Change(cause, actor, {"voided": True})
    voided_at = {"voided_at": now_seconds()}
    return await _save_change(conn, row, change, voided=True, lifecycle=voided_at), True


async def _save_change(
    conn: AsyncConnection,
    row: sa.Row[Any],
    change: Change,
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
        change=change,
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
    # The history names the fields the holder filled in, not what they entered: that is
    # in the pass itself, and a history of personal data would outlive its erasure.
    change = Change("personalized", pass_versions.DEVICE, {"personalization": sorted(info)})
    await _save_change(conn, pass_row, change, personalization=dict(info))
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
