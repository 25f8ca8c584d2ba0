"""Push fan-out benchmark: 100,000 registrations on PostgreSQL, a template change, fake APNs.

    .venv/bin/python bench/bench_push.py [--registrations 100000] [--singles 50]

Steps, in one run:
1. a fresh PostgreSQL database (PASSHOUSE_BENCH_DATABASE_URL, default
   postgresql://postgres@127.0.0.1:5432/test names the server; a new database
   `bench_push_<random>` is made there and dropped at the end), filled by set-based SQL;
2. the fake APNs server (tests/push/fake_apns.py) in its own process, TLS + client cert;
3. the fake server's capacity alone: two client processes blast pushes at it, no database;
4. fan-out with one `passhouse worker` process, then with two: the pass versions of the
   template are bumped and the pushes queued in one transaction (what the API does), and
   the clock runs from that commit to the fake server having received every push;
5. single-push latency with an idle queue: one pass changed, from commit to the push
   arriving at the fake server, repeated;
6. relay pushes (the Android apps, push/relays.py), with --relay-registrations N: N passes of a
   second template, registered a quarter each through Wallet Passes, Pass2U, Passworks
   and PassWallet, against the loopback relay fakes (tests/push/fake_relays.py, plain
   HTTP, in this process); one worker, a template change, the clock from the commit to
   the fakes having received every token.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import passhouse.storage.push_jobs as push_jobs
from passhouse.pkpass.devcerts import issue_server_certificate, make_dev_credentials
from passhouse.push.apns import ApnsCredentials, ApnsSender
from passhouse.settings import Settings
from passhouse.storage import migrate
from passhouse.storage.database import Database
from passhouse.storage.sealing import Sealer
from passhouse.storage.tables import pass_types, passes, templates
from push.fake_relays import PASS2U, PASSWALLET, PASSWORKS, WALLETPASSES, FakeRelay

ROOT = Path(__file__).resolve().parent.parent
FAKE = ROOT / "tests" / "push" / "fake_apns.py"
PASS_TYPE_ID = "pass.bench.push"  # noqa: S105 - an identifier
SECRET_KEY = "bench-secret-key-0123456789"  # noqa: S105 - a throwaway database's key


@dataclass
class Counter:
    count: int = 0
    last_at: float = 0.0


class FakeServer:
    """The fake APNs process; a thread follows its COUNT lines."""

    def __init__(self, certs: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(FAKE), "--certs", str(certs)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().split()
        assert line[0] == "PORT", line
        self.port = int(line[1])
        self.state = Counter()
        self._changed = threading.Condition()
        threading.Thread(target=self._follow, daemon=True).start()

    def _follow(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            parts = line.split()
            if parts and parts[0] == "COUNT":
                with self._changed:
                    self.state = Counter(int(parts[1]), float(parts[2]))
                    self._changed.notify_all()

    def wait_for(self, count: int, timeout: float) -> Counter:
        deadline = time.monotonic() + timeout
        with self._changed:
            while self.state.count < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"fake APNs got {self.state.count} of {count} pushes")
                self._changed.wait(left)
            return self.state

    def close(self) -> None:
        self.process.terminate()
        self.process.wait()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- setup ---------------------------------------------------------------------------------


async def create_database(base_url: str) -> str:
    import asyncpg  # type: ignore[import-untyped]

    parsed = sa.make_url(base_url.replace("postgres://", "postgresql://", 1))
    name = f"bench_push_{secrets.token_hex(4)}"
    admin = parsed.set(drivername="postgresql", database="postgres")
    connection = await asyncpg.connect(admin.render_as_string(hide_password=False))
    await connection.execute(f'CREATE DATABASE "{name}"')
    await connection.close()
    return parsed.set(drivername="postgresql", database=name).render_as_string(hide_password=False)


async def drop_database(url: str) -> None:
    import asyncpg

    parsed = sa.make_url(url)
    admin = parsed.set(database="postgres").render_as_string(hide_password=False)
    connection = await asyncpg.connect(admin)
    await connection.execute(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)')
    await connection.close()


async def fill(database: Database, cert_pem: bytes, key_pem: bytes, count: int) -> int:
    """Schema, one pass type and template, `count` passes each registered by one device."""
    await migrate.upgrade(database)  # the worker refuses a schema that is not at head
    async with database.transaction() as conn:
        await conn.execute(
            pass_types.insert().values(
                pass_type_id=PASS_TYPE_ID,
                team_id="BENCHTEAM1",
                certificate_pem=cert_pem.decode(),
                private_key_encrypted=Sealer(SECRET_KEY).seal(key_pem),
                not_after=4_000_000_000,
                created_at=0,
            )
        )
        template_id = (
            await conn.execute(
                templates.insert()
                .values(
                    name="bench",
                    pass_type_id=PASS_TYPE_ID,
                    pass_json={},
                    created_at=0,
                    updated_at=0,
                )
                .returning(templates.c.id)
            )
        ).scalar_one()
        statements = [
            """INSERT INTO passes (pass_type_id, serial_number, template_id, authentication_token,
                   share_id, data, version, modified_at, created_at)
               SELECT :pt, 's' || g, :tid, md5(g::text), md5('share' || g), '{}', 1, 0, 0
               FROM generate_series(1, :n) AS g""",
            """INSERT INTO devices (device_library_id, created_at)
               SELECT 'device-' || g, 0 FROM generate_series(1, :n) AS g""",
            """INSERT INTO registrations (device_id, pass_id, push_token, registered_at_ms)
               SELECT d.id, p.id, lpad(to_hex(g), 64, '0'), 0
               FROM generate_series(1, :n) AS g
               JOIN devices d ON d.device_library_id = 'device-' || g
               JOIN passes p ON p.serial_number = 's' || g AND p.pass_type_id = :pt""",
        ]
        for statement in statements:
            await conn.execute(
                sa.text(statement), {"pt": PASS_TYPE_ID, "tid": template_id, "n": count}
            )
    async with database.engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(sa.text("VACUUM ANALYZE"))
    return int(template_id)


async def change_template(database: Database, template_id: int) -> int:
    """What a template edit does: bump every pass of it and queue pushes, one transaction."""
    async with database.transaction() as conn:
        await conn.execute(
            passes.update()
            .where(passes.c.template_id == template_id)
            .values(version=passes.c.version + 1)
        )
        return await push_jobs.enqueue_for_template(
            conn, template_id, now_ms=int(time.time() * 1000)
        )


async def change_pass(database: Database, serial: str) -> None:
    async with database.transaction() as conn:
        pass_id = (
            await conn.execute(
                passes.update()
                .where(passes.c.pass_type_id == PASS_TYPE_ID, passes.c.serial_number == serial)
                .values(version=passes.c.version + 1)
                .returning(passes.c.id)
            )
        ).scalar_one()
        await push_jobs.enqueue_for_pass(conn, pass_id, now_ms=int(time.time() * 1000))


async def queue_depth(database: Database) -> int:
    async with database.reader() as conn:
        return int(await push_jobs.queue_depth(conn))


# --- the fake server's own capacity ----------------------------------------------------------


async def blast(url: str, ca: Path, cert: Path, key: Path, count: int) -> None:
    settings = Settings(
        _env_file=None,
        apns_url=url,
        apns_ca_file=ca,
        apns_connections_per_pass_type=2,
        apns_streams_per_connection=500,
    )
    credentials = ApnsCredentials(PASS_TYPE_ID, cert.read_bytes(), key.read_bytes())  # noqa: ASYNC240

    async def load(_: str) -> ApnsCredentials:
        return credentials

    sender = ApnsSender(settings, load)
    limit = asyncio.Semaphore(1000)

    async def one(index: int) -> None:
        async with limit:
            await sender.send(f"{index:064x}", PASS_TYPE_ID)

    await asyncio.gather(*(one(i) for i in range(count)))
    await sender.aclose()


def fake_capacity(fake: FakeServer, certs: Path, per_client: int) -> tuple[float, float]:
    """Pushes per second the fake answered under two blasting clients, and per fake CPU-s."""
    start = fake.state.count
    cpu_before = cpu_seconds(fake.process.pid)
    clients = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "blast",
                f"https://127.0.0.1:{fake.port}",
                str(certs / "ca.pem"),
                str(certs / "client.pem"),
                str(certs / "client.key"),
                str(per_client),
            ]
        )
        for _ in range(2)
    ]
    first = fake.wait_for(start + 1, 60)
    t0 = time.time()
    last = fake.wait_for(start + 2 * per_client, 120)
    for client in clients:
        client.wait()
    del first
    cpu = cpu_seconds(fake.process.pid) - cpu_before
    return (last.count - start - 1) / (last.last_at - t0), (last.count - start) / cpu


# --- fan-out -----------------------------------------------------------------------------


def start_workers(count: int, env: dict[str, str]) -> list[subprocess.Popen[bytes]]:
    return [
        subprocess.Popen(
            [sys.executable, "-m", "passhouse", "worker", "--log-level", "warning"],
            env=env,
            cwd=tempfile.gettempdir(),
        )
        for _ in range(count)
    ]


def stop_workers(workers: list[subprocess.Popen[bytes]]) -> None:
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    for worker in workers:
        worker.wait(30)


async def fan_out(
    database: Database, fake: FakeServer, template_id: int, workers: list[subprocess.Popen[bytes]]
) -> tuple[float, float, float]:
    await asyncio.sleep(1.5)  # workers connected and idle
    cpu_before = sum(cpu_seconds(w.pid) for w in workers)
    start = fake.state.count
    queued = await change_template(database, template_id)
    committed = time.time()
    last = await asyncio.to_thread(fake.wait_for, start + queued, 600)
    elapsed = last.last_at - committed
    cpu = sum(cpu_seconds(w.pid) for w in workers) - cpu_before
    for _ in range(600):
        if not await queue_depth(database):
            break
        await asyncio.sleep(0.05)
    return elapsed, queued / elapsed, queued / cpu


# --- relay pushes ---------------------------------------------------------------------------

RELAY_KEYS = {WALLETPASSES: "bench-wp-key", PASS2U: "bench-p2u-key", PASSWORKS: "bench-pw-key"}


async def fill_relays(database: Database, relays: dict[str, FakeRelay], count: int) -> int:
    """A second template of `count` passes, each registered by one device through one of
    the four relays in turn (PassWallet's with the fake's push service URL)."""
    async with database.transaction() as conn:
        template_id = (
            await conn.execute(
                templates.insert()
                .values(
                    name="bench-relays",
                    pass_type_id=PASS_TYPE_ID,
                    pass_json={},
                    created_at=0,
                    updated_at=0,
                )
                .returning(templates.c.id)
            )
        ).scalar_one()
        kinds = [WALLETPASSES, PASS2U, PASSWORKS, PASSWALLET]
        statements = [
            """INSERT INTO passes (pass_type_id, serial_number, template_id, authentication_token,
                   share_id, data, version, modified_at, created_at)
               SELECT :pt, 'r' || g, :tid, md5('r' || g), md5('rshare' || g), '{}', 1, 0, 0
               FROM generate_series(1, :n) AS g""",
            """INSERT INTO devices (device_library_id, created_at)
               SELECT 'relay-device-' || g, 0 FROM generate_series(1, :n) AS g""",
            """INSERT INTO registrations (device_id, pass_id, push_token, registered_at_ms,
                   transport, push_service_url)
               SELECT d.id, p.id, 'relay-token-' || g, 0,
                   (ARRAY[:k0, :k1, :k2, :k3])[1 + g % 4],
                   CASE WHEN g % 4 = 3 THEN :pw_url ELSE '' END
               FROM generate_series(1, :n) AS g
               JOIN devices d ON d.device_library_id = 'relay-device-' || g
               JOIN passes p ON p.serial_number = 'r' || g AND p.pass_type_id = :pt""",
        ]
        for statement in statements:
            await conn.execute(
                sa.text(statement),
                {
                    "pt": PASS_TYPE_ID,
                    "tid": template_id,
                    "n": count,
                    **{f"k{i}": kind for i, kind in enumerate(kinds)},
                    "pw_url": relays[PASSWALLET].url,
                },
            )
    async with database.engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(sa.text("ANALYZE"))
    return int(template_id)


def relay_counts(relay: FakeRelay) -> dict[int, int]:
    counts: dict[int, int] = {}
    for received in relay.received:
        counts[received.status] = counts.get(received.status, 0) + len(received.tokens)
    return counts


def relay_env(relays: dict[str, FakeRelay]) -> dict[str, str]:
    return {
        "PASSHOUSE_RELAY_WALLETPASSES_URL": relays[WALLETPASSES].url,
        "PASSHOUSE_RELAY_WALLETPASSES_API_KEY": RELAY_KEYS[WALLETPASSES],
        "PASSHOUSE_RELAY_PASS2U_URL": relays[PASS2U].url,
        "PASSHOUSE_RELAY_PASS2U_API_KEY": RELAY_KEYS[PASS2U],
        "PASSHOUSE_RELAY_PASSWORKS_URL": relays[PASSWORKS].url,
        "PASSHOUSE_RELAY_PASSWORKS_API_KEY": RELAY_KEYS[PASSWORKS],
        # Loopback must be named to be allowed (ADR 0017).
        "PASSHOUSE_PASSWALLET_PUSH_HOSTS": "127.0.0.1",
    }


async def relay_fan_out(
    database: Database,
    relays: dict[str, FakeRelay],
    template_id: int,
    worker: subprocess.Popen[bytes],
) -> str:
    await asyncio.sleep(1.5)  # the worker connected and idle
    cpu_before = cpu_seconds(worker.pid)
    fake_cpu = time.process_time()  # the fakes run in this process
    queued = await change_template(database, template_id)
    committed = time.perf_counter()
    deadline = committed + 60
    while sum(len(r.tokens()) for r in relays.values()) < queued:
        if time.perf_counter() > deadline:
            got = {k: relay_counts(r) for k, r in relays.items()}
            raise TimeoutError(f"the relays got {got} of {queued} pushes")
        await asyncio.sleep(0.005)
    elapsed = time.perf_counter() - committed
    cpu = cpu_seconds(worker.pid) - cpu_before
    fake_cpu = time.process_time() - fake_cpu
    calls = sum(len(r.received) for r in relays.values())
    others = sum(len(r.tokens(status)) for r in relays.values() for status in (400, 401, 403))
    return (
        f"relay fan-out, 1 worker: {queued:,} pushes (4 relays, {calls:,} list calls, "
        f"{others} refused) in {elapsed:.2f} s = {queued / elapsed:,.0f} pushes/s "
        f"({queued / cpu:,.0f} per worker CPU-second; the fakes and this process "
        f"{fake_cpu / elapsed:.0%} of a core; load {os.getloadavg()[0]:.1f})"
    )


async def single_latencies(database: Database, fake: FakeServer, count: int) -> list[float]:
    await asyncio.sleep(1.0)
    # Not timed: opens the worker's long-lived APNs connection (TLS handshake).
    start = fake.state.count
    await change_pass(database, f"s{count + 1}")
    await asyncio.to_thread(fake.wait_for, start + 1, 10)
    await asyncio.sleep(0.2)
    latencies = []
    for index in range(count):
        start = fake.state.count
        await change_pass(database, f"s{index + 1}")
        committed = time.time()
        last = await asyncio.to_thread(fake.wait_for, start + 1, 10)
        latencies.append(max(0.0, last.last_at - committed))
        await asyncio.sleep(0.1)
    return latencies


async def main(args: argparse.Namespace) -> None:
    base = os.environ.get(
        "PASSHOUSE_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
    )
    url = await create_database(base)
    database = Database(url)
    certs = Path(tempfile.mkdtemp(prefix="bench-push-"))
    fake: FakeServer | None = None
    try:
        credentials = make_dev_credentials(PASS_TYPE_ID, "BENCHTEAM1")
        server_cert, server_key = issue_server_certificate(
            credentials.root_cert_pem, credentials.root_key_pem
        )
        (certs / "server.pem").write_bytes(server_cert)
        (certs / "server.key").write_bytes(server_key)
        (certs / "client-ca.pem").write_bytes(credentials.root_cert_pem + credentials.wwdr_cert_pem)
        (certs / "ca.pem").write_bytes(credentials.root_cert_pem)
        (certs / "client.pem").write_bytes(credentials.cert_pem)
        (certs / "client.key").write_bytes(credentials.key_pem)

        t0 = time.perf_counter()
        template_id = await fill(
            database, credentials.cert_pem, credentials.key_pem, args.registrations
        )
        took = time.perf_counter() - t0
        print(f"setup: {args.registrations:,} passes, devices, registrations in {took:.1f} s")

        fake = FakeServer(certs)
        capacity, fake_per_cpu = fake_capacity(fake, certs, args.registrations // 2)
        print(
            f"fake APNs alone (2 client processes, no database): {capacity:,.0f} pushes/s, "
            f"{fake_per_cpu:,.0f} pushes per fake-server CPU-second"
        )

        env = {k: v for k, v in os.environ.items() if not k.startswith("PASSHOUSE_")}
        env.update(
            PASSHOUSE_DATABASE_URL=url,
            PASSHOUSE_SECRET_KEY=SECRET_KEY,
            PASSHOUSE_DEV_MODE="false",
            PASSHOUSE_APNS_URL=f"https://127.0.0.1:{fake.port}",
            PASSHOUSE_APNS_CA_FILE=str(certs / "ca.pem"),
            PASSHOUSE_PUSH_RATE_PER_SECOND=str(args.rate),
        )
        for count in (1, 2):
            workers = start_workers(count, env)
            fake_cpu = cpu_seconds(fake.process.pid)
            try:
                elapsed, rate, per_cpu = await fan_out(database, fake, template_id, workers)
            finally:
                stop_workers(workers)
            fake_busy = (cpu_seconds(fake.process.pid) - fake_cpu) / elapsed
            print(
                f"fan-out, {count} worker(s): {args.registrations:,} pushes in {elapsed:.2f} s "
                f"= {rate:,.0f} pushes/s ({per_cpu:,.0f} per worker CPU-second; "
                f"fake APNs busy {fake_busy:.0%} of a core)"
            )

        if args.singles:
            workers = start_workers(1, env)
            try:
                latencies = await single_latencies(database, fake, args.singles)
            finally:
                stop_workers(workers)
            latencies.sort()
            p95 = latencies[int(len(latencies) * 0.95) - 1]
            print(
                f"single update, idle queue, commit -> push received: p50 "
                f"{statistics.median(latencies) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms, "
                f"max {latencies[-1] * 1000:.1f} ms ({len(latencies)} updates)"
            )

        if args.relay_registrations:
            relays = {
                kind: FakeRelay(kind, RELAY_KEYS.get(kind))
                for kind in (WALLETPASSES, PASS2U, PASSWORKS, PASSWALLET)
            }
            for relay in relays.values():
                await relay.start()
            try:
                relay_template = await fill_relays(database, relays, args.relay_registrations)
                worker = start_workers(1, {**env, **relay_env(relays)})[0]
                try:
                    print(await relay_fan_out(database, relays, relay_template, worker))
                finally:
                    stop_workers([worker])
            finally:
                for relay in relays.values():
                    await relay.stop()
    finally:
        if fake is not None:
            fake.close()
        await database.dispose()
        await drop_database(url)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "blast":
        url, ca, cert, key, n = sys.argv[2:7]
        import uvloop

        uvloop.run(blast(url, Path(ca), Path(cert), Path(key), int(n)))
        sys.exit(0)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--registrations", type=int, default=100_000)
    parser.add_argument("--singles", type=int, default=50, help="0: no latency step")
    parser.add_argument(
        "--relay-registrations", type=int, default=0, help="relay step size (0: no relay step)"
    )
    parser.add_argument(
        "--rate", type=float, default=0, help="PASSHOUSE_PUSH_RATE_PER_SECOND for the workers"
    )
    asyncio.run(main(parser.parse_args()))
