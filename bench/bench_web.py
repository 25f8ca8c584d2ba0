"""Device endpoints (PassKit web service): requests per second of ONE server process.

Populates a fresh database set-based (10,000 passes, 2 registrations each by default),
starts `passhouse serve --no-worker` pinned to CPU 0 and drives it with wrk pinned to CPU 1
(-t1 -c32) through Lua scripts that pick random passes and devices from the data set:

    changed-serials 204  GET  .../devices/{dlid}/registrations/{ptid}?passesUpdatedSince=<max>
    changed-serials 200  the same with an old tag (a device last synced long ago: 90 % of
      (old tag)          the passes changed since), so its passes are listed
    latest pass 304      GET  .../passes/{ptid}/{serial} (If-Modified-Since = Last-Modified)
    latest pass 200      GET  the same without If-Modified-Since, over passes with cached bytes
    register 201         POST .../devices/{new id}/registrations/{ptid}/{serial}
    device mix           50% 304, 30% 204, 10% 200, 10% register

Besides wrk's req/s and latency it reads the server's CPU time from /proc/<pid>/stat:
requests per CPU-second of the server is the less noisy figure on a shared machine.
Flat cost: the 204 and 304 scenarios again on a database with --large passes, alternating
with the small database's server so both are measured in the same conditions.
Planner cliff (--planner): every scenario on two databases loaded alike, one never analyzed
(as right after a first deploy, a restore or a large import; autovacuum off for its tables
on PostgreSQL so it stays that way) and one analyzed, alternating between their servers;
the target is at least 85 % of the analyzed rate on unanalyzed data.

    .venv/bin/python bench/bench_web.py [--db sqlite|postgresql|both] [--passes 10000]
        [--duration 10] [--large 1000000] [--pg-url postgresql://postgres@127.0.0.1:5432/test]
        [--planner on|off|only]

--large 0 skips the flat-cost part. --profile DIR records py-spy samples of the server
(collapsed stacks, for flamegraph.pl or speedscope) during each scenario; this slows the
server, so do not read figures from such a run.
"""

# The populating SQL is built from integers and constants of this file, never from input.
# ruff: noqa: S608

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import email.utils
import json
import os
import platform
import re
import secrets
import shlex
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

import dataset  # type: ignore[import-not-found]  # the sibling module, first on sys.path
from passhouse.pkpass.devcerts import DevCredentials, make_dev_credentials
from passhouse.storage import migrate
from passhouse.storage.database import Database

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
PASS_TYPE_ID = "pass.bench.passhouse"  # noqa: S105 (an identifier)
TEAM_ID, SECRET_KEY, ADMIN_TOKEN = dataset.TEAM_ID, dataset.SECRET_KEY, dataset.ADMIN_TOKEN
free_port, family_cpu = dataset.free_port, dataset.family_cpu
postgres_cpu_seconds = dataset.postgres_cpu_seconds
SAMPLE = 1000  # passes (and their devices) the Lua scripts pick from
CACHED = 300  # distinct passes of the cached-200 scenario
PUBLIC_URL = "http://127.0.0.1:8000"
SERVER_CPU = "0"
WRK_CPU = "1"
CONNECTIONS = int(os.environ.get("BENCH_WEB_CONNECTIONS", "32"))
# BENCH_WEB_WRK_NICE=-10 runs wrk at that niceness: a server process that shares wrk's CPU
# then cannot delay the one client thread every connection waits on (needs root).
WRK_PREFIX = (
    ["nice", "-n", os.environ["BENCH_WEB_WRK_NICE"]] if os.environ.get("BENCH_WEB_WRK_NICE") else []
)
# The old tag: a device last synced when a tenth of today's versions existed.
OLD_TAG_FRACTION = 10
# Unanalyzed data must keep at least this share of the analyzed rate (issue 8).
PLANNER_TARGET = 0.85
# The last line of a traceback: "package.module.SomeError: message".
EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Disconnect|Timeout)\w*(:|$)")

SCENARIOS = {
    # name: (lua mode, statuses that count as success)
    "changed-serials 204": ("serials", {204}),
    "changed-serials 200 (old tag)": ("oldtag", {200}),
    "latest pass 304": ("notmodified", {304}),
    "latest pass 200 (cached)": ("cached", {200}),
    "register 201": ("register", {201}),
    "device mix": ("mix", {200, 201, 204, 304}),
}


def pick_scenarios(text: str) -> list[str]:
    """--scenarios: comma-separated words, each naming the scenarios that contain it."""
    words = [word.strip() for word in text.split(",") if word.strip()]
    picked = [name for name in SCENARIOS if any(word in name for word in words)]
    if not picked:
        raise argparse.ArgumentTypeError(f"no scenario matches {text!r}: {', '.join(SCENARIOS)}")
    return picked


