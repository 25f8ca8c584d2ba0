"""`passhouse schedule add|list|cancel`, through the CLI, on the test database; a real
worker loop applies what the CLI scheduled."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

from conftest import SECRET_KEY
from passhouse.bootstrap import Runtime
from passhouse.settings import Settings
from passhouse.storage import scheduled_changes
from passhouse.storage.database import Database
from passhouse.storage.sealing import Sealer
from test_cli_manage import as_json, issue, pass_type, passhouse, storecard  # noqa: F401
from test_cli_server import CliInvoker
from test_lifecycle import running_worker, wait_until


def _in(seconds: float) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)).isoformat()


def test_schedule_add_list_and_cancel(passhouse: CliInvoker, storecard: str) -> None:  # noqa: F811
    issue(passhouse, storecard, "s-1")
    issue(passhouse, storecard, "s-2", name="Grace")

    one = passhouse.ok(
        "schedule", "add", "--at", _in(3600), "--pass", "pass.test.passhouse", "s-1",
        "--set", "balance=9", "--set", "member.level=gold",
    )  # fmt: skip
    many = passhouse.ok(
        "schedule", "add", "--at", "2030-01-01T00:00:00Z", "--template", storecard,
        "--where", "name=Grace", "--void",
    )  # fmt: skip
    cancelled = passhouse.ok("schedule", "cancel", "1")
    again = passhouse("schedule", "cancel", "1")
    listed = as_json(passhouse, "schedule", "list")
    pending = as_json(passhouse, "schedule", "list", "--status", "pending")
    lines = passhouse.ok("schedule", "list")

    assert one.startswith("scheduled change 1 for ")
    assert 'set {"balance": 9, "member": {"level": "gold"}} on pass.test.passhouse s-1' in one
    assert many.strip() == (
        "scheduled change 2 for 2030-01-01T00:00:00Z: "
        'void on template storecard where {"name": "Grace"}'
    )
    assert cancelled.strip() == "cancelled scheduled change 1"
    assert again.exit_code == 1
    assert "is cancelled; only a pending change can be cancelled" in again.output
    assert [(c["id"], c["status"]) for c in listed] == [(1, "cancelled"), (2, "pending")]
    assert [c["id"] for c in pending] == [2]
    assert lines.splitlines()[1].startswith("2  pending  2030-01-01T00:00:00Z  void on template")


def test_schedule_add_refuses_a_time_without_a_zone(
    passhouse: CliInvoker,  # noqa: F811
    storecard: str,  # noqa: F811
) -> None:
    issue(passhouse, storecard, "s-1")

    result = passhouse(
        "schedule", "add", "--at", "2030-01-01T00:00:00", "--pass", "pass.test.passhouse", "s-1",
        "--void",
    )  # fmt: skip

    assert result.exit_code == 1
    assert "at must carry a time zone" in result.output
    assert as_json(passhouse, "schedule", "list") == []


def test_a_change_scheduled_from_the_cli_is_applied_by_a_worker(
    passhouse: CliInvoker,  # noqa: F811
    storecard: str,  # noqa: F811
    settings: Settings,
) -> None:
    issue(passhouse, storecard, "s-1")
    passhouse.ok(
        "schedule", "add", "--at", _in(-1), "--pass", "pass.test.passhouse", "s-1",
        "--set", "points=77",
    )  # fmt: skip

    async def apply() -> None:
        database = Database(settings.database_url, pool_size=2, hot_pool_size=2)
        runtime = Runtime(settings=settings, database=database, sealer=Sealer(SECRET_KEY))
        try:
            await work(runtime)
        finally:
            await database.dispose()

    async def work(runtime: Runtime) -> None:
        async with running_worker(runtime):

            async def applied() -> bool:
                async with runtime.database.reader() as conn:
                    row = await scheduled_changes.get(conn, 1)
                return row is not None and row.status == "applied"

            await wait_until(applied)

    asyncio.run(apply())

    shown = json.loads(passhouse.ok("pass", "show", "pass.test.passhouse", "s-1", "--json"))
    listed = as_json(passhouse, "schedule", "list")
    assert shown["data"]["points"] == 77
    assert (listed[0]["status"], listed[0]["passes_changed"]) == ("applied", 1)
