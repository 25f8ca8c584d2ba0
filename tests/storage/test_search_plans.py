"""The pass list's statements read an index in the page's order and stop at the page:
no full scan, no sort of everything that matches (ADR 0021).

PostgreSQL is checked once analyzed (autovacuum analyzes a table within a minute of a bulk
load; before that, a template filter may be planned as bitmap scan and sort, ADR 0021);
SQLite as passhouse leaves it, without statistics.
"""

# The loading SQL is built from this file's constants, never from input.
# ruff: noqa: S608

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from databases import PG_ENV, loaded_database
from passhouse.storage import search
from passhouse.storage.database import Database

PASSES = 20_000
PT = "pass.test.search"

_LOAD = [
    "INSERT INTO pass_types (pass_type_id, team_id, certificate_pem, private_key_encrypted,"
    f" not_after, last_version, created_at) VALUES ('{PT}', 'T', '', {{blob}}, 0, {PASSES}, 0)",
    "INSERT INTO templates (id, name, pass_type_id, pass_json, created_at, updated_at)"
    f" VALUES (1, 't1', '{PT}', '{{{{}}}}', 0, 0), (2, 't2', '{PT}', '{{{{}}}}', 0, 0),"
    f" (3, 't3', '{PT}', '{{{{}}}}', 0, 0), (4, 't4', '{PT}', '{{{{}}}}', 0, 0)",
    "{rows} INSERT INTO passes (id, pass_type_id, serial_number, template_id,"
    " authentication_token, share_id, data, voided, version, modified_at, created_at)"
    f" SELECT g, '{PT}', 's' || g, 1 + g % 4, 'token', 'share' || g, '{{{{}}}}', g % 50 = 0,"
    " g, 1700000000 + g, 1700000000 + g FROM {source}",
    "{rows} INSERT INTO pass_search_terms (term, pass_id)"
    " SELECT 's' || g, g FROM {source} UNION ALL SELECT 'common', g FROM {source}"
    " UNION ALL SELECT 'w' || (g % 100), g FROM {source}",
    "{rows} INSERT INTO devices (id, device_library_id, created_at)"
    " SELECT g, 'device-' || g, 0 FROM {source} WHERE g % 3 = 0",
    "{rows} INSERT INTO registrations (device_id, pass_id, push_token, registered_at_ms)"
    " SELECT g, g, 'push-' || g, 0 FROM {source} WHERE g % 3 = 0",
]


def _load_statements(dialect: str) -> list[str]:
    if dialect == "postgresql":
        values = {"rows": "", "source": f"generate_series(1, {PASSES}) AS t(g)", "blob": "''"}
    else:
        values = {
            "rows": f"WITH RECURSIVE t(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM t WHERE g < "
            f"{PASSES})",
            "source": "t",
            "blob": "x''",
        }
    return [statement.format(**values) for statement in _LOAD]


@pytest.fixture(scope="module")
def loaded_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with loaded_database(
        tmp_path_factory.mktemp("search"), "passhouse_search", _load_statements, analyze=True
    ) as url:
        yield url


# Each walks an index in the page's order, checking filters and words per pass read.
WALKS = {
    "newest first": (search.PassQuery(), "pk_passes"),
    "oldest first after a cursor": (search.PassQuery(sort="created", after=(500,)), "pk_passes"),
    "template": (search.PassQuery(template_id=2), "ix_passes_template_id_id"),
    "-updated after a cursor": (
        search.PassQuery(sort="-updated", after=(1700010000, 10000)),
        "ix_passes_modified_at_id",
    ),
    "template, updated": (
        search.PassQuery(template_id=3, sort="updated"),
        "ix_passes_template_id_modified_at_id",
    ),
    "voided": (search.PassQuery(voided=True), "pk_passes"),
    "installed=false": (search.PassQuery(installed=False), "pk_passes"),
    "common words": (search.PassQuery(words=("common", "w1")), "pk_passes"),
}