TARGETS = {
    "changed-serials 204": 1500,
    "latest pass 304": 1500,
    "latest pass 200 (cached)": 1000,
    "register 201": 800,
}
DJANGO_WALLETPASS = {
    "changed-serials 204": 110,
    "latest pass 304": 290,
    "latest pass 200 (cached)": 220,
    "register 201": 190,
}


# --- data --------------------------------------------------------------------------------


@dataclass
class Dataset:
    url: str
    passes: int
    max_version: int
    sample: list[tuple[str, str, int]]  # serial, token, modified_at
    devices: list[str]
    populate_seconds: float
    drop: Any = None


def fresh_database(kind: str, pg_url: str, workdir: Path, label: str) -> tuple[str, Any]:
    """(url, drop callable) of a new empty database."""
    url, drop = asyncio.run(dataset.new_database(kind, pg_url, workdir, label))
    return url, lambda: asyncio.run(drop())


def _populate_sql(dialect: str, n: int, template_id: int, now: int) -> list[str]:
    width = max(6, len(str(n)))
    half = n // 2
    data = json.dumps({"name": "Bench Member", "balance": 12.5})
    mod0 = now - 7 * 86_400
    now_ms = now * 1000
    if dialect == "postgresql":
        gen = f"generate_series(1, {n}) AS g"
        serial = f"'s' || lpad(g::text, {width}, '0')"
        token = "md5(random()::text || g::text)"  # noqa: S105 (SQL, not a secret)
        push = "md5(random()::text) || md5(random()::text)"
        return [
            "SET LOCAL synchronous_commit = off",
            "INSERT INTO passes (id, pass_type_id, serial_number, template_id,"
            " authentication_token, share_id, data, voided, version, modified_at, created_at)"
            f" SELECT g, '{PASS_TYPE_ID}', {serial}, {template_id}, {token}, 'share' || g,"
            f" '{data}'::json, false, g, {mod0} + (g % 86400), {now} FROM {gen}",
            f"INSERT INTO devices (id, device_library_id, created_at)"
            f" SELECT g, md5(random()::text || 'd' || g::text), {now} FROM {gen}",
            # Device g holds pass g and pass g + n/2: two registrations per pass and device.
            "INSERT INTO registrations (device_id, pass_id, push_token, registered_at_ms)"
            f" SELECT g, g, {push}, {now_ms} FROM {gen}"
            f" UNION ALL SELECT g, ((g - 1 + {half}) % {n}) + 1, {push}, {now_ms} FROM {gen}",
            f"SELECT setval(pg_get_serial_sequence('passes', 'id'), {n})",
            f"SELECT setval(pg_get_serial_sequence('devices', 'id'), {n})",
            f"UPDATE pass_types SET last_version = {n} WHERE pass_type_id = '{PASS_TYPE_ID}'",
        ]
    rec = f"WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < {n}) "
    return [
        rec + "INSERT INTO passes (id, pass_type_id, serial_number, template_id,"
        " authentication_token, share_id, data, voided, version, modified_at, created_at)"
        f" SELECT x, '{PASS_TYPE_ID}', printf('s%0{width}d', x), {template_id},"
        f" lower(hex(randomblob(16))), 'share' || x, '{data}', 0, x, {mod0} + (x % 86400),"
        f" {now} FROM g",
        rec + "INSERT INTO devices (id, device_library_id, created_at)"
        f" SELECT x, lower(hex(randomblob(16))), {now} FROM g",
        rec + "INSERT INTO registrations (device_id, pass_id, push_token, registered_at_ms)"
        f" SELECT x, x, lower(hex(randomblob(32))), {now_ms} FROM g"
        f" UNION ALL SELECT x, ((x - 1 + {half}) % {n}) + 1, lower(hex(randomblob(32))),"
        f" {now_ms} FROM g",
        f"UPDATE pass_types SET last_version = {n} WHERE pass_type_id = '{PASS_TYPE_ID}'",
    ]


async def _populate(url: str, n: int, creds: DevCredentials, *, analyze: bool = True) -> None:
    database = Database(url)
    try:
        await migrate.upgrade(database)
        async with database.transaction() as conn:
            template_id = await dataset.add_pass_type_and_template(conn, PASS_TYPE_ID, creds)
            if not analyze:
                for statement in _keep_unanalyzed_sql(database.dialect):
                    await conn.execute(sa.text(statement))
            for statement in _populate_sql(database.dialect, n, template_id, int(time.time())):
                await conn.execute(sa.text(statement))
        if analyze:
            await dataset.vacuum_analyze(database)
    finally:
        await database.dispose()


