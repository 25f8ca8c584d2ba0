"""Sign ahead: build the files devices are about to ask for while their pushes wait.

After a template change every pass needs a new signature, and each device downloads its
pass within seconds of its push. Pushes are paced (PASSHOUSE_PUSH_RATE_PER_SECOND), so
most devices are woken long after the change was committed: each web process spends that
time signing its share of the waiting passes (pass id modulo the number of web
processes), into the shared pkpass_cache table, so the download is a cached read. It walks
the queue from the newest job back, towards the ones being sent now, which the devices'
own downloads sign meanwhile. A pass signed twice (by a download and by this loop at the
same moment) costs one signature more, nothing else: files are per (pass, version).
See docs/decisions/0023-sign-ahead.md.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import structlog

from passhouse.errors import PasshouseError
from passhouse.issuing import PassBuilder
from passhouse.pkpass.errors import PkpassError
from passhouse.storage import sign_ahead as queries
from passhouse.storage.database import Database
from passhouse.storage.faults import database_fault

log = structlog.get_logger("passhouse.sign_ahead")

# Signatures per sweep: then the loop checks `stop` and sweeps on from its cursor.
SWEEP_SIGNATURES = 1000
# Jobs looked at per statement: a sweep over a signed queue is one statement per window.
WINDOW = 500
IDLE_SECONDS = 1.0
ERROR_PAUSE_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Share:
    """This process signs the passes whose id % count == index."""

    index: int = 0
    count: int = 1


@dataclass(slots=True)
class Cursor:
    """Where the next sweep goes on: the job id to read before (None: the newest job).

    A sweep stops after `limit` signatures; starting the next one from the newest job
    again would read the part already signed once more each time, which for a queue of
    100,000 jobs is most of the work. New jobs are reached when the cursor wraps round.
    """

    before: int | None = None


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def sign_pending(
    database: Database,
    builder: PassBuilder,
    share: Share,
    *,
    limit: int | None = None,
    cursor: Cursor | None = None,
) -> int:
    """One sweep over the queue: sign what is due to be downloaded; returns how many.

    From `cursor` (else from the newest job) to the queue's end, or until `limit`
    signatures were tried; `cursor` is left where the sweep stopped.

    A pass that cannot be built (deleted meanwhile, a template that no longer renders) is
    left to its download, which answers the device with the reason."""
    signed = attempted = 0
    failures: list[str] = []
    cursor = cursor or Cursor()
    while limit is None or attempted < limit:
        async with database.reader() as conn:
            window = await queries.unsigned_pending(
                conn,
                before_job_id=cursor.before,
                share=share.index,
                shares=share.count,
                window=WINDOW,
            )
        for pass_id, version in window.unsigned:
            attempted += 1
            try:
                await builder.pkpass(database, pass_id, version)
            except (PasshouseError, PkpassError) as error:
                failures.append(f"{pass_id}: {error}")
            else:
                signed += 1
            await asyncio.sleep(0)  # device requests go first between two signatures
        cursor.before = window.next_before
        if cursor.before is None:
            break
    if failures:
        log.warning("sign_ahead_skipped", count=len(failures), first=failures[0])
    return signed


async def run_sign_ahead(
    database: Database, builder: PassBuilder, share: Share, stop: asyncio.Event
) -> None:
    """Until `stop`: sweep, and when nothing is left to sign, look again a second later."""
    cursor = Cursor()
    while not stop.is_set():
        try:
            signed = await sign_pending(
                database, builder, share, limit=SWEEP_SIGNATURES, cursor=cursor
            )
        except Exception as error:
            # A database outage is logged once, by database.outages (as the worker does);
            # anything else in full. Downloads sign on demand meanwhile; retry later.
            fault = database_fault(error)
            if fault is not None:
                database.outages.report(fault, error)
            else:
                log.exception("sign_ahead_failed")
            await _pause(stop, ERROR_PAUSE_SECONDS)
            continue
        if signed == 0:
            await _pause(stop, IDLE_SECONDS)
