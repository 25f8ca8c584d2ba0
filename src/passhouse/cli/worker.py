"""`passhouse worker`: send queued pushes to APNs until told to stop."""

from __future__ import annotations

import asyncio
import logging
import signal

import click
import structlog
from prometheus_client import start_http_server

from passhouse import preflight
from passhouse.bootstrap import open_runtime
from passhouse.cli.server import load_settings, uses_database
from passhouse.errors import PasshouseError
from passhouse.settings import Settings
from passhouse.storage import migrate


@click.command("worker")
@click.option("--log-level", default="info", show_default=True)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=0,
    help="Serve Prometheus /metrics of this worker on this port (0: off).",
)
@click.option("--metrics-host", default="127.0.0.1", show_default=True)
@uses_database
def worker(log_level: str, metrics_port: int, metrics_host: str) -> None:
    """Send queued pushes to APNs, and apply scheduled changes, expiry and retirement.

    Run as many as you like against PostgreSQL; they share the queue, and each scheduled
    change is applied by one of them. SIGTERM or Ctrl-C finishes the pushes in flight and
    exits; a worker killed outright loses nothing (its pushes are sent again once their
    lease runs out; a change it was applying is still pending).
    """
    settings = load_settings()
    _configure_logging(log_level)
    if metrics_port:
        # Pushes by outcome and APNs latency are counted in the worker process, so a
        # separate worker needs its own scrape target.
        start_http_server(metrics_port, addr=metrics_host)
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:  # uvloop is optional (not on Windows)
        runner = asyncio.Runner()
    with runner:
        runner.run(_run(settings))


async def _run(settings: Settings) -> None:
    from passhouse.worker import run_worker

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        runtime = open_runtime(settings)
    except PasshouseError as error:
        raise click.ClickException(error.message) from None
    try:
        try:
            await preflight.check_database(runtime)
            current = await migrate.current_revision(runtime.database)
            if current == migrate.head_revision():
                await preflight.check_secret_key(runtime)
        except PasshouseError as error:
            raise click.ClickException(error.message) from None
        if current != migrate.head_revision():
            raise click.ClickException(
                "the database schema is not up to date: run `passhouse migrate` first."
            )
        await run_worker(runtime, stop)
    finally:
        await runtime.database.dispose()


def _configure_logging(level: str) -> None:
    # JSON lines, so a 403 on a pass type stands out in any log pipeline.
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
    )


def _attach() -> None:
    from passhouse.cli import main

    main.add_command(worker)


_attach()