def populate(
    kind: str,
    pg_url: str,
    workdir: Path,
    label: str,
    n: int,
    creds: DevCredentials,
    *,
    analyze: bool = True,
) -> Dataset:
    url, drop = fresh_database(kind, pg_url, workdir, label)
    started = time.perf_counter()
    asyncio.run(_populate(url, n, creds, analyze=analyze))
    dataset.settle_sqlite(url, analyze=analyze)
    seconds = time.perf_counter() - started
    sample, devices = asyncio.run(_sample(url))
    return Dataset(url, n, n, sample, devices, seconds, drop)


async def _sample(url: str) -> tuple[list[tuple[str, str, int]], list[str]]:
    database = Database(url)
    try:
        async with database.reader() as conn:
            rows = (
                await conn.execute(
                    sa.text(
                        "SELECT id, serial_number, authentication_token, modified_at FROM passes"
                        f" ORDER BY random() LIMIT {SAMPLE}"
                    )
                )
            ).all()
            ids = ", ".join(str(row.id) for row in rows)
            devices = (
                await conn.execute(
                    sa.text(f"SELECT device_library_id FROM devices WHERE id IN ({ids})")
                )
            ).scalars()
            return [
                (r.serial_number, r.authentication_token, int(r.modified_at)) for r in rows
            ], list(devices)
    finally:
        await database.dispose()


