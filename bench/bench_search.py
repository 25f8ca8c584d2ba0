"""Search and list latency at 1,000,000 passes, on SQLite and PostgreSQL.

    .venv/bin/python bench/bench_search.py [--db sqlite|postgresql|both] [--passes 1000000] \
        [--repeat 20] [--pg-url postgresql://postgres@127.0.0.1:5432/test]

The data set (bench/dataset.py) is built set-based in a fresh database and never analyzed
(autovacuum off on PostgreSQL). Each case calls the use case the API calls
(passhouse.search.find_passes, 100 passes a page, their installs included) on a read
connection: the first call (cold: no statistics, nothing of the query cached) and then the
median and the slowest of --repeat calls.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from typing import Any

import sqlalchemy as sa

import dataset  # type: ignore[import-not-found]  # the sibling module, first on sys.path
from passhouse import search
from passhouse.storage.database import Database


def cases(passes: int, modified_middle: int) -> list[tuple[str, dict[str, Any]]]:
    g = passes // 2 + 7
    return [
        ("newest first, page 1", {}),
        ("newest first, page at the middle (cursor)", {"cursor": str(passes // 2)}),
        (
            "oldest first, page at the middle (cursor)",
            {"sort": "created", "cursor": str(passes // 2)},
        ),
        ("-updated, page 1", {"sort": "-updated"}),
        (
            "-updated, page at the middle",
            {"sort": "-updated", "cursor": f"{modified_middle}-{passes // 2}"},
        ),
        ("template filter, newest first", {"template": "template-2"}),
        ("template filter, -updated", {"template": "template-2", "sort": "-updated"}),
        ("voided=true (1 %)", {"voided": True}),
        ("installed=true", {"installed": True}),
        ("installed=false", {"installed": False}),
        ("q: a serial (1 pass)", {"q": f"m{g:07d}"}),
        ("q: a serial prefix (10 passes)", {"q": f"m{g:07d}"[:-1]}),
        ("q: a last name (~N/8000)", {"q": dataset.last_name(g)}),
        ("q: a first name (~N/400)", {"q": dataset.first_name(g)}),
        ("q: first and last name", {"q": f"{dataset.first_name(g)} {dataset.last_name(g)}"}),
        ("q: a tier (N/3)", {"q": "gold"}),
        ("q: two letters (many words)", {"q": "ka"}),
        ("q: one letter", {"q": "k"}),
        ("q: a tier and a city", {"q": "gold city7"}),
        ("q: a tier, a city, next page", {"q": "gold city7", "cursor": str(passes // 2)}),
        ("q: no match", {"q": "zzzz"}),
        (
            "q: a first name, installed, template",
            {"q": dataset.first_name(g), "installed": True, "template": "template-3"},
        ),
    ]


async def measure(url: str, passes: int, repeat: int) -> None:
    database = Database(url)
    try:
        async with database.reader() as conn:
            middle = await conn.scalar(
                sa.text("SELECT modified_at FROM passes WHERE id = :id"), {"id": passes // 2}
            )
        print(f"{'case':48} {'cold ms':>8} {'p50 ms':>8} {'max ms':>8} {'rows':>5}")
        for name, params in cases(passes, int(middle)):
            timings = []
            rows = 0
            for _ in range(repeat + 1):
                async with database.reader() as conn:
                    started = time.perf_counter()
                    page = await search.find_passes(conn, **params)
                    timings.append((time.perf_counter() - started) * 1000)
                    rows = len(page.rows)
            cold, warm = timings[0], timings[1:]
            print(
                f"{name:48} {cold:8.1f} {statistics.median(warm):8.1f} {max(warm):8.1f} {rows:5d}",
                flush=True,
            )
    finally:
        await database.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--passes", type=int, default=1_000_000)
    parser.add_argument("--registrations", type=int, default=200_000)
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
                await measure(url, args.passes, args.repeat)


if __name__ == "__main__":
    asyncio.run(main())
