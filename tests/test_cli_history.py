"""`passhouse pass history`, and the CLI as the actor of what it changes (ADR 0029)."""

from __future__ import annotations

import json

from conftest import PASS_TYPE_ID
from test_cli_manage import issue, pass_type, passhouse, storecard
from test_cli_server import CliInvoker

__all__ = ["pass_type", "passhouse", "storecard"]  # fixtures, used by name


def test_the_cli_records_itself_and_shows_the_history(
    passhouse: CliInvoker, storecard: str
) -> None:
    issue(passhouse, storecard, "c-1", points=10)
    passhouse.ok("pass", "update", PASS_TYPE_ID, "c-1", "points=12", "tier=gold")

    shown = passhouse.ok("pass", "history", PASS_TYPE_ID, "c-1").splitlines()
    (latest,) = json.loads(
        passhouse.ok("pass", "history", PASS_TYPE_ID, "c-1", "--json", "--limit", "1")
    )

    assert shown[0].startswith("version ")
    assert shown[0].endswith("data_changed  by the CLI")
    assert [line.strip() for line in shown[1:3]] == ["points: 10 -> 12", 'tier: set to "gold"']
    assert shown[3].endswith("issued  by the CLI")
    assert (latest["cause"], latest["actor"]) == (
        "data_changed",
        {"kind": "cli", "key_id": None, "name": None},
    )


def test_the_history_of_an_unknown_pass_is_a_clear_error(
    passhouse: CliInvoker, storecard: str
) -> None:
    result = passhouse("pass", "history", PASS_TYPE_ID, "nope")

    assert result.exit_code != 0
    assert "No pass 'nope'" in result.output
