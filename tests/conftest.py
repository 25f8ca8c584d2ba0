"""Shared fixtures: a real database (a fresh SQLite file per test, or PostgreSQL when
PASSHOUSE_TEST_DATABASE_URL is set), the app, an HTTP client, and throwaway certificates."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from databases import fresh_postgres_database
from factories import IssuedPass, issue
from passhouse import devmode, issuing
from passhouse.bootstrap import Runtime
from passhouse.pkpass.devcerts import DevCredentials, make_dev_credentials
from passhouse.settings import Settings
from passhouse.storage import migrate, pass_versions
from passhouse.storage.database import Database
from passhouse.storage.sealing import Sealer
from passhouse.storage.tables import metadata
from passhouse.web.app import create_app

PG_ENV = "PASSHOUSE_TEST_DATABASE_URL"
ADMIN_TOKEN = "test-admin-token-0123456789"
SECRET_KEY = "test-secret-key-0123456789"
PASS_TYPE_ID = "pass.test.passhouse"
TEAM_ID = "TESTTEAM42"


@pytest.fixture(scope="session")
def migrated_database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database migrated to head once per session: a PostgreSQL database of its own,
    or a SQLite file that each test copies."""
    base = os.environ.get(PG_ENV)
    with contextlib.ExitStack() as stack:
        if base:
            url = stack.enter_context(fresh_postgres_database(base, "passhouse_test"))
        else:
            url = f"sqlite:///{tmp_path_factory.mktemp('schema') / 'migrated.db'}"

        async def upgrade() -> None:
            database = Database(url)
            try:
                await migrate.upgrade(database)
            finally:
                await database.dispose()

        asyncio.run(upgrade())
        yield url


@pytest.fixture
def database_url(migrated_database_url: str, tmp_path: Path) -> str:
    if migrated_database_url.startswith("sqlite"):
        source = Path(migrated_database_url.removeprefix("sqlite:///"))
        target = tmp_path / "passhouse.db"
        shutil.copyfile(source, target)
        return f"sqlite:///{target}"
    return migrated_database_url


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    db = Database(database_url)
    if db.dialect == "postgresql":
        names = ", ".join(table.name for table in metadata.sorted_tables)
        async with db.transaction() as conn:
            await conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    try:
        yield db
    finally:
        await db.dispose()


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        _env_file=None,
        database_url=database_url,
        public_url="https://passes.example.test",
        admin_token=SecretStr(ADMIN_TOKEN),
        secret_key=SecretStr(SECRET_KEY),
        data_dir=tmp_path / "data",
    )


@pytest.fixture
def runtime(settings: Settings, database: Database) -> Runtime:
    return Runtime(settings=settings, database=database, sealer=Sealer(SECRET_KEY))


@pytest.fixture
def builder(runtime: Runtime) -> issuing.PassBuilder:
    return issuing.PassBuilder(runtime.sealer, runtime.settings.web_service_url)


@pytest.fixture
def app(runtime: Runtime) -> Any:
    return create_app(runtime)


@pytest.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A device: no credentials of its own beyond what each request carries."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="https://passes.example.test"
    ) as http:
        yield http


@pytest.fixture
async def admin(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An issuer holding the admin API key."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport,
        base_url="https://passes.example.test",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    ) as http:
        yield http


@pytest.fixture(scope="session")
def credentials() -> DevCredentials:
    return make_dev_credentials(PASS_TYPE_ID, TEAM_ID)


@pytest.fixture
async def pass_type(runtime: Runtime, credentials: DevCredentials) -> str:
    async with runtime.database.transaction() as conn:
        pass_type_id, _, _ = await issuing.save_pass_type(
            conn,
            runtime.sealer,
            issuing.Credentials(
                certificate_pem=credentials.cert_pem,
                private_key_pem=credentials.key_pem,
                wwdr_pem=credentials.wwdr_cert_pem,
            ),
            actor=pass_versions.CLI,
        )
    return pass_type_id


TEMPLATE_JSON: dict[str, Any] = {
    **devmode.DEMO_PASS_JSON,
    "organizationName": "Test café",
    "description": "Test loyalty card",
}


@pytest.fixture
async def template(runtime: Runtime, pass_type: str) -> str:
    async with runtime.database.transaction() as conn:
        await issuing.create_template(
            conn,
            name="card",
            pass_type_id=pass_type,
            pass_json=TEMPLATE_JSON,
            assets=devmode.demo_assets(),
        )
    return "card"


@pytest.fixture
async def wallet_pass(runtime: Runtime, builder: issuing.PassBuilder, template: str) -> IssuedPass:
    return await issue(runtime, builder, template)
