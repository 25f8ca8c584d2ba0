"""`passhouse serve`, `migrate`, `pass-type`, `template`, `pass` and `api-key` commands."""

from __future__ import annotations

import asyncio
import functools
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

from passhouse import devmode, examples, issuing, preflight
from passhouse.bootstrap import Runtime, open_runtime, template_limits
from passhouse.errors import PasshouseError
from passhouse.pkpass.errors import PkpassError
from passhouse.pkpass.json_input import JsonRejected, parse_json
from passhouse.pkpass.template import Template, set_data_path
from passhouse.settings import Settings
from passhouse.storage import api_keys, migrate, pass_types, pass_versions

T = TypeVar("T")


_DATABASE_URL = "passhouse.database_url"


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment and .env, with CLI flags on top; one sentence if wrong."""
    context = click.get_current_context(silent=True)
    if context is not None:
        overrides.setdefault("database_url", context.meta.get(_DATABASE_URL))
    try:
        settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as error:
        problems = []
        for item in error.errors():
            name = "PASSHOUSE_" + "_".join(str(p) for p in item["loc"]).upper()
            problems.append(f"{name}: {item['msg']}")
        raise click.ClickException("invalid configuration: " + "; ".join(problems)) from None
    _check_sqlite_folder(settings.database_url)
    try:
        preflight.check_files(settings)
    except PasshouseError as error:
        raise click.ClickException(error.message) from None
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


def uses_database(command: Callable[..., T]) -> Callable[..., T]:
    """For every command that opens the database: --database-url, and a line saying which.

    Without it a command run from another folder silently made a new ./passhouse.db.
    """

    @functools.wraps(command)
    def wrapper(*args: Any, database_url: str | None, **kwargs: Any) -> T:
        click.get_current_context().meta[_DATABASE_URL] = database_url
        described = describe_database(load_settings().database_url)
        if described:
            click.echo(f"database: {described}", err=True)
        return command(*args, **kwargs)

    option = click.option(
        "--database-url",
        metavar="URL",
        help="Database to use (default: PASSHOUSE_DATABASE_URL, else ./passhouse.db).",
    )
    return option(wrapper)


def describe_database(database_url: str) -> str | None:
    """The database as an operator knows it: a file's full path, a URL without password."""
    try:
        url = sa.make_url(database_url.replace("postgres://", "postgresql://", 1))
    except sa_exc.ArgumentError:
        return None  # Database() reports an unusable URL in its own words
    if url.get_backend_name() != "sqlite":
        return url.render_as_string(hide_password=True)
    if not url.database or url.database == ":memory:":
        return "SQLite in memory"
    path = Path(url.database).expanduser().absolute()
    return f"SQLite {path}" + ("" if path.exists() else " (new: it does not exist yet)")


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
    settings: Settings,
    action: Callable[[Runtime, AsyncConnection], Awaitable[T]],
    *,
    check_secret_key: bool = True,
) -> T:
    """Open the database (migrating it first), run one transaction, close."""
    runtime = open_runtime(settings)
    try:
        await preflight.check_database(runtime)
        await migrate.upgrade(runtime.database)
        if check_secret_key:
            await preflight.check_secret_key(runtime)
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
@uses_database
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
            index=index,
            count=workers,
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
        self.republished: dict[str, int] = {}


