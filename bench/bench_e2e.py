"""End to end: one template change reaches N phones (push, list, download, signing).

    .venv/bin/python bench/bench_e2e.py [--db sqlite|postgresql] [--devices 10000,100000]
        [--web 1,2] [--pacing off,default] [--connections 64]

Per run: a fresh database with N passes of one template (demo pass, real images), each
installed on one device registered with its own push token; the device holds the pass's
current version (its tag) and Last-Modified, as a phone that synced a while ago. Then:

- `passhouse serve --no-worker --workers W` and one `passhouse worker` (its own process,
  so its CPU is the push cost), APNs pointed at a fake APNs in this process: real HTTP/2
  over TLS with the pass type's client certificate (tests/push/fake_apns.py);
- the template is changed (the use case the admin API calls: one transaction bumps every
  pass and queues every push) and the clock starts at its commit;
- each device, as Wallet does, calls the list endpoint with its old tag when its push
  arrives, then downloads each listed pass with If-Modified-Since (HTTP/1.1 keep-alive,
  a pool of --connections connections, like that many phones online at once);
- the clock stops when every device holds the new version. Every device is checked:
  its list answer names its serial with the new tag, and its download is a 200 whose
  pass.json has the new template's marker and the device's serial. A run with any device
  left stale, or any unexpected answer, prints FAILED instead of figures.

CPU: the web processes, the worker, this process (fake APNs + devices) and PostgreSQL's
backends, from /proc. The web processes' CPU is split afterwards: the list calls are
replayed (same devices, same old tags, same server) to measure list CPU per device;
download = web CPU - list; signing = signatures made x CPU per signature of the same key,
measured in this process. Shared machine: compare ratios within one run.
"""

# The populating SQL is built from integers and constants of this file, never from input.
# ruff: noqa: S608

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import hashlib
import io
import json
import os
import platform
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from dataclasses import dataclass, field
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import dataset  # type: ignore[import-not-found]  # the sibling module, first on sys.path
from passhouse import devmode, issuing
from passhouse.pkpass.devcerts import (
    DevCredentials,
    issue_server_certificate,
    make_dev_credentials,
)
from passhouse.pkpass.signing import PassSigner
from passhouse.storage import migrate, pass_versions
from passhouse.storage.database import Database
from push.fake_apns import OK, Answer, FakeApns

VENV_BIN = Path(sys.executable).parent
PASS_TYPE_ID = "pass.bench.e2e"  # noqa: S105 (an identifier)
TEAM_ID, SECRET_KEY, ADMIN_TOKEN = dataset.TEAM_ID, dataset.SECRET_KEY, dataset.ADMIN_TOKEN
free_port, family_cpu = dataset.free_port, dataset.family_cpu
postgres_cpu = dataset.postgres_cpu_seconds
fresh_database = dataset.new_database
DEFAULT_RATE = 5_000.0  # Settings.push_rate_per_second's default
# --expiry per-pass: the new template's expirationDate is "{{expires}}", so the workers
# render every pass's date again after the change (a ticket's event day, say).
EXPIRES = "2099-01-01T00:00:00Z"


# --- data ----------------------------------------------------------------------------------


