"""`passhouse webhook add|list|show|update|remove|deliveries|ping`: the admin API's
webhooks from a terminal (the same use cases, webhooks/manage.py)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from passhouse import preflight
from passhouse.bootstrap import Runtime, open_runtime
from passhouse.cli.server import load_settings, run, uses_database
from passhouse.storage import migrate
from passhouse.storage.webhooks import EVENT_TYPES
from passhouse.webhooks import manage

T = TypeVar("T")

_EVENTS_HELP = (
    "An event type to receive (repeat for several): "
    + ", ".join(EVENT_TYPES)
    + '; or "*" for all (the default).'
)


async def _with_runtime(action: Callable[[Runtime], Awaitable[T]]) -> T:
    runtime = open_runtime(load_settings())
    try:
        await preflight.check_database(runtime)
        await migrate.upgrade(runtime.database)
        await preflight.check_secret_key(runtime)
        return await action(runtime)
    finally:
        await runtime.database.dispose()


async def _read(runtime: Runtime, action: Callable[[Any], Awaitable[T]]) -> T:
    async with runtime.database.reader() as conn:
        return await action(conn)


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def _state(view: dict[str, Any]) -> str:
    if not view["enabled"]:
        return "DISABLED" + (" (automatically)" if view["disabled_reason"] else "")
    return "failing since " + view["failing_since"] if view["failing_since"] else "enabled"


def _line(view: dict[str, Any]) -> str:
    counts = view["deliveries"]
    return (
        f"{view['id']}  {view['url']}  events {','.join(view['events'])}  {_state(view)}  "
        f"{counts['pending']} pending, {counts['delivered']} delivered, {counts['failed']} failed"
    )


def _delivery_line(item: dict[str, Any]) -> str:
    outcome = item["last_error"] or (f"HTTP {item['last_status']}" if item["last_status"] else "")
    when = item["last_attempt_at"] or item["created_at"]
    return (
        f"{item['created_at']}  {item['event']:<22}  {item['state']:<9}  "
        f"{item['attempts']} attempt(s)  {outcome}  (last {when}, {item['event_id']})"
    )


@click.group("webhook")
def webhook_group() -> None:
    """Tell your systems what happens: signed POSTs of pass, install and push events."""


@webhook_group.command("add")
@click.argument("url")
@click.option("--event", "events", multiple=True, metavar="TYPE", help=_EVENTS_HELP)
@uses_database
def webhook_add(url: str, events: tuple[str, ...]) -> None:
    """Add an endpoint (https:// to a public address) and print its signing secret once."""
    view = run(
        _with_runtime(lambda rt: manage.create_webhook(rt, url=url, events=list(events) or ["*"]))
    )
    click.echo(f"added webhook {view['id']}: {view['url']} ({', '.join(view['events'])})")
    click.echo("its signing secret, shown only now (verify Passhouse-Signature with it):")
    click.echo(view["secret"])


@webhook_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts) instead of lines.")
@uses_database
def webhook_list(as_json: bool) -> None:
    """List endpoints: URL, events, enabled or failing, delivery counts."""
    views = run(_with_runtime(lambda rt: _read(rt, manage.list_webhooks)))
    if as_json:
        _print_json(views)
        return
    if not views:
        click.echo("no webhooks (add one with `passhouse webhook add URL`)")
    for view in views:
        click.echo(_line(view))


@webhook_group.command("show")
@click.argument("webhook_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts) instead of lines.")
@uses_database
def webhook_show(webhook_id: int, as_json: bool) -> None:
    """Show one endpoint and its latest deliveries."""

    async def action(conn: Any) -> dict[str, Any]:
        view = await manage.get_webhook(conn, webhook_id)
        view["recent_deliveries"], _ = await manage.list_deliveries(conn, webhook_id, limit=10)
        return view

    view = run(_with_runtime(lambda rt: _read(rt, action)))
    if as_json:
        _print_json(view)
        return
    click.echo(_line(view))
    if view["disabled_reason"]:
        click.echo(f"  {view['disabled_reason']}")
    for item in view["recent_deliveries"]:
        click.echo("  " + _delivery_line(item))


@webhook_group.command("update")
@click.argument("webhook_id", type=int)
@click.option("--url", help="A new URL.")
@click.option("--event", "events", multiple=True, metavar="TYPE", help=_EVENTS_HELP)
@click.option("--enable/--disable", "enabled", default=None, help="Resume or stop deliveries.")
@uses_database
def webhook_update(
    webhook_id: int, url: str | None, events: tuple[str, ...], enabled: bool | None
) -> None:
    """Change an endpoint's URL or events, or enable or disable it."""
    view = run(
        _with_runtime(
            lambda rt: manage.update_webhook(
                rt, webhook_id, url=url, events=list(events) or None, enabled=enabled
            )
        )
    )
    click.echo(_line(view))


@webhook_group.command("remove")
@click.argument("webhook_id", type=int)
@uses_database
def webhook_remove(webhook_id: int) -> None:
    """Remove an endpoint and its deliveries."""

    async def action(runtime: Runtime) -> None:
        async with runtime.database.transaction() as conn:
            await manage.delete_webhook(conn, webhook_id)

    run(_with_runtime(action))
    click.echo(f"removed webhook {webhook_id}")


@webhook_group.command("deliveries")
@click.argument("webhook_id", type=int)
@click.option("--limit", type=click.IntRange(1, 500), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts) instead of lines.")
@uses_database
def webhook_deliveries(webhook_id: int, limit: int, as_json: bool) -> None:
    """Recent deliveries, newest first: event, state, attempts, last status or error."""
    items, _ = run(
        _with_runtime(
            lambda rt: _read(rt, lambda c: manage.list_deliveries(c, webhook_id, limit=limit))
        )
    )
    if as_json:
        _print_json(items)
        return
    if not items:
        click.echo("no deliveries yet")
    for item in items:
        click.echo(_delivery_line(item))


@webhook_group.command("ping")
@click.argument("webhook_id", type=int)
@click.option(
    "--wait",
    type=click.FloatRange(0, 120),
    default=15.0,
    show_default=True,
    help="Seconds to wait for a worker to deliver it (0: just queue it).",
)
@uses_database
def webhook_ping(webhook_id: int, wait: float) -> None:
    """Send a `ping` event to an endpoint and print what it answered.

    A worker (`passhouse worker`, or `passhouse serve`) delivers it.
    """

    async def action(runtime: Runtime) -> dict[str, Any]:
        async with runtime.database.transaction() as conn:
            queued = await manage.ping_webhook(conn, webhook_id)
        deadline = time.monotonic() + wait
        delivery: dict[str, Any] = queued["delivery"]
        while delivery["attempts"] == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            async with runtime.database.reader() as conn:
                found, _ = await manage.list_deliveries(
                    conn, webhook_id, limit=1, event_id=queued["event_id"]
                )
            delivery = found[0]
        return delivery

    delivery = run(_with_runtime(action))
    if delivery["attempts"] == 0:
        if wait:
            raise click.ClickException(
                f"ping {delivery['event_id']} is queued but no worker delivered it within "
                f"{wait:g} s: is `passhouse worker` (or `passhouse serve`) running?"
            )
        click.echo(f"queued ping {delivery['event_id']}")
        return
    if delivery["state"] == "delivered":
        click.echo(f"delivered ping {delivery['event_id']}: HTTP {delivery['last_status']}")
        return
    raise click.ClickException(f"ping {delivery['event_id']} failed: {delivery['last_error']}")


def _attach() -> None:
    from passhouse.cli import main

    main.add_command(webhook_group)


_attach()
