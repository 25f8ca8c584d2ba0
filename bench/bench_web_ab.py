"""Device endpoints of two source trees, measured alternately in one run (before/after).

Runs bench_web.py's scenarios against two `passhouse serve --no-worker` processes on the
same freshly populated database: one from this checkout, one importing passhouse from
--baseline (a `src` folder, e.g. of the previous commit: `git archive HEAD~1 src | tar -x
-C /tmp/base`). Each scenario is measured on A, then on B, --rounds times, so both see
the same machine conditions; the ratio B/A is the figure to read on a noisy machine.

    .venv/bin/python bench/bench_web_ab.py --baseline /tmp/base/src [--db sqlite]
        [--passes 10000] [--duration 8] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

import bench_web  # type: ignore[import-not-found]  # the sibling script, first on sys.path
from passhouse.pkpass.devcerts import make_dev_credentials


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, required=True, help="src folder of A")
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--passes", type=int, default=10_000)
    parser.add_argument("--duration", type=float, default=8)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--scenarios",
        type=bench_web.pick_scenarios,
        default=list(bench_web.SCENARIOS),
        help="only these, e.g. 'register,304' (words of the scenario names)",
    )
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    print(f"A: {args.baseline.resolve()}  B: this checkout; {args.db}, {args.passes:,} passes")
    creds = make_dev_credentials(bench_web.PASS_TYPE_ID, bench_web.TEAM_ID)
    workdir = Path(tempfile.mkdtemp(prefix="bench_web_ab_"))
    data = bench_web.populate(args.db, args.pg_url, workdir, "ab", args.passes, creds)
    servers = []
    try:
        pythonpath = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = str(args.baseline.resolve())
        try:
            a = bench_web.start_server(data.url, workdir, "a")
        finally:
            if pythonpath is None:
                del os.environ["PYTHONPATH"]
            else:
                os.environ["PYTHONPATH"] = pythonpath
        servers.append(a)
        b = bench_web.start_server(data.url, workdir, "b")
        servers.append(b)
        for server in (a, b):
            lua = workdir / "warm.lua"
            bench_web.write_lua(lua, "mix", data)
            bench_web.run_wrk(server, lua, args.warmup * 2)
            bench_web.prewarm(server, data)
        print(
            "\n| Scenario | round | A req/s | B req/s | B/A | A req/CPU-s | B req/CPU-s | B/A"
            " | A / B server CPU ms/req | load |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for name in args.scenarios:
            for round_ in range(1, args.rounds + 1):
                ra = bench_web.measure(a, name, data, workdir, args.duration, args.warmup)
                rb = bench_web.measure(b, name, data, workdir, args.duration, args.warmup)
                print(
                    f"| {name} | {round_} | {ra.rps:,.0f} | {rb.rps:,.0f} | {rb.rps / ra.rps:.2f}"
                    f" | {ra.req_per_cpu_s:,.0f} | {rb.req_per_cpu_s:,.0f} |"
                    f" {rb.req_per_cpu_s / ra.req_per_cpu_s:.2f} |"
                    f" {ra.cpu_ms_per_req:.3f} / {rb.cpu_ms_per_req:.3f} |"
                    f" {os.getloadavg()[0]:.1f} |",
                    flush=True,
                )
    finally:
        for server in servers:
            server.stop()
        data.drop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
