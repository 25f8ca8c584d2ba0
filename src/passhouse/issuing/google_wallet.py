"""Google Wallet use cases: issuer accounts, template opt-ins, queueing object syncs, save
links, callbacks. The twin of issuing.py for the second wallet; issuing.py calls in here
with one line where a change must reach Google too.

Everything queued here is written in the caller's transaction (the outbox rule).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from passhouse.errors import Conflict, InvalidInput, NotFound
from passhouse.google import ids
from passhouse.google.callbacks import CallbackEvent, CallbackRejected, verify_callback
from passhouse.google.render import GoogleConfig, GoogleConfigError, parse_config, render_class
from passhouse.google.render import render_object as render_google_object
from passhouse.google.service_account import (
    ServiceAccount,
    ServiceAccountError,
    load_service_account,
    save_jwt,
    save_url,
)
from passhouse.pkpass.report import Report
from passhouse.pkpass.template import Template
from passhouse.push.google import GoogleWalletClient, credentials_problem
from passhouse.settings import Settings
from passhouse.storage import google_wallet as store
from passhouse.storage.database import Database
from passhouse.storage.sealing import Sealer
from passhouse.storage.tables import google_objects

GOOGLE_JSON = "google.json"
IMAGE_NAMES = ("logo", "strip", "thumbnail", "icon")
CALLBACK_PATH = "/google/v1/callbacks"
IMAGE_PATH = "/google/v1/images"
# Used to check a template's Google section before any pass exists.
_SAMPLE_IMAGE = "https://images.example/sample.png"


def _now_ms() -> int:
    return int(time.time() * 1000)


# --- issuer accounts ---------------------------------------------------------------------


def _account(info: Any) -> ServiceAccount:
    try:
        return load_service_account(info)
    except ServiceAccountError as error:
        raise InvalidInput(str(error)) from None


async def check_credentials(
    client: GoogleWalletClient, account: ServiceAccount, issuer_id: str
) -> str | None:
    """One sentence on what is wrong with these credentials for this issuer, or None.

    A token proves the key; listing the issuer's classes proves the console invitation.
    """
    token = await client.fetch_token(account)
    problem = credentials_problem(token, account)
    if problem is not None:
        return problem
    answer = await client.request(account, "GET", f"genericClass?issuerId={issuer_id}&maxResults=1")
    return credentials_problem(answer, account)


async def add_issuer(
    database: Database,
    sealer: Sealer,
    client: GoogleWalletClient,
    *,
    issuer_id: str,
    service_account: Any,
) -> tuple[sa.Row[Any], bool]:
    """Check the credentials with Google, then store them; (row, created).

    Google is asked before the transaction opens, so no database lock waits on it.
    """
    if not ids.is_issuer_id(issuer_id):
        raise InvalidInput(
            "issuer_id must be the issuer's number from the Google Pay & Wallet Console."
        )
    account = _account(service_account)
    problem = await check_credentials(client, account, issuer_id)
    if problem is not None:
        raise InvalidInput(problem)
    async with database.transaction() as conn:
        created = await store.save_issuer(
            conn,
            {
                "issuer_id": issuer_id,
                "client_email": account.client_email,
                "private_key_id": account.private_key_id,
                "token_uri": account.token_uri,
                "project_id": account.project_id,
                "private_key_encrypted": sealer.seal(account.private_key_pem),
                "created_at": int(time.time()),
            },
        )
        row = await store.get_issuer(conn, issuer_id)
    assert row is not None
    return row, created


async def delete_issuer(conn: AsyncConnection, issuer_id: str) -> None:
    if await store.get_issuer(conn, issuer_id) is None:
        raise NotFound(f"No Google issuer {issuer_id!r}.")
    in_use = await store.issuer_in_use(conn, issuer_id)
    if in_use:
        raise Conflict(
            f"Google issuer {issuer_id!r} is used by {in_use} template(s); they keep their "
            "Google objects up to date with it."
        )
    await store.delete_issuer(conn, issuer_id)


def issuer_view(row: sa.Row[Any]) -> dict[str, Any]:
    return {
        "issuer_id": row.issuer_id,
        "client_email": row.client_email,
        "private_key_id": row.private_key_id,
        "project_id": row.project_id,
        "token_uri": row.token_uri,
        "created_at": dt.datetime.fromtimestamp(row.created_at, dt.UTC)
        .isoformat()
        .replace("+00:00", "Z"),
    }


def account_of(row: sa.Row[Any], sealer: Sealer) -> ServiceAccount:
    return ServiceAccount(
        client_email=row.client_email,
        private_key_pem=sealer.open(row.private_key_encrypted),
        private_key_id=row.private_key_id,
        token_uri=row.token_uri,
        project_id=row.project_id,
    )


# --- templates ---------------------------------------------------------------------------


def split_google_json(
    assets: Mapping[str, bytes], google: Mapping[str, Any] | None
) -> tuple[dict[str, bytes], Mapping[str, Any] | None]:
    """A template folder's or zip's google.json taken out of its assets (it is not part of
    the Apple pass), as the `google` section."""
    kept = dict(assets)
    raw = kept.pop(GOOGLE_JSON, None)
    if raw is None:
        return kept, google
    if google is not None:
        raise InvalidInput(
            "Give the Google section either as `google` or as google.json, not both."
        )
    try:
        section = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidInput(f"google.json: not valid JSON ({error}).") from None
    if not isinstance(section, dict):
        raise InvalidInput("google.json: must be a JSON object.")
    return kept, section


def _best_images(assets: Mapping[str, bytes]) -> dict[str, bytes]:
    """The largest variant of each image Google can show (logo@3x.png before logo.png)."""
    found = {}
    for name in IMAGE_NAMES:
        for variant in (f"{name}@3x.png", f"{name}@2x.png", f"{name}.png"):
            if variant in assets:
                found[name] = assets[variant]
                break
    return found


def image_urls(public_url: str, images: Mapping[str, str]) -> dict[str, str]:
    return {name: f"{public_url}{IMAGE_PATH}/{digest}.png" for name, digest in images.items()}


class _SampleData(dict[str, Any]):
    """Pass data that has every key: a template's object is checked before any pass exists."""

    def __contains__(self, key: object) -> bool:
        return True

    def __getitem__(self, key: str) -> Any:
        return "sample"


