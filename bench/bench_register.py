"""The cost the install counters add to a new device registration, on PostgreSQL.

    .venv/bin/python bench/bench_register.py [--count 2000] [--rounds 3] \
        [--pg-url postgresql://postgres@127.0.0.1:5432/test]

In a fresh database of 10,000 passes, new registrations (a new device each) are made with
the hot path's statement as it was before the counters (storage/hot_path.py at 787f45a,
kept below) and as it is now (the batch statement given one registration: it also checks
the cap, upserts the hour's counter and the first install, and records the webhook
event), alternating in rounds so both see the same machine; then renewals (the same
devices again), which the counters must not touch. Prints registrations per second
and the ratio now / before.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import tempfile
import time

import sqlalchemy as sa

import dataset  # type: ignore[import-not-found]  # the sibling module, first on sys.path
from passhouse.storage import hot_path

BEFORE = """
WITH device AS (
    INSERT INTO devices (device_library_id, created_at) VALUES ($1, $2)
    ON CONFLICT (device_library_id) DO UPDATE SET device_library_id = EXCLUDED.device_library_id
    RETURNING id
)
INSERT INTO registrations (device_id, pass_id, push_token, registered_at_ms)
SELECT id, $3, $4, $5 FROM device
ON CONFLICT (device_id, pass_id) DO UPDATE
    SET push_token = EXCLUDED.push_token, registered_at_ms = EXCLUDED.registered_at_ms
RETURNING (xmax = 0) AS created
"""
PASSES = 10_000


async def run(url: str, count: int, rounds: int) -> None:
    import asyncpg  # type: ignore[import-untyped]

    dsn = sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    # As the server's hot path connects (generic plans only, storage/hot_path.py).
    connection = await asyncpg.connect(
        dsn, server_settings={"plan_cache_mode": "force_generic_plan"}
    )
    # The data set gave devices explicit ids.
    await connection.execute(
        "SELECT setval(pg_get_serial_sequence('devices', 'id'), (SELECT max(id) FROM devices))"
    )
    statements = {"before": BEFORE, "now": hot_path._PG_REGISTER_BATCH}
    rates: dict[str, list[float]] = {"before": [], "now": [], "renew before": [], "renew now": []}
    try:
        for round_no in range(rounds):
            for name, sql in statements.items():
                prepared = await connection.prepare(sql)
                for kind in ("", "renew "):
                    started = time.perf_counter()
                    for n in range(count):
                        now_ms = int(time.time() * 1000)
                        device, pass_id, token = f"{name}-{round_no}-{n}", 1 + n % PASSES, f"t{n}"
                        if name == "before":
                            await prepared.fetchval(device, now_ms // 1000, pass_id, token, now_ms)
                        else:  # a batch of one, with the default cap
                            [(_, found, _, _)] = await prepared.fetch(
                                [device],
                                [dataset.PT],
                                [f"m{pass_id:07d}"],
                                [hashlib.sha256(f"token{pass_id}".encode()).digest()],
                                [token],
                                [now_ms],
                                ["apns"],
                                [""],
                                [device[:8]],
                                [10_000],
                            )
                            assert found is not None, "the pass was not found"
                    rates[kind + name].append(count / (time.perf_counter() - started))
    finally:
        await connection.close()
    for name, values in rates.items():
        print(f"{name:14} {max(values):8.0f} registrations/s (best of {rounds})")
    for label, key in (("new registrations", ""), ("renewals", "renew ")):
        ratio = max(rates[key + "now"]) / max(rates[key + "before"])
        print(f"{label:18} now / before = {ratio:.2f}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        async with dataset.built(
            "postgresql", passes=PASSES, registrations=1000, pg_url=args.pg_url, folder=folder
        ) as url:
            await run(url, args.count, args.rounds)


if __name__ == "__main__":
    asyncio.run(main())
