"""Liveness says the process answers; readiness names every check that fails."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from passhouse import issuing
from passhouse.bootstrap import Runtime, open_runtime
from passhouse.settings import Settings
from passhouse.storage import migrate
from passhouse.web.app import create_app
from push.rows import add_overdue_push


@pytest.mark.parametrize("path", ["/livez", "/healthz"])
async def test_liveness_answers_ok(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)

    assert response.status_code == 200
    assert response.json()["status"] == "ok"


async def test_a_migrated_reachable_database_is_ready(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "checks": {"database": "ok", "migrations": "ok", "push": "ok"},
    }


@pytest.fixture
async def unmigrated(settings: Settings, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A server on an empty SQLite database: reachable, but no schema."""
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    runtime = open_runtime(settings.model_copy(update={"database_url": url}))
    transport = httpx.ASGITransport(app=create_app(runtime))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="https://t.test") as http:
            yield http
    finally:
        await runtime.database.dispose()


async def test_a_database_behind_on_migrations_is_not_ready_and_says_why(
    unmigrated: httpx.AsyncClient,
) -> None:
    response = await unmigrated.get("/readyz")
    live = await unmigrated.get("/livez")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not_ready"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["migrations"] == (
        f"the schema is at no revision, not {migrate.head_revision()}: run `passhouse migrate`"
    )
    # The push queue's table may not exist yet: asking would only raise.
    assert body["checks"]["push"] == "unknown until migrations is ok"
    assert body["error"]["code"] == "not_ready"
    assert body["error"]["message"].startswith("migrations: the schema is at no revision")
    assert live.status_code == 200


async def test_pushes_due_with_none_sent_make_the_process_not_ready_unless_skipped(
    client: httpx.AsyncClient, runtime: Runtime, pass_type: str
) -> None:
    # No worker runs here: a push has been due for twice the stall time and nothing was sent.
    now = issuing.now_ms()
    async with runtime.database.transaction() as conn:
        await add_overdue_push(
            conn, pass_type, now_ms=now, overdue_seconds=2 * runtime.settings.push_stall_seconds
        )

    stalled = await client.get("/readyz")
    skipped = await client.get("/readyz", params={"skip": "push"})

    assert stalled.status_code == 503
    assert "is a push worker running" in stalled.json()["checks"]["push"]
    assert stalled.json()["error"]["message"].startswith("push: pushes have been due for")
    assert skipped.status_code == 200
    assert skipped.json()["checks"] == {"database": "ok", "migrations": "ok"}
