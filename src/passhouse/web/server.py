"""Running the app: the listening sockets, uvicorn with the edge limits, N web processes.

The sockets are bound by `passhouse serve` before it prints anything, then handed to the
web processes: one process serves on its socket itself; N processes get one
SO_REUSEPORT socket each (the kernel spreads new connections over them evenly, which a
shared socket does not: the first process to wake accepts a whole burst). The push
worker runs in the first web process only, so there is one per `serve` whatever N is.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import multiprocessing
import os
import resource
import signal
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import wait
from types import FrameType
from typing import Any

import structlog
import uvicorn

from passhouse.bootstrap import open_runtime
from passhouse.settings import Settings
from passhouse.sign_ahead import Share
from passhouse.web.access_log import AccessLog, access_log
from passhouse.web.app import create_app
from passhouse.web.edge import EdgeLimits, guarded_protocol

log = structlog.get_logger("passhouse.serve")

BACKLOG = 2048
# Kept free below the open-files limit for database connections, files and APNs.
SPARE_FILES = 256
# Beyond the graceful shutdown, how long the parent waits before it kills a web process.
KILL_MARGIN_SECONDS = 10.0


class BindError(Exception):
    """The address cannot be listened on; the message is one sentence for the operator."""


def default_workers(settings: Settings) -> int:
    if settings.web_workers is not None:
        return settings.web_workers
    if settings.dev_mode:
        return 1
    return len(os.sched_getaffinity(0))


def bind_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """Listening sockets for `count` web processes, or BindError if the port is taken."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise BindError(f"cannot listen on {host}:{port}: {error.strerror}.") from None
    info = infos[0]
    if count == 1:
        return [_listen(info, host, port, reuse_port=False)]
    # A plain bind first: it fails if anything holds the port, even another SO_REUSEPORT
    # group (which a reuse-port bind would silently join, splitting the traffic with it).
    _listen(info, host, port, reuse_port=False).close()
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sockets.append(_listen(info, host, port, reuse_port=True))
    except BindError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _listen(info: tuple[Any, ...], host: str, port: int, *, reuse_port: bool) -> socket.socket:
    family, kind, proto, _, address = info
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAIT only
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError as error:
        sock.close()
        reason = {
            errno.EADDRINUSE: "the port is already in use (is another server running?)",
            errno.EACCES: "permission denied (ports below 1024 need privileges)",
            errno.EADDRNOTAVAIL: "this machine has no such address",
        }.get(error.errno or 0, error.strerror or str(error))
        raise BindError(f"cannot listen on {host}:{port}: {reason}.") from None
    sock.set_inheritable(True)
    return sock


def raise_open_files_limit(wanted: int) -> int:
    """Raise the soft open-files limit towards `wanted`; return the connections it allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = wanted + SPARE_FILES
    if soft != resource.RLIM_INFINITY and soft < need:
        new = need if hard == resource.RLIM_INFINITY else min(hard, need)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
            soft = new
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, soft - SPARE_FILES))


@dataclass(frozen=True, slots=True)
class WebProcess:
    """What one web process needs; picklable, so it crosses into a spawned process."""

    settings: Settings
    sock: socket.socket
    push_worker: bool
    log_level: str
    parent_pid: int | None = None
    # This process's share of sign-ahead (ADR 0023): passes with id % count == index.
    index: int = 0
    count: int = 1


def run_web_process(spec: WebProcess) -> None:
    """Serve the app on `spec.sock` until SIGTERM or SIGINT (blocking)."""
    if spec.parent_pid is not None:
        _exit_with_parent(spec.parent_pid)
    from passhouse.worker import run_worker

    settings = spec.settings
    runtime = open_runtime(settings)

    async def background(stop: asyncio.Event) -> None:
        await run_worker(runtime, stop)

    share = Share(spec.index, spec.count) if settings.sign_ahead else None
    app = create_app(runtime, background=background if spec.push_worker else None, sign_ahead=share)
    connections = raise_open_files_limit(settings.http_max_connections)
    if connections < settings.http_max_connections:
        log.warning(
            "http_max_connections_lowered",
            wanted=settings.http_max_connections,
            allowed=connections,
            reason="the open-files limit (ulimit -n) is too low",
        )
        settings = settings.model_copy(update={"http_max_connections": connections})
    # Our access log replaces uvicorn's (which goes through `logging` per request).
    access = access_log(
        enabled=settings.access_log and spec.log_level.lower() in ("trace", "debug", "info")
    )
    config = uvicorn.Config(
        app,
        http=guarded_protocol(EdgeLimits.from_settings(settings), access),
        access_log=False,
        ws="none",
        log_level=spec.log_level,
        # web/clients.py reads forwarding headers, and only from PASSHOUSE_TRUSTED_PROXIES;
        # uvicorn's would believe any client that connects through 127.0.0.1.
        proxy_headers=False,
        server_header=False,
        lifespan="on",
        backlog=BACKLOG,
        timeout_graceful_shutdown=settings.http_shutdown_timeout_seconds,
    )
    try:
        _FlushingServer(config, access).run(sockets=[spec.sock])
    finally:
        # A spawned process exits without running atexit hooks: write the last lines now.
        access.flush()


class _FlushingServer(uvicorn.Server):
    """Writes the access log's last lines at the end of the graceful shutdown.

    After a SIGTERM, uvicorn raises the signal again once it has shut down, with the
    default handler back in place: the process ends there, and code after `run()` never
    runs (the `finally` above covers the other ways out).
    """

    def __init__(self, config: uvicorn.Config, access: AccessLog) -> None:
        super().__init__(config)
        self._access = access

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().shutdown(sockets=sockets)
        finally:
            self._access.flush()


def _exit_with_parent(parent_pid: int) -> None:
    # A `serve` killed with SIGKILL cannot stop its web processes: the kernel does it.
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() != parent_pid:  # it died before the line above
        sys.exit(0)


def supervise(specs: list[WebProcess], shutdown_timeout: float) -> int:
    """Run one spawned process per spec until SIGTERM/SIGINT or one of them exits.

    On a signal every process gets SIGTERM and its graceful shutdown; whatever still runs
    `shutdown_timeout` + KILL_MARGIN_SECONDS later is killed. A process that exits on its
    own stops the others too (the service manager restarts `serve` as a whole). Returns
    the exit code for `serve` (after a signal, the process ends by that signal).
    """
    context = multiprocessing.get_context("spawn")
    stopping: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stopping.append(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    processes = []
    failed = False
    try:
        for spec in specs:
            process = context.Process(target=run_web_process, args=(spec,), name="passhouse-web")
            process.start()
            processes.append(process)
        for spec in specs:
            spec.sock.close()  # the web processes hold them now
        while not stopping:
            exited = wait([p.sentinel for p in processes], timeout=0.5)
            if exited and not stopping:
                for process in processes:
                    if process.exitcode is not None:
                        log.error("web_process_exited", pid=process.pid, code=process.exitcode)
                failed = True
                break
        _stop_all(processes, shutdown_timeout + KILL_MARGIN_SECONDS)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if stopping:
        # Like one uvicorn process: end by the signal, so service managers see it.
        signal.raise_signal(stopping[0])
    return 1 if failed else 0


def _stop_all(processes: Sequence[multiprocessing.process.BaseProcess], bound: float) -> None:
    for process in processes:
        if process.exitcode is None and process.pid is not None:
            os.kill(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + bound
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
    for process in processes:
        if process.exitcode is None:
            log.error("web_process_killed", pid=process.pid, after_seconds=bound)
            process.kill()
            process.join()