async def _prepare(runtime: Runtime, *, migrate_schema: bool) -> _Prepared:
    prepared = _Prepared()
    settings = runtime.settings
    try:
        await preflight.check_database(runtime)
        if migrate_schema:
            await migrate.upgrade(runtime.database)
        elif await migrate.current_revision(runtime.database) != migrate.head_revision():
            raise click.ClickException(
                "the database schema is not up to date: run `passhouse migrate` first."
            )
        await preflight.check_secret_key(runtime)
        if settings.dev_mode:
            preflight.check_data_dir(settings)
            async with runtime.database.transaction() as conn:
                prepared.dev = await devmode.ensure_dev_setup(
                    conn, runtime.sealer, settings.data_dir
                )
        async with runtime.database.transaction() as conn:
            prepared.republished = await issuing.republish_for_build_key(
                conn, issuing.build_key(settings.web_service_url)
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
    lines.append(f"  dashboard:       {settings.public_url}/dashboard")
    lines.append(f"  API docs:        {settings.public_url}/api/docs")
    lines.append(f"  OpenAPI:         {settings.public_url}/api/openapi.json")
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
    for pass_type_id, count in setup.republished.items():
        lines.append(
            f"  webServiceURL changed: {count} passes of {pass_type_id} were built for another "
            "address; they get a new version and their devices are told (if several servers "
            "share this database, give them all the same PASSHOUSE_PUBLIC_URL)"
        )
    click.echo("\n".join(lines))


@click.command("migrate")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
@click.option(
    "--downgrade",
    is_flag=True,
    help="Allow going back to an older revision (drops what newer ones added; base drops all).",
)
@uses_database
def migrate_command(revision: str, downgrade: bool) -> None:
    """Apply database migrations (safe to run while other processes run)."""
    settings = load_settings()
    try:
        target = migrate.resolve_revision(revision)
    except migrate.UnknownRevision as error:
        raise click.ClickException(str(error)) from None

    async def apply() -> str | None:
        runtime = open_runtime(settings)
        try:
            await preflight.check_database(runtime)
            current = await migrate.current_revision(runtime.database)
            if not migrate.is_older(target, current):
                await migrate.upgrade(runtime.database, target or "base")
            elif downgrade:
                await migrate.downgrade(runtime.database, target or "base")
            else:
                raise click.ClickException(
                    f"the database is at revision {current}; going back to {target or 'base'} "
                    f"drops what later revisions added{' (every table)' if target is None else ''}"
                    ": add --downgrade to do it."
                )
            return await migrate.current_revision(runtime.database)
        finally:
            await runtime.database.dispose()

    reached = run(apply())
    click.echo(f"database at revision {reached or 'base (no tables)'}")


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
@uses_database
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
        return await issuing.save_pass_type(
            conn, runtime.sealer, credentials, wwdr_option="--wwdr", actor=pass_versions.CLI
        )

    # Not refused for keys sealed with another secret key: adding the certificate again
    # is how those are replaced.
    pass_type_id, created, warnings = run(
        in_transaction(load_settings(), action, check_secret_key=False)
    )
    click.echo(f"{'added' if created else 'replaced certificate of'} pass type {pass_type_id}")
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)


@pass_type_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts) instead of lines.")
@uses_database
def pass_type_list(as_json: bool) -> None:
    """List pass types, their certificate expiry, APNs errors and signing problems."""

    async def action(runtime: Runtime, conn: AsyncConnection) -> list[Any]:
        rows = await pass_types.list_pass_types(conn)
        return [(row, issuing.pass_type_problems(row, runtime.sealer)) for row in rows]

    listed = run(in_transaction(load_settings(), action))
    if as_json:
        records = [
            {
                "pass_type_id": row.pass_type_id,
                "team_id": row.team_id,
                "dev_mode": row.dev_mode,
                "certificate": issuing.certificate_summary(row.certificate_pem),
                "apns_error": row.apns_error,
                "problems": problems,
            }
            for row, problems in listed
        ]
        click.echo(json.dumps(records, indent=2))
        return
    for row, problems in listed:
        note = " (dev certificate)" if row.dev_mode else ""
        error = f"  APNs error: {row.apns_error}" if row.apns_error else ""
        summary = issuing.certificate_summary(row.certificate_pem)
        click.echo(
            f"{row.pass_type_id}  team {row.team_id}  expires {summary['not_after']}{note}{error}"
        )
        for problem in problems:
            click.echo(f"  {problem['severity']}: {problem['message']}")


@pass_type_group.command("remove")
@click.argument("pass_type_id")
@uses_database
def pass_type_remove(pass_type_id: str) -> None:
    """Remove a pass type that no template or pass uses."""

    async def action(_runtime: Runtime, conn: AsyncConnection) -> None:
        await issuing.delete_pass_type(conn, pass_type_id)

    run(in_transaction(load_settings(), action))
    click.echo(f"removed pass type {pass_type_id}")


# --- templates and passes -----------------------------------------------------------------


@click.group("template")
def template_group() -> None:
    """Add, list, show, replace and remove templates."""