def _config(section: Any, pass_json: Mapping[str, Any]) -> GoogleConfig:
    try:
        return parse_config(section, pass_json)
    except GoogleConfigError as error:
        raise InvalidInput(
            "The Google section has problems: " + "; ".join(error.problems)
        ) from None


def check_template(
    config: GoogleConfig, template_id: int, pass_json: Mapping[str, Any], images: Mapping[str, Any]
) -> Report:
    """Class and (a sample of the) object problems of a template's Google section."""
    sample_images = {name: _SAMPLE_IMAGE for name in images}
    _, report = render_class(
        config, pass_json, sample_images, template_id=template_id, callback_url=_SAMPLE_IMAGE
    )
    sample = Template(dict(pass_json), {}).render(_SampleData())[0]
    _, object_report = render_google_object(
        config,
        sample,
        _SampleData(),
        sample_images,
        template_id=template_id,
        pass_type_id="pass.sample",  # noqa: S106 - an id, not a password
        serial_number="sample",
        voided=False,
        now=dt.datetime.now(dt.UTC),
    )
    report.extend(object_report)
    return report


async def save_template(
    conn: AsyncConnection,
    template_id: int,
    pass_json: Mapping[str, Any],
    assets: Mapping[str, bytes],
    google: Mapping[str, Any] | None,
) -> None:
    """Opt a template in (or take its new pass.json and images): check, store, queue the
    class and every object of it. Without `google`, a template that is not opted in is
    left alone, and one that is keeps its section."""
    current = await store.get_template_config(conn, template_id)
    if google is None and current is None:
        return
    section = google if google is not None else current.config  # type: ignore[union-attr]
    config = _config(section, pass_json)
    if current is not None and (config.issuer_id, config.type) != (current.issuer_id, current.type):
        raise Conflict(
            "A template's Google issuer and type cannot change: its objects live under "
            f"{current.issuer_id} as {current.type}; create a new template instead."
        )
    if await store.get_issuer(conn, config.issuer_id) is None:
        raise NotFound(
            f"No Google issuer {config.issuer_id!r}: add it first (passhouse google-issuer add)."
        )
    images = _best_images(assets)
    report = check_template(config, template_id, pass_json, images)
    if report.errors:
        raise InvalidInput("The Google section has problems: " + "; ".join(report.errors))
    digests = {name: hashlib.sha256(data).hexdigest() for name, data in images.items()}
    now = _now_ms()
    await store.store_images(
        conn, {digests[name]: data for name, data in images.items()}, now=now // 1000
    )
    await store.save_template_config(
        conn,
        template_id,
        {
            "issuer_id": config.issuer_id,
            "type": config.type,
            "config": config.as_json(),
            "images": digests,
            "class_id": ids.class_id(config.issuer_id, template_id),
        },
    )
    await store.enqueue_class(conn, template_id, now_ms=now)
    await store.add_objects_for_template(
        conn,
        template_id,
        lambda row: ids.object_id(config.issuer_id, row.pass_type_id, row.serial_number),
    )
    await store.enqueue_objects(conn, google_objects.c.template_id == template_id, now_ms=now)


async def template_view(
    conn: AsyncConnection, template_id: int, pass_json: Mapping[str, Any]
) -> dict[str, Any] | None:
    row = await store.get_template_config(conn, template_id)
    if row is None:
        return None
    config = _config(row.config, pass_json)
    report = check_template(config, template_id, pass_json, row.images)
    return {
        "issuer_id": row.issuer_id,
        "type": row.type,
        "class_id": row.class_id,
        "class_synced": row.synced_revision >= row.revision,
        "error": _error(row),
        "warnings": report.warnings,
        "config": row.config,
    }


