"""An import looks up its chunk's serials from the serials, one index probe each, even on
passes loaded a moment ago and never analyzed (as during the import itself): a plan that
scans passes testing every serial on every row made a 100,000-row import quadratic."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from databases import loaded_database
from passhouse.storage import passes
from passhouse.storage.database import Database
from storage.test_search_plans import PASSES, PT, _load_statements, _nodes

SERIALS = [f"s{n}" for n in range(1, 2001, 2)] + [f"new-{n}" for n in range(1000)]


@pytest.fixture(scope="module")
def unanalyzed_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with loaded_database(
        tmp_path_factory.mktemp("imports"), "passhouse_import", _load_statements
    ) as url:
        yield url


async def test_the_serial_lookup_probes_the_unique_index_per_serial(unanalyzed_url: str) -> None:
    database = Database(unanalyzed_url)
    try:
        async with database.reader() as conn:
            query = passes.existing_serials_query(database.dialect, PT, SERIALS)
            sql = str(query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
            if database.dialect == "postgresql":
                analyzed = await conn.scalar(
                    sa.text(
                        "SELECT last_analyze IS NOT NULL OR last_autoanalyze IS NOT NULL"
                        " FROM pg_stat_user_tables WHERE relname = 'passes'"
                    )
                )
                explained = await conn.scalar(sa.text("EXPLAIN (FORMAT JSON) " + sql))
                loaded = json.loads(explained) if isinstance(explained, str) else explained
                nodes = list(_nodes(loaded[0]["Plan"]))
                on_passes = [n for n in nodes if n.get("Relation Name") == "passes"]
                assert not analyzed
                assert [n["Node Type"] for n in on_passes] == ["Index Scan"], nodes
                assert on_passes[0]["Index Name"] == "uq_passes_type_serial"
            else:
                rows = (await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql)).all()
                details = [str(row[-1]) for row in rows]
                assert any("passes USING INDEX" in d for d in details), details
                assert not any(d.startswith("SCAN passes") for d in details), details
            found = await passes.existing_serials(conn, PT, SERIALS)
    finally:
        await database.dispose()

    assert sorted(found) == sorted(f"s{n}" for n in range(1, 2001, 2))
    assert len(found) == 1000 < PASSES
