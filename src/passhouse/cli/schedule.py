"""`passhouse schedule add|list|cancel`: changes the workers apply later (ADR 0020)."""

from __future__ import annotations

import json
from typing import Any

import click
from sqlalchemy.ext.asyncio import AsyncConnection

from passhouse import lifecycle
from passhouse.bootstrap import Runtime
from passhouse.cli import main
from passhouse.cli.server import in_transaction, load_settings, run, uses_database
from passhouse.pkpass.json_input import JsonRejected, parse_json
from passhouse.pkpass.template import set_data_path
from passhouse.storage.scheduled_changes import STATUSES


@main.group("schedule")
def schedule_group() -> None:
    """Schedule a change to passes for later: the workers apply it at its time.

    A running worker (`passhouse serve` or `passhouse worker`) applies each change within
    about a second of its time, once, with a new version and a push, as `pass update`
    would; one whose time passed while no worker ran is applied when one starts.
    """


def _values(items: tuple[str, ...], what: str, max_depth: int) -> dict[str, Any]:
    """KEY=VALUE items, VALUE read as JSON when it parses (a dotted KEY nests for data)."""
    values: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key or "" in key.split("."):
            raise click.BadParameter(
                f"{item!r} is not KEY=VALUE (KEY may be a.b.c)", param_hint=what
            )
        try:
            value = parse_json(raw, max_depth=max_depth)
        except JsonRejected as error:
            raise click.BadParameter(f"{key}: {error.message}", param_hint=what) from None
        except ValueError:
            value = raw
        if what == "--set":
            set_data_path(values, key, value)
        else:
            values[key] = value
    return values


@schedule_group.command("add")
@click.option(
    "--at",
    "at_text",
    required=True,
    metavar="TIME",
    help="When: ISO 8601 with a zone, e.g. 2026-12-24T18:00:00+01:00 or ...Z.",
)
@click.option("--pass", "pass_ref", nargs=2, metavar="PASS_TYPE_ID SERIAL", help="One pass.")
@click.option("--template", help="Or every pass of this template (name or id) ...")
@click.option(
    "--where",
    multiple=True,
    metavar="KEY=VALUE",
    help="... whose data holds VALUE at the dotted KEY (repeatable; voided=true|false).",
)
@click.option(
    "--set",
    "fields",
    multiple=True,
    metavar="KEY=VALUE",
    help="Data to change (repeatable; VALUE read as JSON; null removes the key).",
)
@click.option("--void", is_flag=True, help="Void the passes instead of changing data.")
@uses_database
def schedule_add(
    at_text: str,
    pass_ref: tuple[str, str] | None,
    template: str | None,
    where: tuple[str, ...],
    fields: tuple[str, ...],
    void: bool,
) -> None:
    """Schedule a data change (--set) or a void (--void) of one pass or of a template's
    passes. Prints the change's id, for `schedule cancel`."""
    settings = load_settings()
    data = _values(fields, "--set", settings.json_max_depth) if fields else None
    request = lifecycle.ChangeRequest(
        at=lifecycle.parse_time(at_text),
        pass_type_id=pass_ref[0] if pass_ref else None,
        serial_number=pass_ref[1] if pass_ref else None,
        template=template,
        where=_values(where, "--where", settings.json_max_depth) if where else None,
        data=data,
        void=void,
    )

    async def action(_runtime: Runtime, conn: AsyncConnection) -> dict[str, Any]:
        row = await lifecycle.schedule_change(conn, request)
        return lifecycle.change_view(row, await lifecycle.template_names(conn))

    view = run(in_transaction(settings, action))
    click.echo(f"scheduled change {view['id']} for {view['at']}: {_describe(view)}")


def _describe(view: dict[str, Any]) -> str:
    what = "void" if view["void"] else "set " + json.dumps(view["data"], ensure_ascii=False)
    if view["serial_number"] is not None:
        target = f"{view['pass_type_id']} {view['serial_number']}"
    else:
        where = json.dumps(view["where"], ensure_ascii=False) if view["where"] else "all"
        target = f"template {view['template']} where {where}"
    return f"{what} on {target}"


@schedule_group.command("list")
@click.option("--status", type=click.Choice(STATUSES), help="Only the changes in this state.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts) instead of lines.")
@uses_database
def schedule_list(status: str | None, as_json: bool) -> None:
    """List scheduled changes, oldest first: id, state, time, what, and the outcome."""
    settings = load_settings()

    async def action(_runtime: Runtime, conn: AsyncConnection) -> list[dict[str, Any]]:
        names = await lifecycle.template_names(conn)
        views: list[dict[str, Any]] = []
        after_id = None
        while True:
            rows = await lifecycle.list_changes(conn, status=status, after_id=after_id, limit=500)
            views.extend(lifecycle.change_view(row, names) for row in rows)
            if len(rows) < 500:
                return views
            after_id = rows[-1].id

    views = run(in_transaction(settings, action))
    if as_json:
        click.echo(json.dumps(views, indent=2, ensure_ascii=False))
        return
    if not views:
        click.echo("no scheduled changes (add one with `passhouse schedule add`)")
    for view in views:
        outcome = ""
        if view["status"] == "applied":
            outcome = f"  ({view['passes_changed']} changed, {view['passes_failed']} failed)"
        elif view["status"] == "failed":
            outcome = f"  ({view['error']})"
        click.echo(f"{view['id']}  {view['status']}  {view['at']}  {_describe(view)}{outcome}")


@schedule_group.command("cancel")
@click.argument("change_id", type=click.IntRange(min=1, max=2**63 - 1))
@uses_database
def schedule_cancel(change_id: int) -> None:
    """Cancel a pending change (an applied one cannot be cancelled)."""

    async def action(_runtime: Runtime, conn: AsyncConnection) -> Any:
        return await lifecycle.cancel_change(conn, change_id)

    run(in_transaction(load_settings(), action))
    click.echo(f"cancelled scheduled change {change_id}")