def _load_template(source: Path, name: str, settings: Settings) -> Template:
    limits = template_limits(settings)
    if source.is_dir():
        return Template.from_directory(source, limits=limits)
    return Template.from_zip(source.read_bytes(), name=name, limits=limits)


@template_group.command("add")
@click.argument("source", type=click.Path(exists=True, path_type=Path), required=False)
@click.option(
    "--example",
    type=click.Choice(examples.example_names(), case_sensitive=False),
    help="Add one of the example templates shipped with passhouse instead of SOURCE.",
)
@click.option("--name", help="Name passes are issued from (default: the example's name).")
@click.option("--pass-type", "pass_type_id", required=True, help="Pass type id it belongs to.")
@uses_database
def template_add(
    source: Path | None, example: str | None, name: str | None, pass_type_id: str
) -> None:
    """Add a template from a folder or zip (pass.json, images, xx.lproj/), or an example."""
    if (source is None) == (example is None):
        raise click.UsageError("give a template folder or zip, or --example NAME (not both)")
    if example is not None:
        source = examples.example_path(example)
        name = name or example.lower()
    if name is None:
        raise click.UsageError("give --name, the name passes are issued from")
    assert source is not None
    folder, template_name = source, name

    async def action(runtime: Runtime, conn: AsyncConnection) -> int:
        template = _load_template(folder, template_name, runtime.settings)
        return await issuing.create_template(
            conn,
            name=template_name,
            pass_type_id=pass_type_id,
            pass_json=template.pass_json,
            assets=template.assets,
            max_json_depth=runtime.settings.json_max_depth,
        )

    template_id = run(in_transaction(load_settings(), action))
    click.echo(f"added template {name} (id {template_id})")


@template_group.command("replace")
@click.argument("ref")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@uses_database
def template_replace(ref: str, source: Path) -> None:
    """Replace a template; every pass made from it changes and its devices are told."""

    async def action(runtime: Runtime, conn: AsyncConnection) -> tuple[int, int]:
        template = _load_template(source, ref, runtime.settings)
        return await issuing.replace_template(
            conn,
            ref,
            name=None,
            pass_json=template.pass_json,
            assets=template.assets,
            max_json_depth=runtime.settings.json_max_depth,
            actor=pass_versions.CLI,
        )

    _, changed = run(in_transaction(load_settings(), action))
    click.echo(f"replaced template {ref}; {changed} passes changed, devices will be notified")


@click.group("pass")
def pass_group() -> None:
    """Issue, list, show, download, change and void passes."""


def _json_object(text: str | None, what: str, settings: Settings) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        value = parse_json(
            Path(text[1:]).read_text() if text.startswith("@") else text,
            max_depth=settings.json_max_depth,
        )
    except JsonRejected as error:
        raise click.BadParameter(f"{what}: {error.message}") from None
    except (OSError, ValueError) as error:
        raise click.BadParameter(f"{what} is not valid JSON ({error})") from None
    if not isinstance(value, dict):
        raise click.BadParameter(f"{what} must be a JSON object")
    return value


@pass_group.command("issue")
@click.option("--template", required=True, help="Template name or id.")
@click.option("--data", help='JSON object, or @file.json: {"name": "Ada", ...}')
@click.option("--serial", help="Serial number (random when omitted).")
@uses_database
def pass_issue(template: str, data: str | None, serial: str | None) -> None:
    """Issue a pass and print its download and share links."""
    settings = load_settings()
    values = _json_object(data, "--data", settings)

    async def action(runtime: Runtime, conn: AsyncConnection) -> Any:
        builder = issuing.PassBuilder(runtime.sealer, settings.web_service_url)
        return await issuing.issue_pass(
            conn,
            builder,
            template_ref=template,
            data=values,
            serial_number=serial,
            actor=pass_versions.CLI,
        )

    row = run(in_transaction(settings, action))
    click.echo(f"issued {row.pass_type_id} {row.serial_number} (version {row.version})")
    click.echo(
        f"  download (admin API key): {settings.public_url}/api/v1/passes/"
        f"{row.pass_type_id}/{row.serial_number}/pkpass"
    )
    click.echo(f"  share link: {settings.public_url}/p/{row.share_id}")
    # This process only knows the server's address from the same setting the server reads.
    if "public_url" in settings.model_fields_set:
        click.echo(f"  links use PASSHOUSE_PUBLIC_URL={settings.public_url}")
    else:
        click.echo(
            f"  links use the default address {settings.public_url}: set PASSHOUSE_PUBLIC_URL "
            "to the address your server is reached at (the public URL `passhouse serve` prints)"
        )


