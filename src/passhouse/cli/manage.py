"""`template list|show|remove` and `pass list|show|history|download`: looking at what is
stored.

List and show commands print lines for people, or with --json one JSON document on
stdout for scripts (the `database: ...` line stays on stderr).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from passhouse import history, issuing, lifecycle
from passhouse.bootstrap import Runtime, open_runtime
from passhouse.cli.server import (
    in_transaction,
    load_settings,
    pass_group,
    run,
    template_group,
    uses_database,
)
from passhouse.errors import NotFound
from passhouse.pkpass.template import Template
from passhouse.settings import Settings
from passhouse.storage import migrate, passes, templates

F = TypeVar("F", bound=Callable[..., Any])

# Pages read from the database while listing every pass; the output streams page by page.
_PAGE = 500


def _json_option(command: F) -> F:
    option = click.option(
        "--json", "as_json", is_flag=True, help="Print JSON (for scripts) instead of lines."
    )
    return option(command)


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def _iso(seconds: int | None) -> str | None:
    return None if seconds is None else issuing.iso_time(seconds)


# --- templates --------------------------------------------------------------------------


async def _template_record(
    conn: AsyncConnection, row: sa.Row[Any], *, full: bool = False
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": row.id,
        "name": row.name,
        "pass_type_id": row.pass_type_id,
        "revision": row.revision,
        "pass_count": await templates.count_passes(conn, row.id),
        "created_at": _iso(row.created_at),
        "updated_at": _iso(row.updated_at),
    }
    if full:
        assets = await templates.get_assets(conn, row.id)
        template = Template(dict(row.pass_json), assets, name=row.name)
        record["placeholders"] = sorted(template.placeholders())
        record["assets"] = sorted(assets)
        record["pass_json"] = row.pass_json
    return record


@template_group.command("list")
@_json_option
@uses_database
def template_list(as_json: bool) -> None:
    """List templates: id, name, pass type, revision and how many passes use each."""

    async def action(_runtime: Runtime, conn: AsyncConnection) -> list[dict[str, Any]]:
        return [await _template_record(conn, row) for row in await templates.list_templates(conn)]

    records = run(in_transaction(load_settings(), action))
    if as_json:
        _print_json(records)
        return
    if not records:
        click.echo("no templates (add one with `passhouse template add`)")
    for record in records:
        click.echo(
            f"{record['id']}  {record['name']}  {record['pass_type_id']}  "
            f"revision {record['revision']}  {record['pass_count']} passes"
        )


@template_group.command("show")
@click.argument("ref")
@_json_option
@uses_database
def template_show(ref: str, as_json: bool) -> None:
    """Show a template (by name or id): its placeholders, files and pass.json."""

    async def action(_runtime: Runtime, conn: AsyncConnection) -> dict[str, Any]:
        row = await templates.get_template(conn, ref)
        if row is None:
            raise NotFound(f"No template {ref!r} (see `passhouse template list`).")
        return await _template_record(conn, row, full=True)

    record = run(in_transaction(load_settings(), action))
    if as_json:
        _print_json(record)
        return
    click.echo(f"template {record['name']} (id {record['id']}, revision {record['revision']})")
    click.echo(f"  pass type:    {record['pass_type_id']}")
    click.echo(f"  passes:       {record['pass_count']}")
    click.echo(f"  placeholders: {', '.join(record['placeholders']) or 'none'}")
    click.echo(f"  files:        pass.json, {', '.join(record['assets'])}")
    click.echo(f"  updated:      {record['updated_at']}")
    click.echo(json.dumps(record["pass_json"], indent=2, ensure_ascii=False))


@template_group.command("remove")
@click.argument("ref")
@uses_database
def template_remove(ref: str) -> None:
    """Remove a template no pass was issued from (passes keep their template)."""

    async def action(_runtime: Runtime, conn: AsyncConnection) -> str:
        row = await templates.get_template(conn, ref)
        await issuing.delete_template(conn, ref)
        assert row is not None  # delete_template said so otherwise
        return str(row.name)

    click.echo(f"removed template {run(in_transaction(load_settings(), action))}")


# --- passes -----------------------------------------------------------------------------


def _pass_record(row: sa.Row[Any], template_name: str, public_url: str) -> dict[str, Any]:
    base = f"{public_url}/api/v1/passes/{row.pass_type_id}/{row.serial_number}"
    return {
        "pass_type_id": row.pass_type_id,
        "serial_number": row.serial_number,
        "template": template_name,
        "version": row.version,
        "data": row.data,
        "voided": row.voided,
        **lifecycle.pass_state(row),
        "personalized": row.personalization is not None,
        "created_at": _iso(row.created_at),
        "modified_at": _iso(row.modified_at),
        "urls": {"pkpass": f"{base}/pkpass", "share": f"{public_url}/p/{row.share_id}"},
    }


def _state(record: dict[str, Any]) -> str:
    if record["retired"]:
        return "retired"
    if record["voided"]:
        return "voided"
    return "expired" if record["expired"] else "active"


@pass_group.command("list")
@click.option("--template", help="Only the passes of this template (name or id).")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many (default: all).")
@_json_option
@uses_database
def pass_list(template: str | None, limit: int | None, as_json: bool) -> None:
    """List passes, oldest first: pass type, serial, template, version, state."""
    settings = load_settings()

    async def action(_runtime: Runtime, conn: AsyncConnection) -> list[dict[str, Any]]:
        template_id = None
        if template is not None:
            template_row = await templates.get_template(conn, template)
            if template_row is None:
                raise NotFound(f"No template {template!r} (see `passhouse template list`).")
            template_id = template_row.id
        names = {row.id: row.name for row in await templates.list_templates(conn)}
        records: list[dict[str, Any]] = []
        after_id = None
        while limit is None or len(records) < limit:
            page = _PAGE if limit is None else min(_PAGE, limit - len(records))
            rows = await passes.list_passes(
                conn, template_id=template_id, after_id=after_id, limit=page
            )
            records.extend(
                _pass_record(row, names.get(row.template_id, ""), settings.public_url)
                for row in rows
            )
            if len(rows) < page:
                break
            after_id = rows[-1].id
        return records

    records = run(in_transaction(settings, action))
    if as_json:
        _print_json(records)
        return
    if not records:
        click.echo("no passes (issue one with `passhouse pass issue`)")
    for record in records:
        click.echo(
            f"{record['pass_type_id']}  {record['serial_number']}  {record['template']}  "
            f"version {record['version']}  {_state(record)}  modified {record['modified_at']}"
        )


@pass_group.command("show")
@click.argument("pass_type_id")
@click.argument("serial")
@_json_option
@uses_database
def pass_show(pass_type_id: str, serial: str, as_json: bool) -> None:
    """Show a pass: its data, state, version, links and registered devices."""
    settings = load_settings()

    async def action(_runtime: Runtime, conn: AsyncConnection) -> dict[str, Any]:
        row = await issuing.get_pass_or_404(conn, pass_type_id, serial)
        template_row = await templates.get_template(conn, row.template_id)
        name = template_row.name if template_row is not None else str(row.template_id)
        record = _pass_record(row, name, settings.public_url)
        devices, _ = await issuing.list_registrations(conn, row.id, after_device_id=None, limit=100)
        record["devices"] = devices
        return record

    record = run(in_transaction(settings, action))
    if as_json:
        _print_json(record)
        return
    personalized = ", personalized" if record["personalized"] else ""
    click.echo(
        f"pass {record['pass_type_id']} {record['serial_number']} "
        f"({_state(record)}{personalized}, version {record['version']})"
    )
    click.echo(f"  template:  {record['template']}")
    click.echo(f"  modified:  {record['modified_at']}")
    click.echo(f"  download:  {record['urls']['pkpass']} (admin API key)")
    click.echo(f"  share:     {record['urls']['share']}")
    apps = Counter(device["app"] for device in record["devices"])
    by_app = ", ".join(f"{app} {count}" for app, count in sorted(apps.items()))
    click.echo(f"  devices:   {len(record['devices'])}" + (f" ({by_app})" if by_app else ""))
    click.echo("  data:      " + json.dumps(record["data"], ensure_ascii=False))


@pass_group.command("history")
@click.argument("pass_type_id")
@click.argument("serial")
@click.option(
    "--limit",
    type=click.IntRange(min=1, max=500),
    default=20,
    show_default=True,
    help="The newest this many versions.",
)
@_json_option
@uses_database
def pass_history(pass_type_id: str, serial: str, limit: int, as_json: bool) -> None:
    """Show a pass's versions, newest first: when, why, by whom, what changed."""
    settings = load_settings()

    async def action(_runtime: Runtime, conn: AsyncConnection) -> dict[str, Any]:
        return await history.list_versions(conn, pass_type_id, serial, cursor=None, limit=limit)

    page = run(in_transaction(settings, action))
    if as_json:
        _print_json(page["items"])
        return
    if not page["items"]:
        click.echo(f"no recorded versions of {serial} (issued before the history was kept)")
    for item in page["items"]:
        click.echo(f"version {item['version']}  {item['at']}  {item['cause']}  by {item['by']}")
        for line in _change_lines(item["changes"]):
            click.echo(f"    {line}")
    if page["next_cursor"]:
        click.echo(f"(older versions: --limit {min(limit * 2, 500)} or the admin API)")


