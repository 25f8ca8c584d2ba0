"""push.failed and pass_type.apns_blocked, from the push worker's real outcome code."""

from __future__ import annotations

import time

import httpx

from passhouse.bootstrap import Runtime
from passhouse.push.sender import PushResult
from passhouse.storage import push_jobs
from passhouse.webhooks.worker import Deliverer
from passhouse.worker import send_due_pushes
from push.rows import add_pass_type, make_world
from test_worker import RecordingSender
from webhooks.conftest import add_webhook, deliver_all
from webhooks.receiver import Receiver

PT = "pass.test.webhooks"


async def test_a_push_given_up_on_and_each_block_of_a_pass_type_are_announced(
    admin: httpx.AsyncClient, runtime: Runtime, receiver: Receiver, deliverer: Deliverer
) -> None:
    await add_webhook(admin, receiver, ["push.failed", "pass_type.apns_blocked"])
    async with runtime.database.transaction() as conn:
        await add_pass_type(conn, PT)
        world = await make_world(conn, PT, passes_count=2)
        await push_jobs.enqueue_for_template(
            conn, world.template_id, now_ms=int(time.time() * 1000)
        )
    bad, blocked = world.tokens
    sender = RecordingSender()
    sender.script[bad] = [PushResult(400, "BadTopic", latency=0.001)]
    sender.script[blocked] = [PushResult(403, "BadCertificate", latency=0.001)]

    await send_due_pushes(runtime.database, sender, runtime.settings)
    async with runtime.database.transaction() as conn:  # a new certificate, refused again
        await push_jobs.clear_apns_error(conn, PT)
    await send_due_pushes(runtime.database, sender, runtime.settings)
    await deliver_all(runtime, deliverer)

    events = sorted((r.event["type"], r.event["data"].get("reason")) for r in receiver.received)
    assert events == [
        ("pass_type.apns_blocked", "403 BadCertificate"),
        ("pass_type.apns_blocked", "403 BadCertificate"),
        ("push.failed", "BadTopic"),
    ]
    failed = next(r.event["data"] for r in receiver.received if r.event["type"] == "push.failed")
    assert (failed["pass_type_id"], failed["status"], failed["attempts"]) == (PT, 400, 1)
    assert failed["push_token"] == bad[:8] + "…" + bad[-4:]
