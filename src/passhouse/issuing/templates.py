"""Templates: checked, created, replaced (every pass gets a new version and a push),
deleted; their placeholder keys and pass counts.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from passhouse.errors import Conflict, InvalidInput, NotFound
from passhouse.issuing import google_wallet
from passhouse.issuing.building import PassBuilder
from passhouse.issuing.common import (
    _require_storable,
    _template_or_404,
    expiry_of,
    now_ms,
    now_seconds,
)
from passhouse.pkpass.json_input import DEFAULT_MAX_DEPTH
from passhouse.pkpass.template import Template
from passhouse.storage import pass_lifecycle, pass_types, passes, push_jobs, templates, webhooks
from passhouse.storage.pass_versions import Actor, Change
from passhouse.storage.tables import passes as passes_table


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
    actor: Actor,
) -> tuple[int, int]:
    """Replace a template; every pass made from it gets a new version and a push.

    Returns (template id, number of passes changed). Set-based: one UPDATE for the
    passes, one INSERT ... SELECT for their history rows (by `actor`, with the template's
    new revision) and one for the pushes, whatever their number.
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
    # The template may move its passes' expirationDate (ADR 0020): set here when it is the
    # same for every pass, else rendered again per pass by a worker.
    await pass_lifecycle.reset_template_expiry(
        conn,
        row.id,
        expiry_of(pass_json),
        per_pass=Template(dict(pass_json), {}).depends_on_data("expirationDate"),
    )
    # The class once, and every object of the template, through the Google queue.
    await google_wallet.save_template(conn, row.id, pass_json, assets, google)
    if await templates.count_passes(conn, row.id) == 0:
        return row.id, 0
    version = await pass_types.next_version(conn, row.pass_type_id)
    revision = {"id": row.id, "name": new_name, "revision": row.revision + 1}
    change = Change("template_changed", actor, {"template": revision})
    changed = await passes.bump_template_passes(
        conn, row.id, version=version, now=now, change=change
    )
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
