from __future__ import annotations

from typing import Any

import sqlalchemy as sa

import passhouse.storage.push_jobs as jobs
from passhouse.storage.database import Database
from passhouse.storage.tables import devices, push_jobs, registrations
from push.conftest import add_pass_type, make_world

PT = "pass.test.queue"


async def _jobs(database: Database) -> list[Any]:
    async with database.reader() as conn:
        result = await conn.execute(
            sa.select(
                push_jobs.c.push_token,
                push_jobs.c.generation,
                push_jobs.c.attempts,
                push_jobs.c.due_at_ms,
            ).order_by(push_jobs.c.push_token)
        )
        return list(result.all())


async def test_a_burst_of_changes_queues_one_job_per_token(database: Database) -> None:
    async with database.transaction() as conn:
        await add_pass_type(conn, PT)
        world = await make_world(conn, PT, passes_count=3, devices_per_pass=2)

    for now in (10, 20, 30):
        async with database.transaction() as conn:
            await jobs.enqueue_for_pass(conn, world.pass_ids[0], now_ms=now)

    rows = await _jobs(database)
    assert [row.push_token for row in rows] == sorted(world.tokens[:2])
    assert {(row.generation, row.due_at_ms) for row in rows} == {(3, 10)}


async def test_a_template_change_queues_every_registered_token(database: Database) -> None:
    async with database.transaction() as conn:
        await add_pass_type(conn, PT)
        world = await make_world(conn, PT, passes_count=5, devices_per_pass=2)
        # The same device token registered for two passes is one push.
        await conn.execute(
            registrations.update()
            .where(registrations.c.push_token == world.tokens[3])
            .values(push_token=world.tokens[0])
        )

    async with database.transaction() as conn:
        touched = await jobs.enqueue_for_template(conn, world.template_id, now_ms=5)

    rows = await _jobs(database)
    assert touched == 9
    assert sorted(row.push_token for row in rows) == sorted(set(world.tokens) - {world.tokens[3]})


async def test_enqueue_keeps_the_schedule_of_a_job_in_backoff(database: Database) -> None:
    async with database.transaction() as conn:
        await add_pass_type(conn, PT)
        world = await make_world(conn, PT, passes_count=1)
        await jobs.enqueue_for_pass(conn, world.pass_ids[0], now_ms=0)
        claimed = await jobs.claim_due(conn, now_ms=0, lease_ms=60_000, limit=10)
        await jobs.reschedule(conn, [(claimed[0], 9_000)])

    async with database.transaction() as conn:
        await jobs.enqueue_for_pass_type(conn, PT, now_ms=100)

    [row] = await _jobs(database)
    assert (row.generation, row.attempts, row.due_at_ms) == (2, 1, 9_000)


async def test_claim_leases_due_jobs_and_skips_blocked_pass_types(database: Database) -> None:
    async with database.transaction() as conn:
        await add_pass_type(conn, PT)
        await add_pass_type(conn, "pass.test.blocked")
        await make_world(conn, PT, passes_count=3)
        await make_world(conn, "pass.test.blocked", passes_count=2, token_prefix="blk")
        await jobs.enqueue_for_pass_type(conn, PT, now_ms=0)
        await jobs.enqueue_for_pass_type(conn, "pass.test.blocked", now_ms=0)
        await jobs.set_apns_error(conn, "pass.test.blocked", "403 BadCertificate", now_ms=1)

    async with database.transaction() as conn:
        first = await jobs.claim_due(conn, now_ms=10, lease_ms=1_000, limit=2)
    async with database.transaction() as conn:
        second = await jobs.claim_due(conn, now_ms=10, lease_ms=1_000, limit=10)
    async with database.transaction() as conn:
        after_lease = await jobs.claim_due(conn, now_ms=1_010, lease_ms=1_000, limit=10)

    assert len(first) == 2
    assert len(second) == 1
    assert {job.pass_type_id for job in first + second} == {PT}
    assert len(after_lease) == 3
    async with database.reader() as conn:
        stats = await jobs.push_stats(conn, now_ms=1_010)
    assert stats["queue_depth"] == 5
    assert stats["blocked_pass_types"][0]["pass_type_id"] == "pass.test.blocked"


async def test_completing_an_outdated_generation_requeues_the_job(database: Database) -> None:
    async with database.transaction() as conn:
        await add_pass_type(conn, PT)
        world = await make_world(conn, PT, passes_count=2)
        await jobs.enqueue_for_template(conn, world.template_id, now_ms=0)
        claimed = await jobs.claim_due(conn, now_ms=0, lease_ms=60_000, limit=10)
    async with database.transaction() as conn:
        await jobs.enqueue_for_pass(conn, world.pass_ids[1], now_ms=5)

    async with database.transaction() as conn:
        requeued = await jobs.complete(conn, claimed, now_ms=50)

    rows = await _jobs(database)
    assert requeued == 1
    assert [(row.push_token, row.due_at_ms, row.attempts) for row in rows] == [
        (world.tokens[1], 50, 0)
    ]


async def test_forgetting_a_token_keeps_registrations_made_after_the_410(
    database: Database,
) -> None:
    async with database.transaction() as conn:
        await add_pass_type(conn, PT)
        world = await make_world(conn, PT, passes_count=2, registered_at_ms=1_000)
        # The second pass was registered again (same token) after APNs' timestamp.
        await conn.execute(
            registrations.update()
            .where(registrations.c.pass_id == world.pass_ids[1])
            .values(push_token=world.tokens[0], registered_at_ms=5_000)
        )

    async with database.transaction() as conn:
        deleted = await jobs.forget_push_token(conn, world.tokens[0], PT, unregistered_at_ms=2_000)

    async with database.reader() as conn:
        left = (await conn.execute(sa.select(registrations.c.pass_id))).scalars().all()
        device_count = (
            await conn.execute(sa.select(sa.func.count()).select_from(devices))
        ).scalar()
    assert deleted == 1
    assert left == [world.pass_ids[1]]
    assert device_count == 1