def _sql(statement: sa.Select[Any], dialect: Any) -> str:
    return str(statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


def _requires(url: str, dialect: str) -> None:
    if not url.startswith(dialect):
        pytest.skip(f"a {dialect} plan (set {PG_ENV} for PostgreSQL)")


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


async def _pg_plan(url: str, sql: str) -> dict[str, Any]:
    database = Database(url)
    try:
        async with database.reader() as conn:
            explained = await conn.scalar(sa.text("EXPLAIN (FORMAT JSON) " + sql))
    finally:
        await database.dispose()
    loaded = json.loads(explained) if isinstance(explained, str) else explained
    plan: dict[str, Any] = loaded[0]["Plan"]
    return plan


@pytest.mark.parametrize("name", list(WALKS))
async def test_postgres_walks_an_index_in_order_and_sorts_nothing(
    loaded_url: str, name: str
) -> None:
    _requires(loaded_url, "postgresql")
    query, _ = WALKS[name]
    sql = _sql(search.list_statement(query, "postgresql"), _pg_dialect())

    nodes = list(_nodes(await _pg_plan(loaded_url, sql)))

    assert nodes[0]["Node Type"] == "Limit", name
    kinds = {node["Node Type"] for node in nodes}
    assert not kinds & {"Sort", "Seq Scan", "Bitmap Heap Scan", "Hash Join", "Hash"}, (name, kinds)
    scans = [node for node in nodes if node.get("Relation Name") == "passes"]
    assert [scan["Node Type"] for scan in scans] == ["Index Scan"], name
    subplans = [node for node in nodes if node.get("Parent Relationship") == "SubPlan"]
    for subplan in subplans:  # each word, and installed, is one index lookup per pass
        assert subplan["Node Type"] in ("Index Only Scan", "Index Scan"), name
        assert subplan["Index Name"] in (
            "ix_pass_search_terms_pass_id_term",
            "ix_registrations_pass_id",
        ), name


async def test_postgres_reads_candidates_by_primary_key(loaded_url: str) -> None:
    _requires(loaded_url, "postgresql")
    query = search.PassQuery(words=("s77", "common"), sort="-updated")
    statement = search.list_statement(
        query, "postgresql", candidates=[77, 770, 7700], skip_word="s77"
    )

    nodes = list(_nodes(await _pg_plan(loaded_url, _sql(statement, _pg_dialect()))))

    scans = [node for node in nodes if node.get("Relation Name") == "passes"]
    assert all("pk_passes" in (node.get("Index Name") or "") for node in scans), scans
    assert not {node["Node Type"] for node in nodes} & {"Seq Scan"}


def _pg_dialect() -> Any:
    from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg

    return PGDialect_asyncpg()  # type: ignore[no-untyped-call]


# --- SQLite -------------------------------------------------------------------------------


SQLITE_INDEX = {
    "pk_passes": None,  # the rowid order: SQLite names no index
    "ix_passes_template_id_id": "ix_passes_template_id_id",
    "ix_passes_modified_at_id": "ix_passes_modified_at_id",
    "ix_passes_template_id_modified_at_id": "ix_passes_template_id_modified_at_id",
}


def test_sqlite_walks_an_index_in_order_and_sorts_nothing(loaded_url: str) -> None:
    """Without statistics, as passhouse leaves a SQLite database (it never runs ANALYZE;
    statistics from a manual ANALYZE of a nearly empty database can make SQLite sort,
    ADR 0021)."""
    _requires(loaded_url, "sqlite")
    from sqlalchemy.dialects import sqlite as sqlite_dialect

    with sqlite3.connect(loaded_url.removeprefix("sqlite:///")) as db:
        for name, (query, index) in WALKS.items():
            sql = _sql(search.list_statement(query, "sqlite"), sqlite_dialect.dialect())
            plan = [row[3] for row in db.execute("EXPLAIN QUERY PLAN " + sql)]

            assert not any("TEMP B-TREE" in step for step in plan), (name, plan)
            outer = [step for step in plan if step.startswith(("SCAN passes", "SEARCH passes"))]
            assert len(outer) == 1, (name, plan)
            expected = SQLITE_INDEX[index]
            if index == "ix_passes_template_id_id":
                # SQLite's index on template_id alone ends with the rowid: in id order too.
                assert "USING INDEX ix_passes_template_id" in outer[0], (name, plan)
            elif expected is None:
                assert outer[0] in (
                    "SCAN passes",
                    "SEARCH passes USING INTEGER PRIMARY KEY (rowid<?)",
                    "SEARCH passes USING INTEGER PRIMARY KEY (rowid>?)",
                ), (name, plan)
            else:
                assert f"USING INDEX {expected}" in outer[0], (name, plan)
            lookups = [
                step for step in plan if "pass_search_terms" in step or "registrations" in step
            ]
            for step in lookups:
                assert step.startswith("SEARCH"), (name, plan)
                assert "ix_pass_search_terms_pass_id_term (pass_id=?" in step or (
                    "ix_registrations_pass_id (pass_id=?)" in step
                ), (name, plan)


def test_sqlite_counts_a_word_on_the_terms_primary_key(loaded_url: str) -> None:
    _requires(loaded_url, "sqlite")
    limited = sa.select(sa.literal(1)).where(search._prefix("w1")).limit(1001).subquery()
    from sqlalchemy.dialects import sqlite as sqlite_dialect

    sql = _sql(sa.select(sa.func.count()).select_from(limited), sqlite_dialect.dialect())
    with sqlite3.connect(loaded_url.removeprefix("sqlite:///")) as db:
        plan = [row[3] for row in db.execute("EXPLAIN QUERY PLAN " + sql)]

    assert any(
        "SEARCH pass_search_terms USING COVERING INDEX sqlite_autoindex_pass_search_terms_1"
        " (term>? AND term<?)" in step
        for step in plan
    ), plan
