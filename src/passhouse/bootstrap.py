"""Turn Settings into the running parts (database, sealer), the same way for every entry point."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from passhouse.errors import ConfigurationError
from passhouse.pkpass.template import TemplateLimits
from passhouse.preflight import check_data_dir
from passhouse.settings import Settings
from passhouse.storage.database import Database
from passhouse.storage.sealing import Sealer


@dataclass(frozen=True, slots=True)
class Runtime:
    settings: Settings
    database: Database
    sealer: Sealer


def template_limits(settings: Settings) -> TemplateLimits:
    return TemplateLimits(
        max_files=settings.template_max_files,
        max_file_bytes=settings.template_max_file_bytes,
        max_bytes=settings.template_max_bytes,
        max_json_depth=settings.json_max_depth,
    )


def resolve_secret_key(settings: Settings) -> str:
    """PASSHOUSE_SECRET_KEY, or in dev mode one generated once into the data directory."""
    if settings.secret_key is not None:
        value = settings.secret_key.get_secret_value()
        if len(value) < 16:
            raise ConfigurationError("PASSHOUSE_SECRET_KEY must be at least 16 characters long.")
        return value
    if not settings.dev_mode:
        raise ConfigurationError(
            "PASSHOUSE_SECRET_KEY is not set; it encrypts private keys at rest and is required "
            "when PASSHOUSE_DEV_MODE is false."
        )
    check_data_dir(settings)
    return _read_or_create(settings.data_dir / "secret_key", lambda: secrets.token_urlsafe(32))


def _read_or_create(path: Path, make: object) -> str:
    if path.exists():
        return path.read_text().strip()
    assert callable(make)
    value = str(make())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(value + "\n")
    return value


def open_runtime(settings: Settings, *, pool_size: int = 10) -> Runtime:
    try:
        database = Database(
            settings.database_url,
            pool_size=pool_size,
            hot_pool_size=settings.database_pool_size,
            connect_timeout=settings.database_connect_timeout_seconds,
        )
    except ValueError as error:
        raise ConfigurationError(f"PASSHOUSE_DATABASE_URL is not usable: {error}.") from None
    return Runtime(
        settings=settings, database=database, sealer=Sealer(resolve_secret_key(settings))
    )
