"""Registrations arriving together are written together (one transaction per turn of the
event loop), and still each gets its own answer: the cap holds, a failure stays with the
registration that caused it, and a device registering twice at once ends with its last
token."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from typing import Any

import pytest
import sqlalchemy as sa

from factories import IssuedPass, issue
from passhouse import issuing
from passhouse.bootstrap import Runtime
from passhouse.storage import analytics
from passhouse.storage.database import Database
from passhouse.storage.hot_path import Registered, Registration, SqliteHotPath


def _registration(
    wallet_pass: IssuedPass, device: str, *, token: str = "", cap: int = 0
) -> Registration:
    return Registration(
        pass_type_id=wallet_pass.pass_type_id,
        serial_number=wallet_pass.serial_number,
        presented_token=wallet_pass.authentication_token,
        device_library_id=device,
        push_token=token or f"token-{device}",
        now_ms=issuing.now_ms(),
        max_registrations=cap,
        transport="apns",
        push_service_url="",
    )


def _register(database: Database, wallet_pass: IssuedPass, device: str, cap: int = 0) -> Any:
    return database.hot.register(_registration(wallet_pass, device, cap=cap))


async def _registered(database: Database, pass_id: int) -> dict[str, str]:
    async with database.reader() as conn:
        rows = await conn.execute(
            sa.text(
                "SELECT d.device_library_id, r.push_token FROM registrations r"
                " JOIN devices d ON d.id = r.device_id WHERE r.pass_id = :pass_id"
            ),
            {"pass_id": pass_id},
        )
        return {device: token for device, token in rows}


_POISON = {
    # A registration whose push token is "poison" fails in the database, as a constraint
    # would: the others written with it must not fail too.
    "sqlite": [
        "CREATE TRIGGER poison BEFORE INSERT ON registrations WHEN NEW.push_token = 'poison'"
        " BEGIN SELECT RAISE(ABORT, 'poisoned'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " IF NEW.push_token = 'poison' THEN RAISE EXCEPTION 'poisoned'; END IF;"
        " RETURN NEW; END $$",
        "CREATE TRIGGER poison BEFORE INSERT ON registrations"
        " FOR EACH ROW EXECUTE FUNCTION poison()",
    ],
}
_CURE = {
    "sqlite": ["DROP TRIGGER poison"],
    "postgresql": ["DROP TRIGGER poison ON registrations", "DROP FUNCTION poison()"],
}


async def test_a_failed_registration_does_not_take_its_batch_with_it(
    database: Database, wallet_pass: IssuedPass
) -> None:
    async with database.transaction() as conn:
        for statement in _POISON[database.dialect]:
            await conn.execute(sa.text(statement))
    try:
        results = await asyncio.gather(
            _register(database, wallet_pass, "device-a"),
            database.hot.register(_registration(wallet_pass, "device-lost", token="poison")),
            _register(database, wallet_pass, "device-b"),
            return_exceptions=True,
        )
    finally:
        async with database.transaction() as conn:  # the database outlives this test
            for statement in _CURE[database.dialect]:
                await conn.execute(sa.text(statement))

    assert results[0] is Registered.CREATED
    assert results[2] is Registered.CREATED
    assert isinstance(results[1], Exception)
    assert await _registered(database, wallet_pass.pass_id) == {
        "device-a": "token-device-a",
        "device-b": "token-device-b",
    }
    async with database.reader() as conn:
        lost = await conn.scalar(
            sa.text("SELECT count(*) FROM devices WHERE device_library_id = 'device-lost'")
        )
    assert lost == 0  # its device row went with it


async def test_the_cap_holds_within_a_batch(database: Database, wallet_pass: IssuedPass) -> None:
    results = await asyncio.gather(
        *(_register(database, wallet_pass, f"device-{n}", cap=2) for n in range(5))
    )

    assert sorted(result.name for result in results) == ["CREATED"] * 2 + ["PASS_FULL"] * 3
    created = [f"device-{n}" for n, result in enumerate(results) if result is Registered.CREATED]
    assert sorted(await _registered(database, wallet_pass.pass_id)) == created
    # A device already registered may always renew, full or not.
    assert await _register(database, wallet_pass, created[0], cap=2) is Registered.UPDATED


async def test_one_device_registering_twice_at_once_keeps_its_last_token(
    database: Database, wallet_pass: IssuedPass
) -> None:
    first, second = await asyncio.gather(
        database.hot.register(_registration(wallet_pass, "device-x", token="old")),
        database.hot.register(_registration(wallet_pass, "device-x", token="new")),
    )

    assert (first, second) == (Registered.CREATED, Registered.UPDATED)
    assert await _registered(database, wallet_pass.pass_id) == {"device-x": "new"}


async def test_installs_of_a_batch_are_counted_once_each(
    runtime: Runtime, builder: issuing.PassBuilder, database: Database, template: str
) -> None:
    passes = [await issue(runtime, builder, template) for _ in range(3)]
    await asyncio.gather(
        *(_register(database, p, f"device-{p.pass_id}-{k}") for p in passes for k in (1, 2))
    )
    async with database.reader() as conn:
        totals = await analytics.totals(conn, analytics.Scope())
        first_installs = await conn.scalar(sa.text("SELECT count(*) FROM pass_first_installs"))

    assert totals["installs"] == 6
    assert first_installs == 3


async def test_a_wrong_token_or_unknown_serial_stores_nothing(
    database: Database, wallet_pass: IssuedPass
) -> None:
    wrong = _registration(wallet_pass, "device-w")
    unknown = _registration(wallet_pass, "device-u")
    results = await asyncio.gather(
        database.hot.register(dataclasses.replace(wrong, presented_token="not-the-token")),
        database.hot.register(dataclasses.replace(unknown, serial_number="no-such-serial")),
        _register(database, wallet_pass, "device-ok"),
    )

    assert list(results) == [Registered.UNAUTHORIZED, Registered.UNAUTHORIZED, Registered.CREATED]
    assert list(await _registered(database, wallet_pass.pass_id)) == ["device-ok"]


async def test_sqlite_registrations_of_one_turn_share_one_transaction(
    database: Database, wallet_pass: IssuedPass
) -> None:
    if not isinstance(database.hot, SqliteHotPath):
        pytest.skip("the SQLite hot path's own connection")
    await _register(database, wallet_pass, "device-warm")  # opens the connection
    connection: sqlite3.Connection = database.hot._db()
    statements: list[str] = []
    connection.set_trace_callback(statements.append)
    try:
        await asyncio.gather(*(_register(database, wallet_pass, f"device-{n}") for n in range(8)))
    finally:
        connection.set_trace_callback(None)

    assert statements.count("BEGIN IMMEDIATE") == 1
    assert statements.count("COMMIT") == 1
    assert len(await _registered(database, wallet_pass.pass_id)) == 9
