"""The HTTP edge of a real `passhouse serve` process, driven over raw loopback sockets."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from passhouse.settings import Settings
from passhouse.web.server import default_workers

pytestmark = pytest.mark.slow

# Generous bounds: the limits under test are 1-2 s; the machine may be loaded.
CLOSE_BOUND_SECONDS = 20.0


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    port: int
    log: Path
    data_dir: Path

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=CLOSE_BOUND_SECONDS)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def serve_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PASSHOUSE_")}
    env |= {
        "PASSHOUSE_DATA_DIR": str(tmp_path / "data"),
        "PASSHOUSE_DATABASE_URL": f"sqlite:///{tmp_path / 'serve.db'}",
    }
    env |= {f"PASSHOUSE_{name.upper()}": value for name, value in settings.items()}
    return env


@contextlib.contextmanager
def serving(tmp_path: Path, *args: str, **settings: str) -> Iterator[Served]:
    port = free_port()
    log = tmp_path / f"serve-{port}.log"
    command = [sys.executable, "-m", "passhouse", "serve", "--port", str(port), *args]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=tmp_path, env=serve_env(tmp_path, **settings), stdout=out, stderr=out
        )
    served = Served(process, port, log, tmp_path / "data")
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, served.output()
            assert time.monotonic() < deadline, served.output()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        yield served
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def read_until_closed(sock: socket.socket, bound: float = CLOSE_BOUND_SECONDS) -> bytes:
    """Everything the server sends until it closes; fails if it is still open at `bound`."""
    sock.settimeout(bound)
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
    return data


def status_of(response: bytes) -> int:
    assert response.startswith(b"HTTP/1.1 "), response[:200]
    return int(response.split(b" ", 2)[1])


def send_until_answered(sock: socket.socket, head: bytes, filler: bytes, total: int) -> bytes:
    """Send `head`, then `filler` up to `total` bytes, stopping as soon as an answer comes."""
    sock.sendall(head)
    sent = 0
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        while sent < total:
            sock.sendall(filler)
            sent += len(filler)
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
    return read_until_closed(sock)


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serving(
        tmp_path_factory.mktemp("edge"),
        "--no-worker",
        http_header_timeout_seconds="1",
        http_body_timeout_seconds="2",
    ) as served:
        yield served


def test_a_32_mb_header_gets_431_and_the_server_carries_on(edge: Served) -> None:
    with edge.connect() as sock:
        response = send_until_answered(
            sock, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ", b"a" * 65536, 32 * 2**20
        )
    after = httpx.get(f"http://127.0.0.1:{edge.port}/healthz", timeout=10)

    assert status_of(response) == 431
    assert b'"code": "headers_too_large"' in response
    assert after.status_code == 200


def test_a_large_header_arriving_in_one_read_gets_431(edge: Served) -> None:
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n"

    with edge.connect() as sock:
        sock.sendall(head)
        response = read_until_closed(sock)

    assert status_of(response) == 431


def test_100_000_headers_get_431(edge: Served) -> None:
    with edge.connect() as sock:
        response = send_until_answered(
            sock, b"GET /healthz HTTP/1.1\r\nHost: x\r\n", b"a: b\r\n" * 1000, 100_000 * 6
        )

    assert status_of(response) == 431


def test_a_long_url_counts_towards_the_header_limit(edge: Served) -> None:
    with edge.connect() as sock:
        response = send_until_answered(sock, b"GET /healthz?", b"a" * 65536, 4 * 2**20)

    assert status_of(response) == 431


def test_too_many_headers_get_431(edge: Served) -> None:
    headers = b"".join(b"X-H%d: v\r\n" % i for i in range(1000))  # 12 kB: under the size limit

    with edge.connect() as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
        response = read_until_closed(sock)

    assert status_of(response) == 431
    assert b'"code": "too_many_headers"' in response


def test_keep_alive_serves_many_requests_on_one_connection(edge: Served) -> None:
    with edge.connect() as sock:
        for _ in range(20):
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            response = b""
            while not response.endswith(b"}"):
                response += sock.recv(65536)
            assert status_of(response) == 200


def test_headers_trickling_in_get_408_and_a_close_after_the_timeout(edge: Served) -> None:
    started = time.monotonic()
    response = b""
    with edge.connect() as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        sock.settimeout(0.25)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            while time.monotonic() - started < CLOSE_BOUND_SECONDS:
                sock.sendall(b"X-Slow: y\r\n")  # a header every 0.25 s: never complete
                try:
                    chunk = sock.recv(65536)
                except TimeoutError:
                    continue
                response += chunk
                if not chunk:
                    break
    elapsed = time.monotonic() - started

    assert status_of(response) == 408, elapsed
    assert elapsed < CLOSE_BOUND_SECONDS


def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(
    edge: Served,
) -> None:
    with edge.connect() as sock:
        assert read_until_closed(sock) == b""


def test_a_body_trickling_in_gets_408_and_a_close_after_the_timeout(edge: Served) -> None:
    head = b"POST /api/v1/passes HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"
    started = time.monotonic()
    response = b""
    with edge.connect() as sock:
        sock.sendall(head)
        sock.settimeout(0.25)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            while time.monotonic() - started < CLOSE_BOUND_SECONDS:
                sock.sendall(b"{")
                try:
                    chunk = sock.recv(65536)
                except TimeoutError:
                    continue
                response += chunk
                if not chunk:
                    break

    assert status_of(response) == 408
    assert b'"code": "request_timeout"' in response
    assert "Traceback" not in edge.output()  # the handler saw a client that left


def test_connections_over_the_cap_get_503_and_a_log_line(tmp_path: Path) -> None:
    with serving(
        tmp_path, "--no-worker", http_max_connections="4", http_header_timeout_seconds="60"
    ) as served:
        held = [served.connect() for _ in range(4)]
        try:
            # The server may not have accepted all four yet: retry until it refuses one.
            deadline = time.monotonic() + CLOSE_BOUND_SECONDS
            refused = b""
            while time.monotonic() < deadline and not refused:
                with served.connect() as extra:
                    extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                    answer = read_until_closed(extra)
                if answer and status_of(answer) == 503:
                    refused = answer
        finally:
            for sock in held:
                sock.close()
        output = served.output()

    assert status_of(refused) == 503
    assert b'"code": "too_many_connections"' in refused
    assert "http_connection_limit_reached" in output


def test_sigterm_with_a_body_trickling_in_exits_within_the_shutdown_bound(
    tmp_path: Path,
) -> None:
    with serving(
        tmp_path,
        "--no-worker",
        http_shutdown_timeout_seconds="1",
        http_body_timeout_seconds="600",
        http_header_timeout_seconds="600",
    ) as served:
        with served.connect() as sock:
            sock.sendall(b"POST /api/v1/passes HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\n{")
            time.sleep(0.5)  # let the request reach the app
            started = time.monotonic()
            served.process.send_signal(signal.SIGTERM)
            returncode = served.process.wait(timeout=CLOSE_BOUND_SECONDS)
            elapsed = time.monotonic() - started
            left_open = read_until_closed(sock, bound=5)
        output = served.output()

    assert returncode in (0, -signal.SIGTERM), output
    assert elapsed < CLOSE_BOUND_SECONDS
    assert status_of(left_open) == 503
    assert b'"code": "shutting_down"' in left_open
    assert "Traceback" not in output


# --- several web processes ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"dev_mode": True}, 1),
        ({"dev_mode": False}, len(os.sched_getaffinity(0))),
        ({"dev_mode": False, "web_workers": 3}, 3),
        ({"dev_mode": True, "web_workers": 2}, 2),
    ],
)
def test_web_processes_default_to_one_per_core_in_production_and_one_in_dev_mode(
    settings: dict[str, Any], expected: int
) -> None:
    assert default_workers(Settings(**settings)) == expected


def descendants(pid: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        found |= frontier
    return found


def connection_owners(port: int, pids: set[int]) -> dict[int, int]:
    """How many established connections to `port` each process holds (from /proc)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                    inodes.add(fields[9])
    owners: dict[int, int] = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if link.startswith("socket:[") and link[8:-1] in inodes:
                        owners[pid] = owners.get(pid, 0) + 1
    return owners


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_workers_2_serves_from_two_processes_and_sigterm_stops_all(tmp_path: Path) -> None:
    with serving(tmp_path, "--workers", "2") as served:
        children = descendants(served.process.pid)
        connections = [served.connect() for _ in range(24)]
        for sock in connections:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        owners = connection_owners(served.port, children)
        for sock in connections:
            sock.close()
        served.process.send_signal(signal.SIGTERM)
        returncode = served.process.wait(timeout=60)
        deadline = time.monotonic() + CLOSE_BOUND_SECONDS
        while any(alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        output = served.output()

    assert len(owners) == 2, (owners, children)
    assert sum(owners.values()) == 24
    assert returncode in (0, -signal.SIGTERM), output
    assert not [pid for pid in children if alive(pid)]
    assert output.count("push_worker_started") == 1  # one push worker per serve
    assert "2 web processes" in output
    assert "Traceback" not in output


def test_a_port_in_use_is_one_sentence_and_no_banner(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        result = subprocess.run(
            [sys.executable, "-m", "passhouse", "serve", "--port", str(port)],
            cwd=tmp_path,
            env=serve_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("database: ")  # which database serve would use
    assert lines[1:] == [
        f"Error: cannot listen on 127.0.0.1:{port}: the port is already in use"
        " (is another server running?)."
    ]
    assert not (tmp_path / "data" / "admin_token").exists()  # nothing was prepared


def test_a_port_in_use_is_refused_with_several_workers_too(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        result = subprocess.run(
            [sys.executable, "-m", "passhouse", "serve", "--port", str(port), "--workers", "2"],
            cwd=tmp_path,
            env=serve_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    assert result.returncode == 1
    assert result.stdout == ""
    assert "the port is already in use" in result.stderr


def test_each_request_gets_one_access_line_and_the_last_ones_are_written_at_sigterm(
    tmp_path: Path,
) -> None:
    with serving(tmp_path, "--workers", "2") as served:
        with httpx.Client(base_url=f"http://127.0.0.1:{served.port}") as client:
            for n in range(20):
                assert client.get(f"/healthz?probe={n}").status_code == 200
            assert client.get("/passkit/v1/passes/pass.x/nope").status_code == 401
        # At once: the lines still in the buffers are written on the way out.
        served.process.send_signal(signal.SIGTERM)
        served.process.wait(timeout=60)
        output = served.output()

    # (the readiness checks of serving() are lines of their own: "GET /healthz HTTP/1.1")
    lines = [line for line in output.splitlines() if "probe=" in line or "pass.x" in line]
    assert len(lines) == 21, output
    for n in range(20):
        assert sum(f'"GET /healthz?probe={n} HTTP/1.1" 200' in line for line in lines) == 1
    stamp, client_address, *_ = lines[-1].split(" ")
    assert stamp.endswith("Z")
    assert "T" in stamp
    assert client_address.startswith("127.0.0.1:")
    assert '"GET /passkit/v1/passes/pass.x/nope HTTP/1.1" 401' in output


def test_the_access_log_comes_within_a_second_and_can_be_turned_off(tmp_path: Path) -> None:
    (tmp_path / "on").mkdir()
    (tmp_path / "off").mkdir()
    with serving(tmp_path / "on", "--no-worker") as on:
        assert (
            httpx.get(f"http://127.0.0.1:{on.port}/healthz?seen=1", timeout=10).status_code == 200
        )
        deadline = time.monotonic() + 5
        while '"GET /healthz?seen=1 HTTP/1.1" 200' not in on.output():
            assert time.monotonic() < deadline, on.output()
            time.sleep(0.1)
    with serving(tmp_path / "off", "--no-worker", access_log="false") as off:
        assert (
            httpx.get(f"http://127.0.0.1:{off.port}/healthz?seen=1", timeout=10).status_code == 200
        )
        time.sleep(1.5)
        assert "/healthz?seen=1" not in off.output()