def _error(row: sa.Row[Any]) -> dict[str, Any] | None:
    if row.error_status is None and row.error_reason is None:
        return None
    return {"status": row.error_status, "reason": row.error_reason, "message": row.error_message}


# --- passes ------------------------------------------------------------------------------


async def pass_issued(conn: AsyncConnection, pass_row: sa.Row[Any]) -> None:
    """A new pass of an opted-in template gets its object, inserted through the queue."""
    config = await store.get_template_config(conn, pass_row.template_id)
    if config is None:
        return
    await store.add_object(
        conn,
        pass_id=pass_row.id,
        template_id=pass_row.template_id,
        object_id=ids.object_id(config.issuer_id, pass_row.pass_type_id, pass_row.serial_number),
    )
    await store.enqueue_objects(conn, google_objects.c.pass_id == pass_row.id, now_ms=_now_ms())


async def passes_issued(
    conn: AsyncConnection, template_id: int, pass_rows: Sequence[sa.Row[Any]]
) -> None:
    """pass_issued for many new passes of one template (batches and imports), set-based."""
    config = await store.get_template_config(conn, template_id) if pass_rows else None
    if config is None:
        return
    await store.add_objects(
        conn,
        [
            {
                "pass_id": row.id,
                "template_id": template_id,
                "object_id": ids.object_id(config.issuer_id, row.pass_type_id, row.serial_number),
            }
            for row in pass_rows
        ],
    )
    pass_ids = [row.id for row in pass_rows]
    await store.enqueue_objects(conn, google_objects.c.pass_id.in_(pass_ids), now_ms=_now_ms())


async def passes_changed(conn: AsyncConnection, pass_ids: Sequence[int]) -> None:
    """pass_changed for many passes (bulk updates and upserts), one INSERT ... SELECT."""
    if pass_ids:
        where = google_objects.c.pass_id.in_(list(pass_ids))
        await store.enqueue_objects(conn, where, now_ms=_now_ms())


async def pass_changed(conn: AsyncConnection, pass_id: int) -> None:
    """A change of a pass (data, void, personalization) is written to its object."""
    await store.enqueue_objects(conn, google_objects.c.pass_id == pass_id, now_ms=_now_ms())


async def pass_view(
    conn: AsyncConnection, settings: Settings, sealer: Sealer, pass_row: sa.Row[Any]
) -> dict[str, Any] | None:
    """The pass's Google state, and its save link: `urls.google`."""
    obj = await store.get_object(conn, pass_row.id)
    if obj is None:
        return None
    config = await store.get_template_config(conn, pass_row.template_id)
    issuer = await store.get_issuer(conn, config.issuer_id) if config else None
    link = None
    if config is not None and issuer is not None:
        token = save_jwt(
            account_of(issuer, sealer),
            config.type,
            obj.object_id,
            origins=[settings.public_url],
            now=int(time.time()),
        )
        link = save_url(settings.google_save_url, token)
    return {
        "save_url": link,
        "object_id": obj.object_id,
        "status": obj.status,
        "synced_version": obj.synced_version,
        "up_to_date": obj.synced_version == pass_row.version,
        "last_sync_at": _iso_ms(obj.synced_at_ms),
        "error": _error(obj),
        "saves": obj.saves,
        "deletes": obj.deletes,
        "saved": obj.saved,
        "notifications_last_24h": len(_recent(obj.notify_times)),
    }


def _recent(times: Any, now_ms: int | None = None) -> list[int]:
    now_ms = now_ms or _now_ms()
    return [int(t) for t in times or () if now_ms - int(t) < 86_400_000]


def _iso_ms(value: int | None) -> str | None:
    if value is None:
        return None
    return dt.datetime.fromtimestamp(value // 1000, dt.UTC).isoformat().replace("+00:00", "Z")


# --- callbacks ---------------------------------------------------------------------------


async def apply_callback(
    conn: AsyncConnection, body: Any, *, root_keys: list[str]
) -> tuple[str, CallbackEvent | None]:
    """Verify a save/delete callback and record it once; ("applied" | "duplicate" |
    "unknown object", event). Raises InvalidInput when it does not verify."""
    issuers = await store.issuer_ids(conn)
    now = _now_ms()
    try:
        _, event = verify_callback(body, issuer_ids=issuers, root_keys=root_keys, now_ms=now)
    except CallbackRejected as error:
        raise InvalidInput(f"The callback does not verify: {error}.") from None
    if not await store.first_use_of_nonce(conn, event.nonce[:255], now_ms=now):
        return "duplicate", event
    found = await store.record_event(
        conn, event.object_id, saved=event.event_type == "save", now_ms=now
    )
    return ("applied" if found else "unknown object"), event