def _change_lines(changes: dict[str, Any]) -> list[str]:
    lines = []
    for entry in changes.get("data", []):
        old = json.dumps(entry["old"], ensure_ascii=False) if "old" in entry else None
        new = json.dumps(entry["new"], ensure_ascii=False) if "new" in entry else None
        if old is None:
            lines.append(f"{entry['key']}: set to {new}")
        elif new is None:
            lines.append(f"{entry['key']}: removed (was {old})")
        else:
            lines.append(f"{entry['key']}: {old} -> {new}")
    if changes.get("more_keys"):
        lines.append(f"and {changes['more_keys']} more keys")
    if "template" in changes:
        template = changes["template"]
        lines.append(f"template {template['name']} revision {template['revision']}")
    for flag in ("voided", "retired"):
        if changes.get(flag):
            lines.append(flag)
    if "personalization" in changes:
        lines.append("holder entered " + ", ".join(changes["personalization"]))
    return lines


@pass_group.command("download")
@click.argument("pass_type_id")
@click.argument("serial")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="File to write (default: SERIAL.pkpass here).",
)
@uses_database
def pass_download(pass_type_id: str, serial: str, output: Path | None) -> None:
    """Write a pass's current signed .pkpass, as the server would serve it."""
    settings = load_settings()
    target = output or Path(f"{serial}.pkpass")
    data = run(_download(settings, pass_type_id, serial))
    try:
        target.write_bytes(data)
    except OSError as error:
        raise click.ClickException(f"cannot write {target}: {error.strerror}") from None
    click.echo(f"wrote {target} ({len(data)} bytes)")
    if "public_url" not in settings.model_fields_set:
        # The file names the server in webServiceURL, read from the same setting.
        click.echo(
            f"warning: its webServiceURL uses the default address {settings.public_url}; set "
            "PASSHOUSE_PUBLIC_URL to your server's public URL",
            err=True,
        )


async def _download(settings: Settings, pass_type_id: str, serial: str) -> bytes:
    runtime = open_runtime(settings)
    try:
        await migrate.upgrade(runtime.database)
        async with runtime.database.reader() as conn:
            row = await issuing.get_pass_or_404(conn, pass_type_id, serial)
        builder = issuing.PassBuilder(runtime.sealer, settings.web_service_url)
        data, _ = await builder.pkpass(runtime.database, row.id, row.version)
        return data
    finally:
        await runtime.database.dispose()