def _populate_sql(dialect: str, n: int, template_id: int, now: int) -> list[str]:
    data = json.dumps({"name": "Bench Member", "balance": 12, "expires": EXPIRES})
    mod0 = now - 7 * 86_400
    if dialect == "postgresql":
        gen = f"generate_series(1, {n}) AS g"
        return [
            "SET LOCAL synchronous_commit = off",
            "INSERT INTO passes (id, pass_type_id, serial_number, template_id,"
            " authentication_token, share_id, data, voided, version, modified_at, created_at)"
            f" SELECT g, '{PASS_TYPE_ID}', 's' || g, {template_id}, 'token' || md5(g::text),"
            f" 'share' || g, '{data}'::json, false, g, {mod0} + g, {now} FROM {gen}",
            f"INSERT INTO devices (id, device_library_id, created_at)"
            f" SELECT g, 'device' || g, {now} FROM {gen}",
            "INSERT INTO registrations (device_id, pass_id, push_token, registered_at_ms)"
            f" SELECT g, g, lpad(to_hex(g), 64, '0'), {now * 1000} FROM {gen}",
            f"SELECT setval(pg_get_serial_sequence('passes', 'id'), {n})",
            f"SELECT setval(pg_get_serial_sequence('devices', 'id'), {n})",
            f"UPDATE pass_types SET last_version = {n} WHERE pass_type_id = '{PASS_TYPE_ID}'",
        ]
    rec = f"WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < {n}) "
    return [
        rec + "INSERT INTO passes (id, pass_type_id, serial_number, template_id,"
        " authentication_token, share_id, data, voided, version, modified_at, created_at)"
        f" SELECT x, '{PASS_TYPE_ID}', 's' || x, {template_id}, printf('token%016d', x),"
        f" 'share' || x, '{data}', 0, x, {mod0} + x, {now} FROM g",
        rec + "INSERT INTO devices (id, device_library_id, created_at)"
        f" SELECT x, 'device' || x, {now} FROM g",
        rec + "INSERT INTO registrations (device_id, pass_id, push_token, registered_at_ms)"
        f" SELECT x, x, printf('%064x', x), {now * 1000} FROM g",
        f"UPDATE pass_types SET last_version = {n} WHERE pass_type_id = '{PASS_TYPE_ID}'",
    ]


def token_of(pg: bool, g: int) -> str:
    return (
        f"token{hashlib.md5(str(g).encode(), usedforsecurity=False).hexdigest()}"
        if pg
        else f"token{g:016d}"
    )


async def populate(url: str, n: int, creds: DevCredentials) -> tuple[int, int]:
    """Fill a fresh database; returns (template id, the devices' base Last-Modified)."""
    database = Database(url)
    now = int(time.time())
    try:
        await migrate.upgrade(database)
        async with database.transaction() as conn:
            template_id = await dataset.add_pass_type_and_template(conn, PASS_TYPE_ID, creds)
            for statement in _populate_sql(database.dialect, n, template_id, now):
                await conn.execute(sa.text(statement))
        await dataset.vacuum_analyze(database)
    finally:
        await database.dispose()
    dataset.settle_sqlite(url)
    return int(template_id), now - 7 * 86_400


async def change_template(url: str, marker: str, expiry: str) -> tuple[float, int]:
    """The template edit (issuing.replace_template, as PUT /api/v1/templates/{name} does):
    returns (commit time, the new version)."""
    database = Database(url)
    try:
        async with database.transaction() as conn:
            await issuing.replace_template(
                conn,
                "bench",
                name=None,
                pass_json={
                    **devmode.DEMO_PASS_JSON,
                    "description": marker,
                    **({"expirationDate": "{{expires}}"} if expiry == "per-pass" else {}),
                },
                assets=devmode.demo_assets(),
                actor=pass_versions.CLI,
            )
        committed = time.time()
        async with database.reader() as conn:
            version = await conn.scalar(
                sa.text(
                    f"SELECT last_version FROM pass_types WHERE pass_type_id = '{PASS_TYPE_ID}'"
                )
            )
    finally:
        await database.dispose()
    return committed, int(version)


# --- processes -----------------------------------------------------------------------------


def own_cpu() -> float:
    usage = os.times()
    return usage.user + usage.system


