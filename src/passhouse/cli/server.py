"""`passhouse serve`, `migrate`, `pass-type`, `template`, `pass` and `api-key` commands."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click
import sqlalchemy as sa
from pydantic import SecretStr, ValidationError
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection

from passhouse import devmode, issuing
from passhouse.bootstrap import Runtime, open_runtime
from passhouse.errors import PasshouseError
from passhouse.pkpass.errors import PkpassError
from passhouse.pkpass.template import Template
from passhouse.settings import Settings
from passhouse.storage import api_keys, migrate, pass_types

T = TypeVar("T")


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment and .env, with CLI flags on top; one sentence if wrong."""
    try:
        settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as error:
        problems = []
        for item in error.errors():
            name = "PASSHOUSE_" + "_".join(str(p) for p in item["loc"]).upper()
            problems.append(f"{name}: {item['msg']}")
        raise click.ClickException("invalid configuration: " + "; ".join(problems)) from None
    _check_sqlite_folder(settings.database_url)
    return settings


def _check_sqlite_folder(database_url: str) -> None:
    # Said here, before any connection: a failed aiosqlite connect leaves its thread
    # reporting to an event loop that is already closed, which prints a traceback.
    try:
        url = sa.make_url(database_url)
    except sa_exc.ArgumentError:
        return  # Database() reports an unusable URL in its own words
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return
    folder = Path(url.database).expanduser().absolute().parent
    if not folder.is_dir():
        raise click.ClickException(
            f"invalid configuration: PASSHOUSE_DATABASE_URL: the folder {folder} does not exist"
        )


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine; user errors become one line on stderr and exit code 1."""
    try:
        return asyncio.run(coroutine)
    except (PasshouseError, PkpassError) as error:
        raise click.ClickException(error.message) from None
    except ValueError as error:  # e.g. a stored key sealed with another secret key
        raise click.ClickException(str(error)) from None
    except OSError as error:
        raise click.ClickException(f"cannot reach the database or a file: {error}") from None
    except (sa_exc.OperationalError, sa_exc.InterfaceError) as error:
        # e.g. a SQLite path in a missing folder, or a server that refuses the login
        raise click.ClickException(f"cannot use the database: {error.orig}") from None


async def in_transaction(
    settings: Settings, action: Callable[[Runtime, AsyncConnection], Awaitable[T]]
) -> T:
    """Open the database (migrating it first), run one transaction, close."""
    runtime = open_runtime(settings)
    try:
        await migrate.upgrade(runtime.database)
        async with runtime.database.transaction() as conn:
            return await action(runtime, conn)
    finally:
        await runtime.database.dispose()


# --- serve, worker, migrate -------------------------------------------------------------


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    help="Web processes on the port [default: PASSHOUSE_WEB_WORKERS, or one per core; "
    "1 in dev mode].",
)
@click.option("--no-worker", is_flag=True, help="Do not send pushes from this server.")
@click.option("--no-migrate", is_flag=True, help="Do not apply database migrations at start.")
@click.option("--log-level", default="info", show_default=True)
def serve(
    host: str, port: int, workers: int | None, no_worker: bool, no_migrate: bool, log_level: str
) -> None:
    """Run the web service (admin API, PassKit web service) and a push worker.

    With no pass type configured, dev mode creates a throwaway local CA, a pass type
    certificate and a demo template, so the whole flow runs on a laptop. With several
    web processes the push worker runs in the first one.
    """
    from passhouse.web import server

    settings = load_settings()
    if settings.public_url == "http://localhost:8000" and port != 8000:
        settings = load_settings(public_url=f"http://localhost:{port}")
    workers = workers or server.default_workers(settings)
    try:
        runtime = open_runtime(settings)
    except PasshouseError as error:
        raise click.ClickException(error.message) from None
    try:
        # Bound before anything is prepared or printed: a taken port is one sentence.
        sockets = server.bind_sockets(host, port, workers)
    except server.BindError as error:
        raise click.ClickException(str(error)) from None
    try:
        setup = run(_prepare(runtime, migrate_schema=not no_migrate))
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    if setup.admin_token_generated:
        settings = settings.model_copy(update={"admin_token": SecretStr(setup.admin_token)})
    _print_banner(settings, host, port, setup, no_worker, workers)
    specs = [
        server.WebProcess(
            settings=settings,
            sock=sock,
            push_worker=index == 0 and not no_worker,
            log_level=log_level,
            parent_pid=os.getpid() if workers > 1 else None,
        )
        for index, sock in enumerate(sockets)
    ]
    if workers == 1:
        server.run_web_process(specs[0])
    else:
        sys.exit(server.supervise(specs, settings.http_shutdown_timeout_seconds))


class _Prepared:
    def __init__(self) -> None:
        self.admin_token = ""
        self.admin_token_generated = False
        self.dev: devmode.DevSetup | None = None


async def _prepare(runtime: Runtime, *, migrate_schema: bool) -> _Prepared:
    prepared = _Prepared()
    settings = runtime.settings
    try:
        if migrate_schema:
            await migrate.upgrade(runtime.database)
        elif await migrate.current_revision(runtime.database) != migrate.head_revision():
            raise click.ClickException(
                "the database schema is not up to date: run `passhouse migrate` first."
            )
        if settings.dev_mode:
            async with runtime.database.transaction() as conn:
                prepared.dev = await devmode.ensure_dev_setup(
                    conn, runtime.sealer, settings.data_dir
                )
    finally:
        # The server opens its own connections inside its event loop.
        await runtime.database.dispose()
    if settings.admin_token is not None:
        prepared.admin_token = settings.admin_token.get_secret_value()
    elif settings.dev_mode:
        prepared.admin_token = devmode.admin_token(settings.data_dir)
        prepared.admin_token_generated = True
    return prepared


def _print_banner(
    settings: Settings, host: str, port: int, setup: _Prepared, no_worker: bool, workers: int
) -> None:
    processes = f", {workers} web processes" if workers > 1 else ""
    lines = [
        f"passhouse serving on http://{host}:{port}  (public URL {settings.public_url}{processes})"
    ]
    lines.append(f"  API docs:        {settings.public_url}/api/docs")
    lines.append(f"  webServiceURL:   {settings.web_service_url}")
    if setup.admin_token_generated:
        lines.append(f"  admin token:     {setup.admin_token}")
        lines.append(f"                   (kept in {settings.data_dir / 'admin_token'})")
    elif setup.admin_token:
        lines.append("  admin token:     from PASSHOUSE_ADMIN_TOKEN")
    if setup.dev is not None:
        lines.append(
            f"  DEV MODE: pass type {setup.dev.pass_type_id} uses a throwaway local certificate;"
        )
        lines.append("  its passes work end to end here but will NOT install on a real iPhone.")
        lines.append(f"  demo template:   '{devmode.DEMO_TEMPLATE}'. Issue a pass with:")
        lines.append(
            f"    curl -X POST {settings.public_url}/api/v1/passes "
            f"-H 'Authorization: Bearer {setup.admin_token}' "
            "-H 'Content-Type: application/json' "
            '-d \'{"template": "demo", "data": {"name": "Ada", "balance": 12.5}}\''
        )
    if no_worker:
        lines.append("  push worker:     off (run `passhouse worker` to send pushes)")
    click.echo("\n".join(lines))


@click.command("migrate")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
def migrate_command(revision: str) -> None:
    """Apply database migrations (safe to run while other processes run)."""
    settings = load_settings()

    async def apply() -> str | None:
        runtime = open_runtime(settings)
        try:
            await migrate.upgrade(runtime.database, revision)
            return await migrate.current_revision(runtime.database)
        finally:
            await runtime.database.dispose()

    click.echo(f"database at revision {run(apply())}")


# --- pass types -------------------------------------------------------------------------


@click.group("pass-type")
def pass_type_group() -> None:
    """Add, list and remove pass types (Pass Type ID certificates)."""


def _read(path: Path | None) -> bytes | None:
    return None if path is None else path.read_bytes()


_file = click.Path(exists=True, dir_okay=False, path_type=Path)


@pass_type_group.command("add")
@click.option("--p12", type=_file, help="Certificate and key exported from Keychain (.p12).")
@click.option("--password", help="Password of the .p12 or of the encrypted key.")
@click.option("--cert", type=_file, help="Pass Type ID certificate (PEM or DER).")
@click.option("--key", type=_file, help="Its private key (PEM).")
@click.option("--wwdr", type=_file, help="Apple WWDR G4 intermediate certificate (PEM).")
@click.option("--apns-key", type=_file, help="Optional APNs .p8 key for token auth.")
@click.option("--apns-key-id", help="Key ID of the .p8 key.")
@click.option("--apns-team-id", help="Team ID owning the .p8 key.")
def pass_type_add(
    p12: Path | None,
    password: str | None,
    cert: Path | None,
    key: Path | None,
    wwdr: Path | None,
    apns_key: Path | None,
    apns_key_id: str | None,
    apns_team_id: str | None,
) -> None:
    """Add a pass type, or replace its certificate. Ids are read from the certificate."""
    if p12 is None and (cert is None or key is None):
        raise click.UsageError("give --p12, or both --cert and --key")
    pw = password.encode() if password is not None else None
    credentials = issuing.Credentials(
        certificate_pem=_read(cert),
        private_key_pem=_read(key),
        private_key_password=pw if p12 is None else None,
        wwdr_pem=_read(wwdr),
        p12=_read(p12),
        p12_password=pw if p12 is not None else None,
        apns_key_p8=_read(apns_key),
        apns_key_id=apns_key_id,
        apns_team_id=apns_team_id,
    )

    async def action(runtime: Runtime, conn: AsyncConnection) -> tuple[str, bool, list[str]]:
        return await issuing.save_pass_type(conn, runtime.sealer, credentials)

    pass_type_id, created, warnings = run(in_transaction(load_settings(), action))
    click.echo(f"{'added' if created else 'replaced certificate of'} pass type {pass_type_id}")
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)


@pass_type_group.command("list")
def pass_type_list() -> None:
    """List pass types, their certificate expiry and any APNs error."""

    async def action(_runtime: Runtime, conn: AsyncConnection) -> list[Any]:
        return await pass_types.list_pass_types(conn)

    for row in run(in_transaction(load_settings(), action)):
        note = " (dev certificate)" if row.dev_mode else ""
        error = f"  APNs error: {row.apns_error}" if row.apns_error else ""
        summary = issuing.certificate_summary(row.certificate_pem)
        click.echo(
            f"{row.pass_type_id}  team {row.team_id}  expires {summary['not_after']}{note}{error}"
        )


@pass_type_group.command("remove")
@click.argument("pass_type_id")
def pass_type_remove(pass_type_id: str) -> None:
    """Remove a pass type that no template or pass uses."""

    async def action(_runtime: Runtime, conn: AsyncConnection) -> None:
        await issuing.delete_pass_type(conn, pass_type_id)

    run(in_transaction(load_settings(), action))
    click.echo(f"removed pass type {pass_type_id}")


# --- templates and passes -----------------------------------------------------------------


@click.group("template")
def template_group() -> None:
    """Add and replace templates from a folder or zip."""


def _load_template(source: Path, name: str) -> Template:
    if source.is_dir():
        return Template.from_directory(source)
    return Template.from_zip(source.read_bytes(), name=name)


@template_group.command("add")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option("--name", required=True, help="Name passes are issued from.")
@click.option("--pass-type", "pass_type_id", required=True, help="Pass type id it belongs to.")
def template_add(source: Path, name: str, pass_type_id: str) -> None:
    """Add a template from a folder or zip (pass.json, images, xx.lproj/)."""

    async def action(_runtime: Runtime, conn: AsyncConnection) -> int:
        template = _load_template(source, name)
        return await issuing.create_template(
            conn,
            name=name,
            pass_type_id=pass_type_id,
            pass_json=template.pass_json,
            assets=template.assets,
        )

    template_id = run(in_transaction(load_settings(), action))
    click.echo(f"added template {name} (id {template_id})")


@template_group.command("replace")
@click.argument("ref")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
def template_replace(ref: str, source: Path) -> None:
    """Replace a template; every pass made from it changes and its devices are told."""

    async def action(_runtime: Runtime, conn: AsyncConnection) -> tuple[int, int]:
        template = _load_template(source, ref)
        return await issuing.replace_template(
            conn, ref, name=None, pass_json=template.pass_json, assets=template.assets
        )

    _, changed = run(in_transaction(load_settings(), action))
    click.echo(f"replaced template {ref}; {changed} passes changed, devices will be notified")


@click.group("pass")
def pass_group() -> None:
    """Issue, change and void passes."""


def _json_object(text: str | None, what: str) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        value = json.loads(Path(text[1:]).read_text() if text.startswith("@") else text)
    except (OSError, json.JSONDecodeError) as error:
        raise click.BadParameter(f"{what} is not valid JSON ({error})") from None
    if not isinstance(value, dict):
        raise click.BadParameter(f"{what} must be a JSON object")
    return value


@pass_group.command("issue")
@click.option("--template", required=True, help="Template name or id.")
@click.option("--data", help='JSON object, or @file.json: {"name": "Ada", ...}')
@click.option("--serial", help="Serial number (random when omitted).")
def pass_issue(template: str, data: str | None, serial: str | None) -> None:
    """Issue a pass and print its download and share links."""
    values = _json_object(data, "--data")
    settings = load_settings()

    async def action(runtime: Runtime, conn: AsyncConnection) -> Any:
        builder = issuing.PassBuilder(runtime.sealer, settings.web_service_url)
        return await issuing.issue_pass(
            conn, builder, template_ref=template, data=values, serial_number=serial
        )

    row = run(in_transaction(settings, action))
    click.echo(f"issued {row.pass_type_id} {row.serial_number} (version {row.version})")
    click.echo(
        f"  download (admin API key): {settings.public_url}/api/v1/passes/"
        f"{row.pass_type_id}/{row.serial_number}/pkpass"
    )
    click.echo(f"  share link: {settings.public_url}/p/{row.share_id}")


@pass_group.command("update")
@click.argument("pass_type_id")
@click.argument("serial")
@click.argument("fields", nargs=-1, required=True)
def pass_update(pass_type_id: str, serial: str, fields: tuple[str, ...]) -> None:
    """Change data on a pass (KEY=VALUE ..., VALUE read as JSON when it parses)."""
    values: dict[str, Any] = {}
    for item in fields:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE")
        try:
            values[key] = json.loads(raw)
        except json.JSONDecodeError:
            values[key] = raw
    settings = load_settings()

    async def action(runtime: Runtime, conn: AsyncConnection) -> tuple[Any, bool]:
        builder = issuing.PassBuilder(runtime.sealer, settings.web_service_url)
        return await issuing.change_pass_data(
            conn, builder, pass_type_id, serial, values, merge=True
        )

    row, changed = run(in_transaction(settings, action))
    if changed:
        click.echo(f"updated {serial} to version {row.version}; devices will be notified")
    else:
        click.echo(f"{serial} already had these values; nothing changed")


@pass_group.command("void")
@click.argument("pass_type_id")
@click.argument("serial")
def pass_void(pass_type_id: str, serial: str) -> None:
    """Void a pass; it stays in Wallet marked as void."""

    async def action(_runtime: Runtime, conn: AsyncConnection) -> tuple[Any, bool]:
        return await issuing.void_pass(conn, pass_type_id, serial)

    run(in_transaction(load_settings(), action))
    click.echo(f"voided {serial}")


# --- API keys ---------------------------------------------------------------------------


@click.group("api-key")
def api_key_group() -> None:
    """Create, list and revoke admin API keys (stored hashed)."""


@api_key_group.command("create")
@click.option("--name", required=True, help="Who or what uses the key.")
def api_key_create(name: str) -> None:
    """Create a key and print it once; only its hash is stored."""
    key = "ph_" + secrets.token_urlsafe(32)

    async def action(_runtime: Runtime, conn: AsyncConnection) -> int:
        return await api_keys.add_key(conn, name=name, key=key, now=issuing.now_seconds())

    key_id = run(in_transaction(load_settings(), action))
    click.echo(f"created API key {key_id} ({name}); it is shown only now:")
    click.echo(key)


@api_key_group.command("list")
def api_key_list() -> None:
    """List keys (prefix, name, created, revoked)."""

    async def action(_runtime: Runtime, conn: AsyncConnection) -> list[Any]:
        return await api_keys.list_keys(conn)

    for row in run(in_transaction(load_settings(), action)):
        state = "revoked" if row.revoked_at else "active"
        created = issuing.iso_time(row.created_at)
        click.echo(f"{row.id}  {row.prefix}…  {row.name}  created {created}  {state}")


@api_key_group.command("revoke")
@click.argument("key_id", type=int)
def api_key_revoke(key_id: int) -> None:
    """Revoke a key by its id (see `api-key list`)."""

    async def action(_runtime: Runtime, conn: AsyncConnection) -> bool:
        return await api_keys.revoke_key(conn, key_id, now=issuing.now_seconds())

    if not run(in_transaction(load_settings(), action)):
        raise click.ClickException(f"No active API key has id {key_id} (see `api-key list`).")
    click.echo(f"revoked API key {key_id}")


def _attach() -> None:
    from passhouse.cli import main

    for command in (
        serve,
        migrate_command,
        pass_type_group,
        template_group,
        pass_group,
        api_key_group,
    ):
        main.add_command(command)


_attach()