# --- server and wrk ----------------------------------------------------------------------


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_seconds(self) -> float:
        """utime + stime of serve and its web processes (--workers N spawns N children)."""
        return float(family_cpu(self.pid))

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_server(
    url: str, workdir: Path, label: str, workers: int = 1, cpus: str = SERVER_CPU
) -> Server:
    port = free_port()
    data_dir = workdir / f"data-{label}"
    data_dir.mkdir(exist_ok=True)
    env = dict(os.environ)
    env.update(
        PASSHOUSE_DATABASE_URL=url,
        PASSHOUSE_SECRET_KEY=SECRET_KEY,
        PASSHOUSE_DATA_DIR=str(data_dir),
        PASSHOUSE_DEV_MODE="false",
        PASSHOUSE_ADMIN_TOKEN=ADMIN_TOKEN,
        # One address for every server on a database, as in production: a server with
        # another one re-versions (and pushes) at start the passes the others signed
        # (ADR 0012), which turned the 204 and 304 scenarios into 200s.
        PASSHOUSE_PUBLIC_URL=PUBLIC_URL,
        # wrk is one client address: the per-address limit would measure itself (ADR 0010).
        PASSHOUSE_REGISTRATION_RATE_PER_MINUTE="0",
        # As an environment variable, not --workers: a tree from before it ignores it.
        PASSHOUSE_WEB_WORKERS=str(workers),
        # N processes hold as many PostgreSQL connections in all as one (a shared server
        # runs out of connections otherwise).
        PASSHOUSE_DATABASE_POOL_SIZE=str(max(4, 20 // workers)),
    )
    log = workdir / f"server-{label}.log"
    command = [
        "taskset",
        "-c",
        cpus,
        str(VENV_BIN / "passhouse"),
        "serve",
        "--no-worker",
        "--port",
        str(port),
        # The default level: the access log is on, as in production.
        "--log-level",
        "info",
    ]
    process = subprocess.Popen(
        command, env=env, cwd=workdir, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )
    server = Server(process, port, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return server
        except OSError:
            time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"server did not start: {log.read_text()[-2000:]}")


LUA = r"""
local ptid = "%(ptid)s"
local run_id = "%(run_id)s"
local mode = "%(mode)s"
local max_version = "%(max_version)s"
local old_tag = "%(old_tag)s"
local passes = {%(passes)s}
local cached = %(cached)d
local devices = {%(devices)s}
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

local r304, r200, r204, rold = {}, {}, {}, {}
local counter = 0

function init(args)
  statuses = {}
  math.randomseed(os.time() * 1000 + (tid or 0))
  for i, p in ipairs(passes) do
    local path = "/passkit/v1/passes/" .. ptid .. "/" .. p[1]
    r304[i] = wrk.format("GET", path, {["Authorization"] = "ApplePass " .. p[2],
                                       ["If-Modified-Since"] = p[3]})
    if i <= cached then
      r200[i] = wrk.format("GET", path, {["Authorization"] = "ApplePass " .. p[2]})
    end
  end
  for i, d in ipairs(devices) do
    r204[i] = wrk.format("GET", "/passkit/v1/devices/" .. d .. "/registrations/" .. ptid
                         .. "?passesUpdatedSince=" .. max_version)
    rold[i] = wrk.format("GET", "/passkit/v1/devices/" .. d .. "/registrations/" .. ptid
                         .. "?passesUpdatedSince=" .. old_tag)
  end
end

local function register()
  counter = counter + 1
  local p = passes[math.random(#passes)]
  local dlid = run_id .. "t" .. tid .. "n" .. counter
  return wrk.format("POST", "/passkit/v1/devices/" .. dlid .. "/registrations/" .. ptid
                    .. "/" .. p[1],
                    {["Authorization"] = "ApplePass " .. p[2],
                     ["Content-Type"] = "application/json"},
                    '{"pushToken":"' .. run_id .. string.format("%%040d", counter) .. '"}')
end

function request()
  local m = mode
  if m == "mix" then
    local x = math.random(100)
    if x <= 50 then m = "notmodified" elseif x <= 80 then m = "serials"
    elseif x <= 90 then m = "cached" else m = "register" end
  end
  if m == "notmodified" then return r304[math.random(#r304)]
  elseif m == "serials" then return r204[math.random(#r204)]
  elseif m == "oldtag" then return rold[math.random(#rold)]
  elseif m == "cached" then return r200[math.random(#r200)]
  else return register() end
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local counts = {}
  for _, t in ipairs(threads) do
    local s = t:get("statuses")
    for k, v in pairs(s) do counts[k] = (counts[k] or 0) + v end
  end
  local parts = {}
  for k, v in pairs(counts) do table.insert(parts, string.format('"%%d": %%d', k, v)) end
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p99_us": %%d,'
    .. ' "socket_errors": %%d, "timeouts": %%d, "statuses": {%%s}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write, e.timeout, table.concat(parts, ", ")))
end
"""


def write_lua(path: Path, mode: str, data: Dataset) -> None:
    def http_date(seconds: int) -> str:
        return email.utils.formatdate(seconds, usegmt=True)

    passes = ", ".join(
        f'{{"{serial}", "{token}", "{http_date(modified)}"}}'
        for serial, token, modified in data.sample
    )
    devices = ", ".join(f'"{d}"' for d in data.devices)
    path.write_text(
        LUA
        % {
            "ptid": PASS_TYPE_ID,
            "run_id": "b" + secrets.token_hex(4),
            "mode": mode,
            "max_version": data.max_version,
            "old_tag": data.max_version // OLD_TAG_FRACTION,
            "passes": passes,
            "cached": CACHED,
            "devices": devices,
        }
    )


@dataclass
class Result:
    scenario: str
    rps: float
    p50_ms: float
    p99_ms: float
    bad: int
    statuses: dict[str, int]
    cpu_ms_per_req: float
    req_per_cpu_s: float
    cpu_util: float
    pg_cpu_ms_per_req: float = float("nan")
    extra: dict[str, Any] = field(default_factory=dict)


def run_wrk(
    server: Server, lua: Path, duration: float, profile: Path | None = None
) -> dict[str, Any]:
    command = [
        *WRK_PREFIX,
        "taskset",
        "-c",
        WRK_CPU,
        "wrk",
        "-t1",
        f"-c{CONNECTIONS}",
        f"-d{max(1, round(duration))}s",
        "--timeout",
        "10s",
        "-s",
        str(lua),
        f"http://127.0.0.1:{server.port}",
    ]
    spy = None
    if profile is not None:
        spy = subprocess.Popen(
            [
                str(VENV_BIN / "py-spy"),
                "record",
                "-o",
                str(profile),
                "--pid",
                str(server.pid),
                "-d",
                str(int(duration)),
                "-r",
                "200",
                "--format",
                "raw",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    pg0, cpu0, wall0 = postgres_cpu_seconds(), server.cpu_seconds(), time.perf_counter()
    # wait4 gives wrk's own CPU time: the client shares the machine's two cores.
    with tempfile.TemporaryFile() as out_file, tempfile.TemporaryFile() as err_file:
        wrk = subprocess.Popen(command, stdout=out_file, stderr=err_file)
        _, status, usage = os.wait4(wrk.pid, 0)
        wrk.returncode = os.waitstatus_to_exitcode(status)
        cpu1, wall1, pg1 = server.cpu_seconds(), time.perf_counter(), postgres_cpu_seconds()
        out_file.seek(0)
        err_file.seek(0)
        out = out_file.read().decode(errors="replace")
        if wrk.returncode != 0:
            err = err_file.read().decode(errors="replace")
            raise RuntimeError(f"wrk failed ({wrk.returncode}): {out}\n{err}")
    if spy is not None:
        spy.wait()
    for line in out.splitlines():
        if line.startswith("BENCHJSON "):
            report: dict[str, Any] = json.loads(line.removeprefix("BENCHJSON "))
            report["cpu_s"] = cpu1 - cpu0
            report["pg_cpu_s"] = pg1 - pg0
            report["wall_s"] = wall1 - wall0
            report["client_cpu_s"] = usage.ru_utime + usage.ru_stime
            return report
    raise RuntimeError(f"no report from wrk:\n{out}")


def measure(
    server: Server,
    name: str,
    data: Dataset,
    workdir: Path,
    duration: float,
    warmup: float,
    profile_dir: Path | None = None,
    label: str = "",
) -> Result:
    mode, expected = SCENARIOS[name]
    lua = workdir / f"{mode}.lua"
    write_lua(lua, mode, data)
    if warmup > 0:
        run_wrk(server, lua, warmup)
        write_lua(lua, mode, data)  # a new run id: register must not reuse device ids
    profile = None
    if profile_dir is not None:
        profile = profile_dir / f"{label}-{mode}.collapsed"
    report = run_wrk(server, lua, duration, profile)
    requests = report["requests"]
    seconds = report["duration_us"] / 1e6
    bad = report["socket_errors"] + report["timeouts"]
    bad += sum(v for k, v in report["statuses"].items() if int(k) not in expected)
    cpu = report["cpu_s"]
    return Result(
        scenario=name,
        rps=requests / seconds,
        p50_ms=report["p50_us"] / 1000,
        p99_ms=report["p99_us"] / 1000,
        bad=bad,
        statuses=report["statuses"],
        cpu_ms_per_req=1000 * cpu / requests if requests else float("nan"),
        req_per_cpu_s=requests / cpu if cpu else float("nan"),
        cpu_util=cpu / report["wall_s"],
        pg_cpu_ms_per_req=1000 * report["pg_cpu_s"] / requests if requests else float("nan"),
        extra={
            "client_cpu_util": report["client_cpu_s"] / report["wall_s"],
            "socket_errors": report["socket_errors"],
            "timeouts": report["timeouts"],
        },
    )


def prewarm(server: Server, data: Dataset) -> float:
    """Fetch the cached-200 passes once so their signed bytes are cached; seconds taken."""
    started = time.perf_counter()
    for serial, token, _ in data.sample[:CACHED]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{server.port}/passkit/v1/passes/{PASS_TYPE_ID}/{serial}",
            headers={"Authorization": f"ApplePass {token}"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (local)
            response.read()
    return time.perf_counter() - started


# --- planner cliff: unanalyzed vs analyzed data --------------------------------------------


def _keep_unanalyzed_sql(dialect: str) -> list[str]:
    """Keep autovacuum from analyzing the hot tables, so they stay as a bulk load leaves them."""
    if dialect != "postgresql":
        return []  # SQLite has statistics only after an explicit ANALYZE
    tables = ("passes", "devices", "registrations")
    return [f"ALTER TABLE {table} SET (autovacuum_enabled = false)" for table in tables]


def analyze(data: Dataset) -> None:
    if data.url.startswith("sqlite"):
        with sqlite3.connect(data.url.removeprefix("sqlite:///")) as conn:
            conn.execute("ANALYZE")
        return

    async def vacuum_analyze() -> None:
        database = Database(data.url)
        try:
            async with database.engine.connect() as conn:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(sa.text("VACUUM ANALYZE"))
        finally:
            await database.dispose()

    asyncio.run(vacuum_analyze())


def has_statistics(data: Dataset) -> bool:
    if data.url.startswith("sqlite"):
        with sqlite3.connect(data.url.removeprefix("sqlite:///")) as conn:
            found = conn.execute(
                "SELECT count(*) FROM sqlite_schema WHERE name = 'sqlite_stat1'"
            ).fetchone()
            return bool(found[0])

    async def reltuples() -> bool:
        database = Database(data.url)
        try:
            async with database.reader() as conn:
                analyzed = await conn.scalar(
                    sa.text(
                        "SELECT bool_or(reltuples >= 0) FROM pg_class"
                        " WHERE relname IN ('passes', 'devices', 'registrations')"
                    )
                )
                return bool(analyzed)
        finally:
            await database.dispose()

    return asyncio.run(reltuples())


def run_planner(kind: str, args: argparse.Namespace, creds: DevCredentials, workdir: Path) -> None:
    """Every scenario on never-analyzed data against the same data analyzed, alternating."""
    print(f"\n## {kind}: planner cliff, {args.passes:,} passes, unanalyzed vs analyzed", flush=True)
    datasets: list[Dataset] = []
    servers: list[Server] = []
    try:
        for label in ("fresh", "analyzed"):
            datasets.append(
                populate(
                    kind,
                    args.pg_url,
                    workdir,
                    f"{kind}_{label}",
                    args.passes,
                    creds,
                    analyze=False,
                )
            )
        fresh, analyzed = datasets
        analyze(analyzed)
        for data, label in ((fresh, "fresh"), (analyzed, "analyzed")):
            server = start_server(data.url, workdir, f"{kind}-{label}")
            servers.append(server)
            lua = workdir / f"warm-{label}.lua"
            write_lua(lua, "mix", data)
            run_wrk(server, lua, args.warmup * 2)
            prewarm(server, data)
        rows = []
        rounds = max(1, args.planner_rounds)
        for name in args.scenarios:
            # Short rounds, alternating which database goes first, so both see the same
            # share of whatever else the machine is doing.
            runs: dict[int, list[Result]] = {id(fresh): [], id(analyzed): []}
            for round_ in range(rounds):
                pair = list(zip(servers, datasets, strict=True))
                if round_ % 2:
                    pair.reverse()
                for server, data in pair:
                    warmup = args.warmup if round_ == 0 else 0.0
                    runs[id(data)].append(
                        measure(server, name, data, workdir, args.duration / rounds, warmup)
                    )
            rows.append((name, combine(runs[id(fresh)]), combine(runs[id(analyzed)])))
            print(
                f"  {name}: {rows[-1][1].rps:,.0f} unanalyzed,"
                f" {rows[-1][2].rps:,.0f} analyzed req/s",
                flush=True,
            )
        stats = f"statistics afterwards: unanalyzed {has_statistics(fresh)}, analyzed"
        print(f"{stats} {has_statistics(analyzed)}")
        print_planner_table(kind, args.passes, rows)
    finally:
        for server in servers:
            server.stop()
        for data in datasets:
            if not args.keep:
                data.drop()


def combine(results: list[Result]) -> Result:
    """One Result for several runs of a scenario: totals, so each run counts by its length."""
    requests = [sum(r.statuses.values()) for r in results]
    total = sum(requests)
    seconds = sum(n / r.rps for n, r in zip(requests, results, strict=True))
    cpu = sum(n * r.cpu_ms_per_req / 1000 for n, r in zip(requests, results, strict=True))
    pg = sum(n * r.pg_cpu_ms_per_req / 1000 for n, r in zip(requests, results, strict=True))
    statuses: Counter[str] = Counter()
    for r in results:
        statuses.update(r.statuses)
    return Result(
        scenario=results[0].scenario,
        rps=total / seconds,
        p50_ms=max(r.p50_ms for r in results),
        p99_ms=max(r.p99_ms for r in results),
        bad=sum(r.bad for r in results),
        statuses=dict(statuses),
        cpu_ms_per_req=1000 * cpu / total,
        req_per_cpu_s=total / cpu,
        cpu_util=cpu / seconds,
        pg_cpu_ms_per_req=1000 * pg / total,
    )


def print_planner_table(kind: str, passes: int, rows: list[tuple[str, Result, Result]]) -> None:
    pg = kind == "postgresql"
    print(f"\n### {kind}: unanalyzed vs analyzed data, {passes:,} passes, one server process\n")
    pg_head = " PostgreSQL CPU ms/req (unanalyzed/analyzed) | server + PostgreSQL CPU ratio |"
    print(
        "| Scenario | unanalyzed req/s | analyzed req/s | ratio | unanalyzed req/CPU-s |"
        " analyzed req/CPU-s | ratio |" + (pg_head if pg else "") + " unexpected |"
        " target (req/s ratio) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if pg else "") + "---:|---|")
    for name, fresh, analyzed in rows:
        ratio = fresh.rps / analyzed.rps
        both = (analyzed.cpu_ms_per_req + analyzed.pg_cpu_ms_per_req) / (
            fresh.cpu_ms_per_req + fresh.pg_cpu_ms_per_req
        )
        pg_cells = f" {fresh.pg_cpu_ms_per_req:.3f}/{analyzed.pg_cpu_ms_per_req:.3f} | {both:.2f} |"
        print(
            f"| {name} | {fresh.rps:,.0f} | {analyzed.rps:,.0f} | {ratio:.2f} |"
            f" {fresh.req_per_cpu_s:,.0f} | {analyzed.req_per_cpu_s:,.0f} |"
            f" {fresh.req_per_cpu_s / analyzed.req_per_cpu_s:.2f} |"
            + (pg_cells if pg else "")
            + f" {fresh.bad}/{analyzed.bad} |"
            f" {'met' if ratio >= PLANNER_TARGET else 'MISSED'} (>= {PLANNER_TARGET:.2f}) |"
        )
    sys.stdout.flush()


# --- report ------------------------------------------------------------------------------


def print_table(title: str, results: list[Result], pg: bool) -> None:
    print(f"\n### {title}\n")
    extra = " PostgreSQL CPU ms/req (all its processes) |" if pg else ""
    print(
        "| Scenario | req/s | p50 ms | p99 ms | unexpected | statuses | server CPU ms/req |"
        f" req per CPU-s | server CPU use |{extra}"
    )
    print("|---|---:|---:|---:|---:|---|---:|---:|---:|" + ("---:|" if pg else ""))
    for r in results:
        statuses = " ".join(f"{k}:{v}" for k, v in sorted(r.statuses.items()))
        print(
            f"| {r.scenario} | {r.rps:,.0f} | {r.p50_ms:.1f} | {r.p99_ms:.1f} | {r.bad} |"
            f" {statuses} | {r.cpu_ms_per_req:.3f} | {r.req_per_cpu_s:,.0f} | {r.cpu_util:.0%} |"
            + (f" {r.pg_cpu_ms_per_req:.3f} |" if pg else "")
        )
    sys.stdout.flush()


def machine_info() -> str:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return (
        f"nproc {os.cpu_count()}, CPU {model}, Python {platform.python_version()},"
        f" SQLite {sqlite3.sqlite_version}, {platform.platform()}"
    )


def run_database(kind: str, args: argparse.Namespace, creds: DevCredentials, workdir: Path) -> None:
    print(f"\n## {kind}: {args.passes:,} passes, {2 * args.passes:,} registrations", flush=True)
    small = populate(kind, args.pg_url, workdir, f"{kind}_small", args.passes, creds)
    large: Dataset | None = None
    servers: list[Server] = []
    try:
        print(f"populated in {small.populate_seconds:.1f} s", flush=True)
        server = start_server(small.url, workdir, f"{kind}-small")
        servers.append(server)
        print(f"server pid {server.pid} on CPU {SERVER_CPU}; wrk on CPU {WRK_CPU}", flush=True)
        lua = workdir / "warm.lua"
        write_lua(lua, "mix", small)
        run_wrk(server, lua, args.warmup * 2)
        print(f"prewarmed {CACHED} passes in {prewarm(server, small):.1f} s", flush=True)
        results = []
        for name in args.scenarios:
            results.append(
                measure(
                    server,
                    name,
                    small,
                    workdir,
                    args.duration,
                    args.warmup,
                    args.profile,
                    f"{kind}-small",
                )
            )
            print(f"  {name}: {results[-1].rps:,.0f} req/s", flush=True)
        print_table(
            f"{kind}, {args.passes:,} passes, one server process", results, kind == "postgresql"
        )
        for workers in args.workers[1:]:
            servers += compare_workers(kind, small, workers, args, workdir)
        if args.large:
            started = time.perf_counter()
            large = populate(kind, args.pg_url, workdir, f"{kind}_large", args.large, creds)
            print(
                f"\npopulated {args.large:,} passes in {time.perf_counter() - started:.1f} s",
                flush=True,
            )
            big = start_server(large.url, workdir, f"{kind}-large")
            servers.append(big)
            write_lua(lua, "mix", large)
            run_wrk(big, lua, args.warmup * 2)
            flat = []
            for name in ("changed-serials 204", "latest pass 304"):
                # Alternate small and large so both see the same machine conditions.
                s = measure(server, name, small, workdir, args.duration, args.warmup)
                b = measure(big, name, large, workdir, args.duration, args.warmup)
                flat.append((name, s, b))
            print(f"\n### {kind}: flat cost, {args.large:,} vs {args.passes:,} passes\n")
            print(
                "| Scenario | small req/s | large req/s | ratio | small req/CPU-s |"
                " large req/CPU-s | ratio | unexpected (small/large) |"
            )
            print("|---|---:|---:|---:|---:|---:|---:|---:|")
            for name, s, b in flat:
                print(
                    f"| {name} | {s.rps:,.0f} | {b.rps:,.0f} | {b.rps / s.rps:.2f} |"
                    f" {s.req_per_cpu_s:,.0f} | {b.req_per_cpu_s:,.0f} |"
                    f" {b.req_per_cpu_s / s.req_per_cpu_s:.2f} | {s.bad}/{b.bad} |"
                )
            sys.stdout.flush()
    finally:
        for server in servers:
            server.stop()
            lines = server.log.read_text(errors="replace").splitlines()
            raised = Counter(line[:200] for line in lines if EXCEPTION_LINE.match(line))
            errors = sum(1 for line in lines if "[error" in line or line.startswith("ERROR:"))
            if errors or raised:
                print(f"\nserver log {server.log}: {errors} error records; exceptions raised:")
                for line, count in raised.most_common(10):
                    print(f"    {count} x {line}")
        for data in (small, large):
            if data is not None and not args.keep:
                data.drop()


def compare_workers(
    kind: str, data: Dataset, workers: int, args: argparse.Namespace, workdir: Path
) -> list[Server]:
    """Every scenario on 1 web process and on `--workers N`, alternating.

    Both may run on every CPU (wrk's too): on a shared machine a server pinned to one
    CPU competes with whatever else is pinned there, which would inflate the ratio.
    """
    every = f"0-{(os.cpu_count() or 1) - 1}"
    one = start_server(data.url, workdir, f"{kind}-workers1", 1, cpus=every)
    try:
        many = start_server(data.url, workdir, f"{kind}-workers{workers}", workers, cpus=every)
    except BaseException:
        one.stop()  # a second server that does not start must not leave the first running
        raise
    rows = []
    try:
        lua = workdir / "warm.lua"
        for server in (one, many):
            write_lua(lua, "mix", data)
            run_wrk(server, lua, args.warmup * 2)
            prewarm(server, data)
        for name in args.scenarios:
            single = measure(one, name, data, workdir, args.duration, args.warmup)
            multi = measure(many, name, data, workdir, args.duration, args.warmup)
            rows.append((name, single, multi))
            print(
                f"  {name}: {single.rps:,.0f} vs {multi.rps:,.0f} req/s; statuses"
                f" {single.statuses} vs {multi.statuses}; socket errors, timeouts"
                f" {single.extra['socket_errors']}, {single.extra['timeouts']} vs"
                f" {multi.extra['socket_errors']}, {multi.extra['timeouts']}",
                flush=True,
            )
    except BaseException:
        one.stop()
        many.stop()
        raise
    print(
        f"\n### {kind}: --workers {workers} vs --workers 1, both on CPUs {every} (wrk on"
        f" CPU {WRK_CPU}), measured alternately\n"
    )
    print(
        f"| Scenario | 1 process req/s | {workers} processes req/s | ratio |"
        f" 1 process CPU use | {workers} processes CPU use | req per CPU-s (1/{workers}) |"
        f" unexpected (1/{workers}) | wrk CPU use (1/{workers}) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, single, multi in rows:
        print(
            f"| {name} | {single.rps:,.0f} | {multi.rps:,.0f} | {multi.rps / single.rps:.2f} |"
            f" {single.cpu_util:.0%} | {multi.cpu_util:.0%} |"
            f" {single.req_per_cpu_s:,.0f} / {multi.req_per_cpu_s:,.0f} |"
            f" {single.bad}/{multi.bad} |"
            f" {single.extra['client_cpu_util']:.0%} / {multi.extra['client_cpu_util']:.0%} |"
        )
    sys.stdout.flush()
    return [one, many]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--passes", type=int, default=10_000)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--large", type=int, default=1_000_000, help="0 skips the flat-cost part")
    parser.add_argument(
        "--pg-url",
        default="postgresql://postgres@127.0.0.1:5432/test",
        help="any database on the server; a fresh one is created and dropped",
    )
    parser.add_argument(
        "--workers",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[1],
        help="web process counts, e.g. 1,2: the scenarios with 1, then each other count"
        " alternately with 1",
    )
    parser.add_argument(
        "--scenarios",
        type=pick_scenarios,
        default=list(SCENARIOS),
        help="only these, e.g. 'register,304' (words of the scenario names)",
    )
    parser.add_argument("--profile", type=Path, help="write py-spy samples (collapsed stacks) here")
    parser.add_argument("--keep", action="store_true", help="keep the databases and files")
    parser.add_argument(
        "--planner",
        choices=["on", "off", "only"],
        default="on",
        help="the unanalyzed vs analyzed comparison (after the other parts, or alone)",
    )
    parser.add_argument(
        "--planner-rounds",
        type=int,
        default=4,
        help="alternating rounds per scenario in the planner comparison (--duration in all)",
    )
    args = parser.parse_args()
    if args.workers[0] != 1 or min(args.workers) < 1:
        parser.error("--workers starts with 1 (the reference), e.g. 1,2")
    if args.passes < 2 * SAMPLE or (args.large and args.large < 2 * SAMPLE):
        parser.error(f"--passes and --large must be at least {2 * SAMPLE}")
    print("command: " + shlex.join([os.path.relpath(sys.executable), *sys.argv]))
    print(f"date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC")
    print("machine: " + machine_info())
    print(
        f"server: 1 process (passhouse serve --no-worker, uvicorn) on CPU {SERVER_CPU};"
        f" load: wrk -t1 -c{CONNECTIONS} on CPU {WRK_CPU}; {args.duration:g} s per scenario"
    )
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
        print(f"PROFILING with py-spy into {args.profile}: figures are slowed, do not quote them")
    creds = make_dev_credentials(PASS_TYPE_ID, TEAM_ID)
    workdir = Path(tempfile.mkdtemp(prefix="bench_web_"))
    try:
        for kind in ("sqlite", "postgresql") if args.db == "both" else (args.db,):
            if args.planner != "only":
                run_database(kind, args, creds, workdir)
            if args.planner != "off":
                run_planner(kind, args, creds, workdir)
    finally:
        if args.keep:
            print(f"\nkept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
