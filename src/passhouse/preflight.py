"""What every command checks before it trusts its configuration, in one sentence per problem.

`check_files` runs when settings are loaded; `check_database` before the first statement
(serve, worker, migrate and every CLI command that opens the database go through it);
`check_secret_key` once the schema is at head.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from sqlalchemy.engine import URL, make_url

from passhouse.errors import ConfigurationError
from passhouse.settings import Settings
from passhouse.storage import pass_types
from passhouse.storage.faults import database_fault

if TYPE_CHECKING:
    from passhouse.bootstrap import Runtime

_URL = "PASSHOUSE_DATABASE_URL"


def check_files(settings: Settings) -> None:
    """Files named by the settings exist and hold what they should."""
    ca_file = settings.apns_ca_file
    if ca_file is not None:
        try:
            pem = ca_file.read_bytes()
        except OSError as error:
            raise ConfigurationError(
                f"PASSHOUSE_APNS_CA_FILE={ca_file} cannot be read: {_reason(error)}."
            ) from None
        try:
            x509.load_pem_x509_certificates(pem)
        except ValueError:
            raise ConfigurationError(
                f"PASSHOUSE_APNS_CA_FILE={ca_file} holds no PEM certificate."
            ) from None


def check_data_dir(settings: Settings) -> None:
    """The data directory exists or can be made, and takes files (call before writing there)."""
    folder = settings.data_dir
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise ConfigurationError(
            f"PASSHOUSE_DATA_DIR={folder} cannot be created or written: {_reason(error)}."
        ) from None


async def check_database(runtime: Runtime) -> None:
    """Connect once before anything else; a ConfigurationError naming what is wrong if not."""
    url = _parse(runtime.settings.database_url)
    if url.get_backend_name() == "sqlite":
        _check_sqlite_writable(url)
    try:
        await runtime.database.ping()
    except Exception as error:
        raise ConfigurationError(
            describe_connect_error(error, url, runtime.settings.database_connect_timeout_seconds)
        ) from None


async def check_secret_key(runtime: Runtime) -> None:
    """Every stored private key opens with this secret key."""
    async with runtime.database.reader() as conn:
        sealed = await pass_types.sealed_secrets(conn)
    failing = sorted({pass_type_id for pass_type_id, data in sealed if not _opens(runtime, data)})
    if not failing:
        return
    settings = runtime.settings
    if settings.secret_key is None:
        source = f"The secret key generated into {settings.data_dir / 'secret_key'} (dev mode)"
        fix = (
            f"restore the {settings.data_dir} folder the database was set up with, or give "
            "the key as PASSHOUSE_SECRET_KEY, or start over with a new database"
        )
    else:
        source = "PASSHOUSE_SECRET_KEY"
        fix = (
            "set PASSHOUSE_SECRET_KEY to the key this database was set up with, or add each "
            "certificate again (passhouse pass-type add)"
        )
    raise ConfigurationError(
        f"{source} does not decrypt the private keys stored for {', '.join(failing)}: {fix}."
    )


def _opens(runtime: Runtime, sealed: bytes) -> bool:
    try:
        runtime.sealer.open(sealed)
    except ValueError:
        return False
    return True


def describe_connect_error(error: BaseException, url: URL, connect_timeout: float) -> str:
    """One sentence for a failed first connection, never with the password."""
    where = _where(url)
    chain = list(_chain(error))
    for item in chain:
        sqlstate = getattr(item, "sqlstate", None)
        if not isinstance(sqlstate, str) or type(item).__module__.startswith("sqlalchemy"):
            continue
        server_says = str(item).splitlines()[0].rstrip(".")
        if sqlstate == "3D000":
            return (
                f"{_URL} names the database {url.database!r}, which does not exist on {where}: "
                f"create it (createdb {url.database}) or correct the URL."
            )
        if sqlstate.startswith("28"):
            return (
                f"{_URL}: {where} refused the login ({server_says}): check the user and password."
            )
        return f"{_URL}: {where} refused the connection ({server_says})."
    for item in chain:
        if isinstance(item, socket.gaierror):
            return f"{_URL}: the host {url.host!r} cannot be resolved ({item.strerror})."
        if isinstance(item, TimeoutError):
            return (
                f"{_URL}: {where} did not answer within {connect_timeout:g} s "
                "(PASSHOUSE_DATABASE_CONNECT_TIMEOUT_SECONDS); check that it is reachable "
                "from here."
            )
        if isinstance(item, OSError):
            return (
                f"{_URL}: cannot connect to {where} ({_reason(item)}); check that the server "
                "runs and is reachable from here."
            )
        if isinstance(item, sqlite3.Error):
            return f"{_URL}: the SQLite database {url.database} cannot be used ({item})."
    fault = database_fault(error)
    if fault is not None:
        return f"{_URL}: cannot use {where}: {fault.message}"
    first = str(chain[-1] if chain else error).splitlines()[0]
    return f"{_URL}: cannot use {where} ({first})."


def _check_sqlite_writable(url: URL) -> None:
    if not url.database or url.database == ":memory:" or url.database.startswith("file:"):
        return
    path = Path(url.database).expanduser().absolute()
    for companion in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        if companion.exists():
            try:
                with companion.open("r+b"):
                    pass
            except OSError as error:
                raise ConfigurationError(
                    f"{_URL}: {companion} is read-only ({_reason(error)}); passhouse must be "
                    "able to write it."
                ) from None
    try:
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as error:
        raise ConfigurationError(
            f"{_URL}: the folder {path.parent} is read-only ({_reason(error)}); SQLite "
            f"writes its journal files next to {path.name}."
        ) from None


def _parse(database_url: str) -> URL:
    return make_url(database_url.replace("postgres://", "postgresql://", 1))


def _where(url: URL) -> str:
    if url.get_backend_name() == "sqlite":
        return f"the SQLite database {url.database}"
    host = url.host or os.environ.get("PGHOST") or "localhost"
    return f"the PostgreSQL server at {host}:{url.port or 5432}"


def _chain(error: BaseException) -> list[BaseException]:
    found: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in found and len(found) < 20:
        found.append(current)
        orig = getattr(current, "orig", None)
        current = (
            orig if isinstance(orig, BaseException) else (current.__cause__ or current.__context__)
        )
    return found


def _reason(error: OSError) -> str:
    if error.errno:  # asyncio puts "Connect call failed (...)" where strerror would be
        return os.strerror(error.errno)
    return error.strerror or str(error) or type(error).__name__
