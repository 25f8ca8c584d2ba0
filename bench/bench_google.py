"""Google Wallet sync benchmark: a template change of 10,000 objects, one worker.

    .venv/bin/python bench/bench_google.py [--objects 10000] [--paced-seconds 20]
        [--database-url postgresql://postgres@127.0.0.1:5432/test] [--loop uvloop|asyncio]

Steps, in one run (on uvloop by default, as `passhouse worker` runs):
1. the fake Google Wallet (tests/google_wallet/fake_google.py) in its own process, HTTPS
   with a throwaway CA, checking the service account's token assertions;
1b. the fake's own capacity: N object inserts and N PATCHes of its own class, sent by a
   bare aiohttp client (64 connections, bodies encoded in advance), no database: the
   fake's CPU per request says whether it, not the worker, limits the figures below;
2. a fresh database (a SQLite file, or a new PostgreSQL database dropped at the end), an
   issuer connected through the use case the API calls (credentials checked with the
   fake), a template opted in, and N passes inserted by set-based SQL, each with its
   Google object; their first sync (inserts) is run and timed;
3. the template is changed through issuing.replace_template (one transaction: the class
   and N object syncs queued); with pacing off, one GoogleSync drains the queue and the
   clock runs from that commit to the last object written;
4. the same change at the default pace (PASSHOUSE_GOOGLE_RATE_PER_SECOND), for
   --paced-seconds only: the measured rate gives the time for all N.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr

from passhouse import devmode, issuing
from passhouse.bootstrap import Runtime
from passhouse.google import ids
from passhouse.google.service_account import GRANT_TYPE, load_service_account, token_assertion
from passhouse.google_sync import GoogleSync
from passhouse.issuing import google_wallet
from passhouse.pkpass.devcerts import issue_server_certificate, make_dev_credentials
from passhouse.settings import Settings
from passhouse.storage import google_wallet as store
from passhouse.storage import migrate, pass_versions
from passhouse.storage.database import Database
from passhouse.storage.sealing import Sealer
from passhouse.storage.tables import google_objects, pass_types, passes

ROOT = Path(__file__).resolve().parent.parent
FAKE = ROOT / "tests" / "google_wallet" / "fake_google.py"
SECRET_KEY = "bench-secret-key-0123456789"  # noqa: S105 - a throwaway database's key
ISSUER_ID = "3388000000012345678"
CLIENT_EMAIL = "bench@passhouse-bench.iam.gserviceaccount.com"


def start_fake(folder: Path, public_key_pem: bytes) -> tuple[subprocess.Popen[str], int]:
    (folder / "public.pem").write_bytes(public_key_pem)
    process = subprocess.Popen(
        [
            sys.executable,
            str(FAKE),
            "--certs",
            str(folder),
            "--public-key",
            str(folder / "public.pem"),
            "--issuer-id",
            ISSUER_ID,
            "--client-email",
            CLIENT_EMAIL,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline().split()
    assert line[0] == "PORT", line
    # Its COUNT lines are read (and dropped) so a full pipe never blocks the fake.
    threading.Thread(target=lambda: [None for _ in process.stdout or ()], daemon=True).start()
    return process, int(line[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


async def fake_capacity(
    base: str, ca_file: Path, service_account: dict[str, Any], fake_pid: int, count: int
) -> None:
    """The fake alone: `count` inserts, then `count` PATCHes, 64 in flight."""
    account = load_service_account(service_account)
    context = ssl.create_default_context(cafile=str(ca_file))
    connector = aiohttp.TCPConnector(ssl=context, limit=64)
    async with aiohttp.ClientSession(connector=connector) as http:
        form = {
            "grant_type": GRANT_TYPE,
            "assertion": token_assertion(account, now=int(time.time())),
        }
        async with http.post(f"{base}/token", data=form) as response:
            token = (await response.json())["access_token"]
        headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
        api = f"{base}/walletobjects/v1"
        class_id = f"{ISSUER_ID}.bench-fake"
        async with http.post(
            f"{api}/genericClass", data=json.dumps({"id": class_id}), headers=headers
        ) as response:
            assert response.status == 200, await response.text()

        def body(i: int, value: str) -> bytes:
            text = {"defaultValue": {"language": "en", "value": value}}
            return json.dumps(
                {
                    "id": f"{ISSUER_ID}.fake-{i}",
                    "classId": class_id,
                    "cardTitle": text,
                    "header": text,
                    "textModulesData": [{"id": "balance", "header": "Balance", "body": str(i)}],
                    "barcode": {"type": "QR_CODE", "value": f"fake-{i}"},
                    "state": "ACTIVE",
                },
                separators=(",", ":"),
            ).encode()

        lanes = asyncio.Semaphore(64)

        async def one(method: str, url: str, data: bytes) -> None:
            async with lanes, http.request(method, url, data=data, headers=headers) as response:
                await response.read()
                assert response.status == 200, response.status

        for method in ("POST", "PATCH"):
            bodies = [body(i, method) for i in range(count)]
            urls = [
                f"{api}/genericObject"
                if method == "POST"
                else f"{api}/genericObject/{ISSUER_ID}.fake-{i}"
                for i in range(count)
            ]
            cpu = cpu_seconds(fake_pid)
            started = time.perf_counter()
            await asyncio.gather(*(one(method, u, b) for u, b in zip(urls, bodies, strict=True)))
            seconds = time.perf_counter() - started
            cpu = cpu_seconds(fake_pid) - cpu
            print(
                f"fake Google alone, {count} object {method}s: {count / seconds:.0f}/s wall, "
                f"{count / cpu:.0f} per fake CPU-second (load {load()})"
            )


async def fill(runtime: Runtime, service_account: dict[str, Any], count: int) -> int:
    credentials = make_dev_credentials("pass.bench.google", "BENCHTEAM1")
    client = GoogleSync(runtime).client
    await google_wallet.add_issuer(
        runtime.database,
        runtime.sealer,
        client,
        issuer_id=ISSUER_ID,
        service_account=service_account,
    )
    await client.aclose()
    async with runtime.database.transaction() as conn:
        pass_type_id, _, _ = await issuing.save_pass_type(
            conn,
            runtime.sealer,
            issuing.Credentials(
                certificate_pem=credentials.cert_pem,
                private_key_pem=credentials.key_pem,
                wwdr_pem=credentials.wwdr_cert_pem,
            ),
            actor=pass_versions.CLI,
        )
        template_id = await issuing.create_template(
            conn,
            name="bench",
            pass_type_id=pass_type_id,
            pass_json=devmode.DEMO_PASS_JSON,
            assets=devmode.demo_assets(),
            google={"issuer_id": ISSUER_ID},
        )
        now = int(time.time())
        await conn.execute(
            pass_types.update()
            .where(pass_types.c.pass_type_id == pass_type_id)
            .values(last_version=count)
        )
        rows = [
            {
                "pass_type_id": pass_type_id,
                "serial_number": f"b{i:07d}",
                "template_id": template_id,
                "authentication_token": secrets.token_urlsafe(24),
                "share_id": secrets.token_urlsafe(16),
                "data": {"name": f"Holder {i}", "balance": i % 500},
                "voided": False,
                "version": i + 1,
                "modified_at": now,
                "created_at": now,
            }
            for i in range(count)
        ]
        await conn.execute(passes.insert(), rows)
        created = (
            await conn.execute(
                sa.select(passes.c.id, passes.c.serial_number).where(
                    passes.c.template_id == template_id
                )
            )
        ).all()
        await conn.execute(
            google_objects.insert(),
            [
                {
                    "pass_id": r.id,
                    "template_id": template_id,
                    "object_id": ids.object_id(ISSUER_ID, pass_type_id, r.serial_number),
                }
                for r in created
            ],
        )
        await store.enqueue_objects(
            conn, google_objects.c.template_id == template_id, now_ms=int(time.time() * 1000)
        )
    return template_id


async def drain(sync: GoogleSync, deadline: float | None = None) -> tuple[int, float]:
    """Run the queue until empty (or the deadline); (jobs claimed, seconds)."""
    started = time.perf_counter()
    sync.cpu_started = time.process_time()  # type: ignore[attr-defined]
    total = 0
    while deadline is None or time.perf_counter() < deadline:
        claimed = await sync.sync_due()
        total += claimed
        if claimed == 0:
            async with sync.database.reader() as conn:
                due = await store.next_due_at(conn)
            if due is None:
                break
            await asyncio.sleep(0.01)
    return total, time.perf_counter() - started


async def change_template(runtime: Runtime, template_id: int, description: str) -> None:
    async with runtime.database.transaction() as conn:
        await issuing.replace_template(
            conn,
            str(template_id),
            name=None,
            pass_json={**devmode.DEMO_PASS_JSON, "description": description},
            assets=devmode.demo_assets(),
            actor=pass_versions.CLI,
        )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--paced-seconds", type=float, default=20.0)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--fake-requests", type=int, default=5000)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    return parser.parse_args()


async def main(args: argparse.Namespace) -> None:

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    folder = Path(tempfile.mkdtemp(prefix="bench-google-"))
    ca = make_dev_credentials("pass.bench.ca", "BENCHTEAM1")
    cert, cert_key = issue_server_certificate(ca.root_cert_pem, ca.root_key_pem)
    (folder / "server.pem").write_bytes(cert)
    (folder / "key.pem").write_bytes(cert_key)
    (folder / "ca.pem").write_bytes(ca.root_cert_pem)
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    fake, port = start_fake(folder, public_pem)
    base = f"https://127.0.0.1:{port}"
    database_url = args.database_url or f"sqlite:///{folder / 'bench.db'}"
    defaults = Settings(_env_file=None)
    settings = Settings(
        _env_file=None,
        database_url=database_url,
        public_url="https://passes.example.test",
        secret_key=SecretStr(SECRET_KEY),
        google_api_url=base,
        google_ca_file=folder / "ca.pem",
        google_rate_per_second=0,
        push_lease_seconds=30,
    )
    database = Database(database_url)
    try:
        async with database.engine.begin() as connection:
            from passhouse.storage.tables import metadata

            await connection.run_sync(metadata.drop_all)
            await connection.execute(sa.text("DROP TABLE IF EXISTS alembic_version"))
        await migrate.upgrade(database)
        runtime = Runtime(settings, database, Sealer(SECRET_KEY))
        service_account = {
            "type": "service_account",
            "private_key": key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).decode(),
            "private_key_id": "bench",
            "client_email": CLIENT_EMAIL,
            "token_uri": f"{base}/token",
        }
        print(f"database: {database.dialect}; objects: {args.objects}; fake Google: {base}")
        print(f"event loop: {type(asyncio.get_running_loop()).__module__}")
        print(f"load average at start: {load()} on {os.cpu_count()} cores")
        if args.fake_requests:
            await fake_capacity(
                base, folder / "ca.pem", service_account, fake.pid, args.fake_requests
            )
        template_id = await fill(runtime, service_account, args.objects)
        print(f"concurrency: {settings.google_concurrency} syncs in flight, one worker")

        sync = GoogleSync(runtime)
        claimed, seconds = await drain(sync)
        print(
            f"first sync (inserts): {claimed} jobs in {seconds:.1f} s = {claimed / seconds:.0f}/s"
        )

        await change_template(runtime, template_id, "Changed once")
        fake_cpu = cpu_seconds(fake.pid)
        claimed, seconds = await drain(sync)
        cpu = time.process_time() - sync.cpu_started  # type: ignore[attr-defined]
        fake_cpu = cpu_seconds(fake.pid) - fake_cpu
        print(
            f"template change, pacing off: {claimed} jobs (class + objects) in {seconds:.1f} s "
            f"= {claimed / seconds:.0f} syncs/s; worker CPU {cpu:.1f} s = "
            f"{claimed / cpu:.0f} syncs per CPU-second; fake Google busy "
            f"{fake_cpu / seconds:.0%} of a core (load {load()})"
        )
        await sync.aclose()

        paced_settings = settings.model_copy(
            update={"google_rate_per_second": defaults.google_rate_per_second}
        )
        paced = GoogleSync(Runtime(paced_settings, database, Sealer(SECRET_KEY)))
        await change_template(runtime, template_id, "Changed twice")
        claimed, seconds = await drain(paced, deadline=time.perf_counter() + args.paced_seconds)
        rate = claimed / seconds
        print(
            f"template change at the default pace ({defaults.google_rate_per_second:g} req/s): "
            f"{claimed} syncs in {seconds:.1f} s = {rate:.1f}/s; "
            f"{args.objects} objects take {args.objects / rate / 60:.1f} min"
        )
        await paced.aclose()
    finally:
        await database.dispose()
        fake.terminate()
        fake.wait()


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.loop == "asyncio":
        asyncio.run(main(arguments))
    else:
        import uvloop

        uvloop.run(main(arguments))
