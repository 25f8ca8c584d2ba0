"""Install analytics latency at 1,000,000 passes and 2,000,000 registrations.

    .venv/bin/python bench/bench_stats.py [--db sqlite|postgresql|both] [--passes 1000000] \
        [--registrations 2000000] [--repeat 20] [--pg-url postgresql://postgres@127.0.0.1:5432/test]

The data set (bench/dataset.py: a year of passes, two devices on each pass, and the hourly
counters that year leaves) is built set-based in a fresh database, never analyzed. Each
case calls the use case GET /api/v1/stats calls (passhouse.analytics.stats) on a read
connection: the first call (cold) and the median and slowest of --repeat calls. Then, as a
check that the counters are the figures, the totals are compared with counts of the big
tables (timed too: what a scan would cost).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import tempfile
import time
from typing import Any

import sqlalchemy as sa

import dataset  # type: ignore[import-not-found]  # the sibling module, first on sys.path
from passhouse import analytics
from passhouse.storage.database import Database


def cases(now: dt.datetime) -> list[tuple[str, dict[str, Any]]]:
    ninety = now - dt.timedelta(days=90)
    week = now - dt.timedelta(days=7)
    return [
        ("90 days by the day, everything", {"start": ninety, "end": now}),
        ("90 days by the day, one pass type", {"start": ninety, "pass_type_id": dataset.PT}),
        ("90 days by the day, one template", {"start": ninety, "template": "template-2"}),
        ("365 days by the day, everything", {"start": now - dt.timedelta(days=365)}),
        ("7 days by the hour, everything", {"start": week, "interval": "hour"}),
        (
            "7 days by the hour, one template",
            {"start": week, "interval": "hour", "template": "template-3"},
        ),
    ]


async def measure(url: str, repeat: int) -> None:
    database = Database(url)
    now = dt.datetime.now(dt.UTC)
    try:
        print(f"{'case':40} {'cold ms':>8} {'p50 ms':>8} {'max ms':>8} {'points':>6}")
        for name, params in cases(now):
            timings = []
            points = 0
            for _ in range(repeat + 1):
                async with database.reader() as conn:
                    started = time.perf_counter()
                    answer = await analytics.stats(conn, now=int(now.timestamp()), **params)
                    timings.append((time.perf_counter() - started) * 1000)
                    points = len(answer["series"])
            cold, warm = timings[0], timings[1:]
            print(
                f"{name:40} {cold:8.1f} {statistics.median(warm):8.1f} {max(warm):8.1f}"
                f" {points:6d}",
                flush=True,
            )
        async with database.reader() as conn:
            totals = (await analytics.stats(conn, now=int(now.timestamp())))["totals"]
            started = time.perf_counter()
            passes = await conn.scalar(sa.text("SELECT count(*) FROM passes"))
            voided = await conn.scalar(sa.text("SELECT count(*) FROM passes WHERE voided"))
            installs = await conn.scalar(sa.text("SELECT count(*) FROM registrations"))
            scanned = (time.perf_counter() - started) * 1000
        assert (totals["passes"], totals["voided"], totals["active_installs"]) == (
            passes,
            voided,
            installs,
        ), (totals, passes, voided, installs)
        print(
            f"# totals match counts of the tables ({passes:,} passes, {voided:,} voided,"
            f" {installs:,} installs); those counts took {scanned:.0f} ms",
            flush=True,
        )
    finally:
        await database.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--passes", type=int, default=1_000_000)
    parser.add_argument("--registrations", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    dialects = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    for dialect in dialects:
        with tempfile.TemporaryDirectory() as folder:
            async with dataset.built(
                dialect,
                passes=args.passes,
                registrations=args.registrations,
                pg_url=args.pg_url,
                folder=folder,
            ) as url:
                print(f"## {dialect}: {args.passes:,} passes", flush=True)
                await measure(url, args.repeat)


if __name__ == "__main__":
    asyncio.run(main())
