"""A full disk under the database: a 503 naming it, nothing saved, and writes resume."""

from __future__ import annotations

import asyncio
import os
import pwd
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from structlog.testing import capture_logs

from conftest import PG_ENV
from databases import _run_admin, fresh_postgres_database
from disks import fill, small_disk
from factories import IssuedPass
from passhouse.storage import migrate
from passhouse.storage.database import Database


@pytest.fixture
def disk() -> Iterator[Path]:
    with small_disk(8 * 1024) as mountpoint:
        yield mountpoint


@pytest.fixture
def database_url(migrated_database_url: str, disk: Path) -> Iterator[str]:
    """The test database, with the passes on the small disk (overrides conftest's)."""
    base = os.environ.get(PG_ENV)
    if not base:
        source = Path(migrated_database_url.removeprefix("sqlite:///"))
        shutil.copyfile(source, disk / "passhouse.db")
        yield f"sqlite:///{disk / 'passhouse.db'}"
        return
    # PostgreSQL: a tablespace on the small disk, holding the passes table.
    try:
        postgres = pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("the PostgreSQL server does not run on this machine")
    location = disk / "tablespace"
    location.mkdir()
    os.chown(location, postgres.pw_uid, postgres.pw_gid)
    tablespace = f"passhouse_small_{secrets.token_hex(4)}"
    with fresh_postgres_database(base, "passhouse_disk") as url:
        asyncio.run(_migrate(url))
        try:
            asyncio.run(_run_admin(url, f"CREATE TABLESPACE {tablespace} LOCATION '{location}'"))
        except Exception as error:  # e.g. a server on another machine
            pytest.skip(f"cannot put a tablespace on the small disk: {error}")
        try:
            asyncio.run(_run_admin(url, f"ALTER TABLE passes SET TABLESPACE {tablespace}"))
            yield url
        finally:
            asyncio.run(_run_admin(url, "ALTER TABLE passes SET TABLESPACE pg_default"))
            asyncio.run(_run_admin(url, f"DROP TABLESPACE IF EXISTS {tablespace}"))


async def _migrate(url: str) -> None:
    database = Database(url)
    try:
        await migrate.upgrade(database)
    finally:
        await database.dispose()


def new_pass(template: str) -> dict[str, object]:
    # Random, so it neither compresses nor fits in the free end of a page.
    return {
        "template": template,
        "data": {"name": "Ada", "balance": 1, "note": secrets.token_hex(64 * 1024)},
    }


async def test_a_full_disk_is_a_503_naming_it_and_writes_resume_once_space_is_freed(
    admin: httpx.AsyncClient, wallet_pass: IssuedPass, disk: Path
) -> None:
    before = await admin.get("/api/v1/passes")
    filler = fill(disk)

    with capture_logs() as logs:
        refused = [await admin.post("/api/v1/passes", json=new_pass("card")) for _ in range(3)]
        listed_while_full = await admin.get("/api/v1/passes")
        filler.unlink()
        accepted = await admin.post("/api/v1/passes", json=new_pass("card"))
    listed_after = await admin.get("/api/v1/passes")

    for response in refused:
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "disk_full"
        assert "disk is full" in response.json()["error"]["message"]
        assert response.headers["retry-after"] == "60"
    assert listed_while_full.status_code == 200
    assert len(listed_while_full.json()["items"]) == len(before.json()["items"]) == 1
    assert accepted.status_code == 201, accepted.text
    assert len(listed_after.json()["items"]) == 2
    events = [entry["event"] for entry in logs]
    assert events.count("database_fault_started") == 1, events
    assert events.count("database_fault_ended") == 1, events
    assert not [entry for entry in logs if entry.get("exc_info")]
