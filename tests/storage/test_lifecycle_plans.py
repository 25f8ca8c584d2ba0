"""The workers' every-second lookups (due scheduled changes, expired passes, passes to
retire) are index ranges, never a scan of passes: checked in each database's own plan.

On PostgreSQL sequential scans are switched off for the EXPLAIN: with a few rows a scan is
cheapest and would be chosen anyway, so the check is that an index *can* serve the query.
SQLite plans these without statistics and must pick the index by itself.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa

from passhouse.storage import pass_lifecycle, scheduled_changes
from passhouse.storage.database import Database

NOW = 1_800_000_000

QUERIES = {
    "due scheduled change": scheduled_changes.due_query(NOW * 1000),
    "next scheduled change": scheduled_changes.next_due_query(),
    "expired, not voided": pass_lifecycle.expired_query(NOW, 200),
    "next expiry": pass_lifecycle.next_expiry_query(),
    "expiry unknown": pass_lifecycle.unknown_expiry_query(200),
    "voided long ago": pass_lifecycle.voided_before_query(NOW, 200),
}


def _plan_nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    nodes = [node]
    for child in node.get("Plans", []):
        nodes.extend(_plan_nodes(child))
    return nodes


@pytest.mark.parametrize("name", list(QUERIES))
async def test_each_worker_lookup_is_served_by_an_index(database: Database, name: str) -> None:
    async with database.transaction() as conn:
        sql = str(
            QUERIES[name].compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
        )
        if database.dialect == "postgresql":
            await conn.execute(sa.text("SET LOCAL enable_seqscan = off"))
            explained = (await conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + sql)).scalar_one()
            plan = explained if isinstance(explained, list) else json.loads(explained)
            nodes = _plan_nodes(plan[0]["Plan"])
            scans = [str(n) for n in nodes if n["Node Type"] == "Seq Scan"]
            indexed = [str(n) for n in nodes if "Index" in n["Node Type"]]
        else:
            rows = (await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql)).all()
            details = [str(row[-1]) for row in rows]
            scans = [d for d in details if d.startswith("SCAN") and "INDEX" not in d]
            indexed = [d for d in details if "INDEX" in d]

    assert scans == [], (sql, scans)
    assert indexed, sql
