"""Fixtures for the push queue and worker: a real database and rows inserted with Core."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncConnection

from databases import fresh_postgres_database
from passhouse.pkpass.devcerts import DevCredentials, issue_server_certificate, make_dev_credentials
from passhouse.settings import Settings
from passhouse.storage import migrate
from passhouse.storage.database import Database
from passhouse.storage.sealing import Sealer
from passhouse.storage.tables import (
    metadata,
)
from push.fake_apns import FakeApns
from push.rows import SECRET_KEY, World, add_pass_type, make_world

PG_ENV = "PASSHOUSE_TEST_DATABASE_URL"


@pytest.fixture(scope="session")
def pg_database_url() -> Iterator[str | None]:
    """A fresh PostgreSQL database for this session (dropped at the end), or None."""
    base = os.environ.get(PG_ENV)
    if not base:
        yield None
        return
    with fresh_postgres_database(base, "test_push") as url:
        yield url


@pytest.fixture
def database_url(tmp_path: Path, pg_database_url: str | None) -> str:
    return pg_database_url or f"sqlite:///{tmp_path / 'passhouse.db'}"


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    db = Database(database_url)
    try:
        async with db.engine.begin() as connection:
            await connection.run_sync(metadata.drop_all)
            await connection.execute(sa.text("DROP TABLE IF EXISTS alembic_version"))
        # Migrated, not create_all: `passhouse worker` refuses a schema that is not at head.
        await migrate.upgrade(db)
        yield db
    finally:
        await db.dispose()


@pytest.fixture
def sealer() -> Sealer:
    return Sealer(SECRET_KEY)


def requires_postgres(database: Database) -> None:
    if database.is_sqlite:
        pytest.skip(f"needs PostgreSQL (set {PG_ENV}); SQLite runs one worker only")


@dataclass(frozen=True)
class Pki:
    """A throwaway root, a pass type certificate under it, and a server cert for fake APNs."""

    credentials: DevCredentials
    server_cert_pem: bytes
    server_key_pem: bytes
    ca_file: Path

    @property
    def client_ca_pem(self) -> bytes:
        return self.credentials.root_cert_pem + self.credentials.wwdr_cert_pem


PASS_TYPE_ID = "pass.test.push"


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    credentials = make_dev_credentials(PASS_TYPE_ID, "TEAM123456")
    cert, key = issue_server_certificate(credentials.root_cert_pem, credentials.root_key_pem)
    ca_file = tmp_path_factory.mktemp("pki") / "ca.pem"
    ca_file.write_bytes(credentials.root_cert_pem)
    return Pki(credentials, cert, key, ca_file)


@pytest.fixture
async def fake_apns(pki: Pki) -> AsyncIterator[FakeApns]:
    server = FakeApns(pki.server_cert_pem, pki.server_key_pem, pki.client_ca_pem)
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
def settings(database_url: str, fake_apns: FakeApns, pki: Pki) -> Settings:
    return Settings(
        _env_file=None,
        database_url=database_url,
        secret_key=SecretStr(SECRET_KEY),
        dev_mode=False,
        apns_url=fake_apns.url,
        apns_ca_file=pki.ca_file,
        apns_request_timeout_seconds=2.0,
        apns_connect_timeout_seconds=2.0,
        push_backoff_base_seconds=0.05,
        push_backoff_max_seconds=0.2,
        push_max_attempts=3,
        push_rate_per_second=0,
        push_idle_poll_seconds=0.02,
        push_poll_interval_seconds=0.2,
    )


async def add_real_pass_type(
    conn: AsyncConnection, pki: Pki, pass_type_id: str = PASS_TYPE_ID
) -> None:
    await add_pass_type(
        conn,
        pass_type_id,
        certificate_pem=pki.credentials.cert_pem,
        key_pem=pki.credentials.key_pem,
    )


__all__ = ["World", "add_pass_type", "make_world"]
