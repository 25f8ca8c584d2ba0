"""`passhouse google-issuer add|list|remove`: Google Wallet issuer accounts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from sqlalchemy.ext.asyncio import AsyncConnection

from passhouse import preflight
from passhouse.bootstrap import Runtime, open_runtime
from passhouse.cli.server import in_transaction, load_settings, run, uses_database
from passhouse.google_sync import make_client
from passhouse.issuing import google_wallet
from passhouse.settings import Settings
from passhouse.storage import google_wallet as store
from passhouse.storage import migrate


@click.group("google-issuer")
def google_issuer_group() -> None:
    """Connect, list and remove Google Wallet issuer accounts (README: Google Wallet)."""


async def _add(settings: Settings, issuer_id: str, info: Any) -> tuple[dict[str, Any], bool]:
    runtime = open_runtime(settings)
    client = make_client(settings)
    try:
        await preflight.check_database(runtime)
        await migrate.upgrade(runtime.database)
        await preflight.check_secret_key(runtime)
        row, created = await google_wallet.add_issuer(
            runtime.database, runtime.sealer, client, issuer_id=issuer_id, service_account=info
        )
        return google_wallet.issuer_view(row), created
    finally:
        await client.aclose()
        await runtime.database.dispose()


@google_issuer_group.command("add")
@click.option(
    "--issuer-id", required=True, help="The issuer id from the Google Pay & Wallet Console."
)
@click.option(
    "--service-account",
    "key_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The service account's JSON key file, as Google Cloud's console gives it.",
)
@uses_database
def google_issuer_add(issuer_id: str, key_file: Path) -> None:
    """Connect an issuer account; the key is checked with Google at once, then stored
    encrypted (replacing the key of an issuer already connected)."""
    try:
        info = json.loads(key_file.read_text())
    except (ValueError, UnicodeDecodeError):
        raise click.ClickException(f"{key_file}: not a JSON key file") from None
    view, created = run(_add(load_settings(), issuer_id, info))
    verb = "connected" if created else "replaced the key of"
    click.echo(f"{verb} Google issuer {view['issuer_id']} as {view['client_email']}")


@google_issuer_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts) instead of lines.")
@uses_database
def google_issuer_list(as_json: bool) -> None:
    """List connected issuer accounts and their service accounts."""

    async def action(_runtime: Runtime, conn: AsyncConnection) -> list[dict[str, Any]]:
        return [google_wallet.issuer_view(row) for row in await store.list_issuers(conn)]

    records = run(in_transaction(load_settings(), action))
    if as_json:
        click.echo(json.dumps(records, indent=2))
        return
    if not records:
        click.echo("no Google issuers (connect one with `passhouse google-issuer add`)")
    for record in records:
        click.echo(f"{record['issuer_id']}  {record['client_email']}  added {record['created_at']}")


@google_issuer_group.command("remove")
@click.argument("issuer_id")
@uses_database
def google_issuer_remove(issuer_id: str) -> None:
    """Remove an issuer account that no template uses."""

    async def action(_runtime: Runtime, conn: AsyncConnection) -> None:
        await google_wallet.delete_issuer(conn, issuer_id)

    run(in_transaction(load_settings(), action))
    click.echo(f"removed Google issuer {issuer_id}")


def _register() -> None:
    from passhouse.cli import main

    main.add_command(google_issuer_group)


_register()
