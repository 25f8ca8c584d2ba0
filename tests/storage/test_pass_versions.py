"""The history's diffs (pure) and its set-based writes and window, on the real database."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from factories import IssuedPass
from passhouse.bootstrap import Runtime
from passhouse.storage import pass_types, pass_versions, passes
from passhouse.storage.pass_versions import Change, data_changes
from passhouse.storage.tables import pass_versions as history


def test_a_diff_lists_added_changed_and_removed_keys_with_nested_keys_dotted() -> None:
    old = {"name": "Ada", "balance": 10, "member": {"tier": "silver", "since": 2020}}
    new = {"name": "Ada", "balance": 20, "member": {"tier": "gold"}, "offer": "2x"}

    assert data_changes(old, new) == {
        "data": [
            {"key": "balance", "old": 10, "new": 20},
            {"key": "member.since", "old": 2020},
            {"key": "member.tier", "old": "silver", "new": "gold"},
            {"key": "offer", "new": "2x"},
        ]
    }


def test_a_diff_tells_true_from_1_and_takes_1_for_1_0() -> None:
    assert data_changes({"a": 1, "b": 1}, {"a": True, "b": 1.0}) == {
        "data": [{"key": "a", "old": 1, "new": True}]
    }


def test_a_diff_is_bounded_in_keys_and_value_size() -> None:
    old = {f"k{i:03}": i for i in range(50)}
    new = {**{f"k{i:03}": i + 1 for i in range(50)}, "long": "x" * 5000, "deep": [1] * 500}

    found = data_changes(old, new)

    assert len(found["data"]) == pass_versions.MAX_KEYS
    assert found["more_keys"] == 52 - pass_versions.MAX_KEYS
    deep, first = found["data"][0], found["data"][1]
    assert deep["key"] == "deep"
    assert deep["truncated"] is True
    assert len(deep["new"]) == pass_versions.MAX_VALUE_CHARS + 1  # the start of its JSON, "…"
    assert first == {"key": "k000", "old": 0, "new": 1}
    long = data_changes({}, {"long": "x" * 5000})["data"][0]
    assert long == {
        "key": "long",
        "new": "x" * pass_versions.MAX_VALUE_CHARS + "…",
        "truncated": True,
    }


def test_an_issued_pass_diff_shows_every_key_as_added() -> None:
    assert data_changes(None, {"name": "Ada"}) == {"data": [{"key": "name", "new": "Ada"}]}


async def _history(runtime: Runtime, pass_id: int) -> list[sa.Row[Any]]:
    async with runtime.database.reader() as conn:
        result = await conn.execute(
            sa.select(history).where(history.c.pass_id == pass_id).order_by(history.c.seq)
        )
        return list(result.all())


async def test_a_bump_of_many_passes_records_one_row_each_in_one_insert_select(
    runtime: Runtime, template: str, wallet_pass: IssuedPass
) -> None:
    async with runtime.database.transaction() as conn:
        row = await passes.get_pass_by_id(conn, wallet_pass.pass_id)
        assert row is not None
        template_id = row.template_id
        version = await pass_types.next_version(conn, wallet_pass.pass_type_id)
        change = Change("template_changed", pass_versions.CLI, {"template": {"revision": 2}})
        changed = await passes.bump_template_passes(
            conn, template_id, version=version, now=1_900_000_000, change=change
        )

    rows = await _history(runtime, wallet_pass.pass_id)
    assert changed == 1
    assert [(r.seq, r.cause, r.actor) for r in rows][-1] == (len(rows), "template_changed", "cli")
    assert rows[-1].version == version
    assert rows[-1].changes == {"template": {"revision": 2}}


@pytest.fixture
def small_window(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(pass_versions, "HISTORY_LIMIT", 3)
    return 3


async def test_each_pass_keeps_its_newest_versions_only_one_by_one_and_set_based(
    runtime: Runtime, template: str, wallet_pass: IssuedPass, small_window: int
) -> None:
    change = Change("data_changed", pass_versions.CLI, {})
    for _ in range(4):  # one pass at a time
        async with runtime.database.transaction() as conn:
            version = await pass_types.next_version(conn, wallet_pass.pass_type_id)
            await passes.save_new_version(
                conn, wallet_pass.pass_id, version=version, now=1_900_000_000, change=change
            )
    one_by_one = [r.seq for r in await _history(runtime, wallet_pass.pass_id)]
    for _ in range(2):  # set-based, as a template change
        async with runtime.database.transaction() as conn:
            row = await passes.get_pass_by_id(conn, wallet_pass.pass_id)
            assert row is not None
            version = await pass_types.next_version(conn, wallet_pass.pass_type_id)
            await passes.bump_template_passes(
                conn, row.template_id, version=version, now=1_900_000_000, change=change
            )
    set_based = [r.seq for r in await _history(runtime, wallet_pass.pass_id)]

    newest = one_by_one[-1]
    assert one_by_one == [newest - 2, newest - 1, newest]
    assert set_based == [newest, newest + 1, newest + 2]