@pass_group.command("update")
@click.argument("pass_type_id")
@click.argument("serial")
@click.argument("fields", nargs=-1, required=True)
@uses_database
def pass_update(pass_type_id: str, serial: str, fields: tuple[str, ...]) -> None:
    """Change data on a pass: KEY=VALUE ..., VALUE read as JSON when it parses.

    A dotted KEY sets a nested value (seat.number=8 keeps seat.section); VALUE null
    removes the key. The change is a JSON Merge Patch, like PATCH in the admin API.
    """
    settings = load_settings()
    values: dict[str, Any] = {}
    for item in fields:
        key, sep, raw = item.partition("=")
        if not sep or not key or "" in key.split("."):
            raise click.BadParameter(f"{item!r} is not KEY=VALUE (KEY may be a.b.c)")
        try:
            value = parse_json(raw, max_depth=settings.json_max_depth)
        except JsonRejected as error:
            raise click.BadParameter(f"{key}: {error.message}") from None
        except ValueError:
            value = raw
        set_data_path(values, key, value)

    async def action(runtime: Runtime, conn: AsyncConnection) -> tuple[Any, bool]:
        builder = issuing.PassBuilder(runtime.sealer, settings.web_service_url)
        return await issuing.change_pass_data(
            conn, builder, pass_type_id, serial, values, merge=True, actor=pass_versions.CLI
        )

    row, changed = run(in_transaction(settings, action))
    if changed:
        click.echo(f"updated {serial} to version {row.version}; devices will be notified")
    else:
        click.echo(f"{serial} already had these values; nothing changed")


@pass_group.command("void")
@click.argument("pass_type_id")
@click.argument("serial")
@uses_database
def pass_void(pass_type_id: str, serial: str) -> None:
    """Void a pass; it stays in Wallet marked as void."""

    async def action(_runtime: Runtime, conn: AsyncConnection) -> tuple[Any, bool]:
        return await issuing.void_pass(conn, pass_type_id, serial, actor=pass_versions.CLI)

    run(in_transaction(load_settings(), action))
    click.echo(f"voided {serial}")


# --- API keys ---------------------------------------------------------------------------


@click.group("api-key")
def api_key_group() -> None:
    """Create, list and revoke admin API keys (stored hashed)."""


@api_key_group.command("create")
@click.option("--name", required=True, help="Who or what uses the key.")
@uses_database
def api_key_create(name: str) -> None:
    """Create a key and print it once; only its hash is stored."""
    key = "ph_" + secrets.token_urlsafe(32)

    async def action(_runtime: Runtime, conn: AsyncConnection) -> int:
        return await api_keys.add_key(conn, name=name, key=key, now=issuing.now_seconds())

    key_id = run(in_transaction(load_settings(), action))
    click.echo(f"created API key {key_id} ({name}); it is shown only now:")
    click.echo(key)


@api_key_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts) instead of lines.")
@uses_database
def api_key_list(as_json: bool) -> None:
    """List keys (prefix, name, created, revoked)."""

    async def action(_runtime: Runtime, conn: AsyncConnection) -> list[Any]:
        return await api_keys.list_keys(conn)

    rows = run(in_transaction(load_settings(), action))
    if as_json:
        records = [
            {
                "id": row.id,
                "prefix": row.prefix,
                "name": row.name,
                "created_at": issuing.iso_time(row.created_at),
                "revoked_at": issuing.iso_time(row.revoked_at) if row.revoked_at else None,
            }
            for row in rows
        ]
        click.echo(json.dumps(records, indent=2))
        return
    for row in rows:
        state = "revoked" if row.revoked_at else "active"
        created = issuing.iso_time(row.created_at)
        click.echo(f"{row.id}  {row.prefix}…  {row.name}  created {created}  {state}")


@api_key_group.command("revoke")
@click.argument("key_id", type=int)
@uses_database
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