@dataclass
class Stack:
    server: subprocess.Popen[bytes]
    worker: subprocess.Popen[bytes]
    port: int
    log: Path

    def stop(self) -> None:
        for process in (self.worker, self.server):
            process.send_signal(signal.SIGTERM)
        for process in (self.worker, self.server):
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def start_stack(
    url: str, workdir: Path, label: str, *, web: int, rate: float, apns_port: int, ca: Path
) -> Stack:
    port = free_port()
    data_dir = workdir / f"data-{label}"
    data_dir.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PASSHOUSE_")}
    env.update(
        PASSHOUSE_DATABASE_URL=url,
        PASSHOUSE_SECRET_KEY=SECRET_KEY,
        PASSHOUSE_DATA_DIR=str(data_dir),
        PASSHOUSE_DEV_MODE="false",
        PASSHOUSE_ADMIN_TOKEN=ADMIN_TOKEN,
        PASSHOUSE_PUBLIC_URL=f"http://127.0.0.1:{port}",
        PASSHOUSE_WEB_WORKERS=str(web),
        PASSHOUSE_DATABASE_POOL_SIZE=str(max(4, 20 // web)),
        PASSHOUSE_APNS_URL=f"https://127.0.0.1:{apns_port}",
        PASSHOUSE_APNS_CA_FILE=str(ca),
        PASSHOUSE_PUSH_RATE_PER_SECOND=str(rate),
    )
    log = workdir / f"server-{label}.log"
    server = subprocess.Popen(
        [
            str(VENV_BIN / "passhouse"),
            "serve",
            "--no-worker",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
        cwd=workdir,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    # A loaded machine and a large database (serve's start checks read it) can take minutes.
    deadline = time.monotonic() + 300
    while True:
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            raise RuntimeError(f"server did not start: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                break
        except OSError:
            time.sleep(0.2)
    worker = subprocess.Popen(
        [str(VENV_BIN / "passhouse"), "worker", "--log-level", "warning"],
        env=env,
        cwd=workdir,
        stdout=(workdir / f"worker-{label}.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    return Stack(server, worker, port, log)


# --- the devices ---------------------------------------------------------------------------


class Http:
    """A minimal HTTP/1.1 keep-alive client connection: cheap enough to share the machine."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head[:-4].decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        answer = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            answer[name.strip().lower()] = value.strip()
        length = int(answer.get("content-length", "0"))
        body = await self.reader.readexactly(length) if length else b""
        return status, answer, body


@dataclass
class Device:
    serial: str
    token: str
    tag: int
    modified_at: int
    updated: bool = False


@dataclass
class Tally:
    updated: int = 0
    pushes: int = 0
    lists_200: int = 0
    stale_204: int = 0  # the bug: told "nothing changed" while its pass had a newer version
    late_204: int = 0  # a repeated push for an updated device: 204 is right
    downloads: int = 0
    bad: list[str] = field(default_factory=list)
    done_at: float = 0.0


class Phones:
    def __init__(
        self, devices: list[Device], port: int, connections: int, marker: str, version: int
    ) -> None:
        self.devices = devices
        self.port = port
        self.marker = marker.encode()
        self.version = version
        self.queue: asyncio.Queue[int] = asyncio.Queue()
        self.tally = Tally()
        self.all_done = asyncio.Event()
        self.tasks = [asyncio.ensure_future(self._phone()) for _ in range(connections)]

    def pushed(self, index: int) -> None:
        self.tally.pushes += 1
        self.queue.put_nowait(index)

    async def _phone(self) -> None:
        http = Http(self.port)
        while True:
            index = await self.queue.get()
            try:
                await self._sync(http, index)
            except (OSError, asyncio.IncompleteReadError, ValueError) as error:
                self.tally.bad.append(f"device {index}: {error!r}")
                http = Http(self.port)

    async def _sync(self, http: Http, index: int) -> None:
        device = self.devices[index]
        tally = self.tally
        path = f"/passkit/v1/devices/device{index + 1}/registrations/{PASS_TYPE_ID}"
        status, _, body = await http.get(f"{path}?passesUpdatedSince={device.tag}", {})
        if status == 204:
            if device.updated:
                tally.late_204 += 1
            else:
                tally.stale_204 += 1
            return
        if status != 200:
            tally.bad.append(f"device {index}: list answered {status}")
            return
        tally.lists_200 += 1
        answer = json.loads(body)
        tag = int(answer["lastUpdated"])
        for serial in answer["serialNumbers"]:
            since = format_datetime(dt.datetime.fromtimestamp(device.modified_at, dt.UTC), True)
            status, headers, data = await http.get(
                f"/passkit/v1/passes/{PASS_TYPE_ID}/{serial}",
                {"Authorization": f"ApplePass {device.token}", "If-Modified-Since": since},
            )
            tally.downloads += 1
            if status != 200 or serial != device.serial:
                tally.bad.append(f"device {index}: download of {serial} answered {status}")
                return
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                pass_json = archive.read("pass.json")
            if self.marker not in pass_json or f'"{serial}"'.encode() not in pass_json:
                tally.bad.append(f"device {index}: the downloaded pass is not the new version")
                return
            device.modified_at = int(parsedate_to_datetime(headers["last-modified"]).timestamp())
        if tag < self.version:
            tally.bad.append(f"device {index}: told tag {tag}, the change is {self.version}")
            return
        device.tag = tag
        if not device.updated:
            device.updated = True
            tally.updated += 1
            if tally.updated == len(self.devices):
                tally.done_at = time.time()
                self.all_done.set()

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


class WakingApns(FakeApns):
    """The fake APNs, which wakes the device the push is for (its token is its index)."""

    phones: Phones | None = None

    def next_answer(self, token: str) -> Answer:
        if self.phones is not None:
            self.phones.pushed(int(token, 16) - 1)
        return OK


# --- one run -------------------------------------------------------------------------------


@dataclass
class Run:
    label: str
    ok: bool
    seconds: float = 0.0
    web_cpu: float = 0.0
    worker_cpu: float = 0.0
    client_cpu: float = 0.0
    pg_cpu: float = 0.0
    list_cpu: float = 0.0  # per device, from the replay
    signed: int = 0
    tally: Tally = field(default_factory=Tally)
    note: str = ""


async def signed_count(url: str, version: int) -> int:
    """Signed files of the new version (the pkpass_cache table, shared by every process)."""
    database = Database(url)
    try:
        async with database.reader() as conn:
            found = await conn.scalar(
                sa.text(f"SELECT count(*) FROM pkpass_cache WHERE version >= {int(version)}")
            )
    finally:
        await database.dispose()
    return int(found or 0)


async def run_once(
    args: argparse.Namespace,
    kind: str,
    n: int,
    web: int,
    pacing: str,
    creds: DevCredentials,
    workdir: Path,
    apns: WakingApns,
    ca: Path,
) -> Run:
    label = f"{kind}-{n}-w{web}-{pacing}-{args.expiry}"
    url, drop = await fresh_database(kind, args.pg_url, workdir, label)
    try:
        t0 = time.perf_counter()
        _, mod0 = await populate(url, n, creds)
        print(f"  [{label}] loaded {n:,} passes/devices in {time.perf_counter() - t0:.1f} s")
        pg = kind == "postgresql"
        devices = [Device(f"s{g}", token_of(pg, g), g, mod0 + g) for g in range(1, n + 1)]
        rate = 0.0 if pacing == "off" else DEFAULT_RATE
        stack = start_stack(url, workdir, label, web=web, rate=rate, apns_port=apns.port, ca=ca)
        try:
            await asyncio.sleep(2.0)  # workers connected and idle
            marker = f"update {secrets.token_hex(6)}"
            before = (
                family_cpu(stack.server.pid),
                family_cpu(stack.worker.pid),
                own_cpu(),
                postgres_cpu() if pg else 0.0,
            )
            # The version is read after the commit, so the phones start with a placeholder.
            phones = Phones(devices, stack.port, args.connections, marker, version=n + 1)
            apns.phones = phones
            committed, version = await change_template(url, marker, args.expiry)
            phones.version = version
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(phones.all_done.wait(), args.timeout)
            tally = phones.tally
            end = tally.done_at or time.time()
            run = Run(
                label,
                ok=tally.updated == n and not tally.bad and not tally.stale_204,
                seconds=end - committed,
                web_cpu=family_cpu(stack.server.pid) - before[0],
                worker_cpu=family_cpu(stack.worker.pid) - before[1],
                client_cpu=own_cpu() - before[2],
                pg_cpu=(postgres_cpu() - before[3]) if pg else 0.0,
                signed=await signed_count(url, version),
                tally=tally,
            )
            apns.phones = None
            await phones.close()
            if run.ok:
                run.list_cpu = await replay_lists(stack, n, mod0, devices)
        finally:
            stack.stop()
    finally:
        await drop()
    return run


async def replay_lists(stack: Stack, n: int, mod0: int, devices: list[Device]) -> float:
    """Server CPU per list call: the same old-tag calls again, over 32 connections."""
    count = min(n, 20_000)
    cursor = iter(range(count))

    async def one() -> None:
        http = Http(stack.port)
        for index in cursor:
            path = f"/passkit/v1/devices/device{index + 1}/registrations/{PASS_TYPE_ID}"
            status, _, _ = await http.get(f"{path}?passesUpdatedSince={index + 1}", {})
            assert status == 200, status

    before = family_cpu(stack.server.pid)
    await asyncio.gather(*(one() for _ in range(32)))
    return float(family_cpu(stack.server.pid) - before) / count


def sign_cpu_ms(creds: DevCredentials) -> float:
    """CPU per signature with the benchmark's key, measured here (the same machine)."""
    signer = PassSigner.from_pem(creds.cert_pem, creds.key_pem, creds.wwdr_cert_pem)
    manifest = json.dumps({f"file{i}.png": "0" * 40 for i in range(8)}).encode()
    signer.sign(manifest)
    rounds = 300
    started = time.process_time()
    for _ in range(rounds):
        signer.sign(manifest)
    return (time.process_time() - started) / rounds * 1000


def report(run: Run, n: int, sign_ms: float) -> None:
    t = run.tally
    if not run.ok:
        print(
            f"{run.label}: FAILED: {t.updated:,} of {n:,} devices updated in "
            f"{run.seconds:.1f} s; {t.stale_204:,} stale 204s (told nothing changed with an "
            f"old tag), {len(t.bad):,} bad answers {t.bad[:3]}"
        )
        return
    per = 1000 / n
    download = run.web_cpu / n * 1000 - run.list_cpu * 1000
    signing = run.signed * sign_ms / n
    print(
        f"{run.label}: {n:,} devices updated in {run.seconds:.1f} s = "
        f"{n / run.seconds:,.0f} devices/s | CPU ms per device: push {run.worker_cpu * per:.2f},"
        f" list {run.list_cpu * 1000:.2f}, download {download:.2f} (of which signing "
        f"{signing:.2f}, {run.signed:,} signed), web total {run.web_cpu * per:.2f}"
        + (f", PostgreSQL {run.pg_cpu * per:.2f}" if run.pg_cpu else "")
        + f"; devices+fake APNs (this process) {run.client_cpu * per:.2f} | pushes received"
        f" {t.pushes:,}, repeated-push 204s {t.late_204:,}"
    )


def machine_info() -> str:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    load = os.getloadavg()[0]
    return (
        f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, load {load:.2f}"
        " (shared machine)"
    )


async def main(args: argparse.Namespace) -> int:
    print("command: " + shlex.join([os.path.relpath(sys.executable), *sys.argv]))  # noqa: ASYNC240
    print(f"date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC")
    print("machine: " + machine_info())
    creds = make_dev_credentials(PASS_TYPE_ID, TEAM_ID)
    sign_ms = sign_cpu_ms(creds)
    print(f"signing: {sign_ms:.2f} ms CPU per signature (RSA 2048, this process)")
    workdir = Path(tempfile.mkdtemp(prefix="bench_e2e_"))
    server_cert, server_key = issue_server_certificate(creds.root_cert_pem, creds.root_key_pem)
    ca = workdir / "ca.pem"
    ca.write_bytes(creds.root_cert_pem)
    apns = WakingApns(
        server_cert_pem=server_cert,
        server_key_pem=server_key,
        client_ca_pem=creds.root_cert_pem + creds.wwdr_cert_pem,
        keep=False,
    )
    await apns.start()
    failed = 0
    try:
        for n in args.devices:
            for pacing in args.pacing:
                for web in args.web:
                    run = await run_once(args, args.db, n, web, pacing, creds, workdir, apns, ca)
                    report(run, n, sign_ms)
                    failed += not run.ok
    finally:
        await apns.close()
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",")]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--devices", type=_ints, default=[10_000, 100_000])
    parser.add_argument("--web", type=_ints, default=[1, 2], help="web process counts")
    parser.add_argument(
        "--pacing",
        type=lambda text: text.split(","),
        default=["off", "default"],
        help="off (PASSHOUSE_PUSH_RATE_PER_SECOND=0) and/or default (5,000/s)",
    )
    parser.add_argument(
        "--expiry",
        choices=["per-pass", "none"],
        default="per-pass",
        help="the new template's expirationDate: from each pass's data, or none",
    )
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument(
        "--pg-url",
        default="postgresql://postgres@127.0.0.1:5432/test",
        help="any database on the server; a fresh one is made and dropped per run",
    )
    parser.add_argument("--keep", action="store_true")
    import uvloop

    sys.exit(uvloop.run(main(parser.parse_args())))
