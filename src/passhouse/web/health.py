"""Liveness (`/livez`, `/healthz`: the process answers) and readiness (`/readyz`).

Readiness is a list of named checks; each answers None when fine or a sentence saying what
is wrong. A load balancer or Kubernetes readinessProbe takes a process out of rotation
while any check fails; the livenessProbe must not use /readyz, or a database outage would
restart every web process for nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from passhouse import __version__
from passhouse.bootstrap import Runtime
from passhouse.issuing import now_ms
from passhouse.storage import migrate, push_jobs
from passhouse.storage.faults import database_fault

log = structlog.get_logger("passhouse.web")

Check = Callable[[Runtime], Awaitable[str | None]]
# Longer than any healthy query, shorter than a probe's usual 5-10 s timeout.
CHECK_TIMEOUT_SECONDS = 3.0


async def database_reachable(runtime: Runtime) -> str | None:
    try:
        await runtime.database.ping()
    except Exception as error:
        if database_fault(error) is None:
            raise
        return "the database is unreachable"
    return None


async def migrations_at_head(runtime: Runtime) -> str | None:
    try:
        current = await migrate.current_revision(runtime.database)
    except Exception as error:
        if database_fault(error) is None:
            raise
        return "unknown while the database is unreachable"
    head = migrate.head_revision()
    if current != head:
        return f"the schema is at {current or 'no revision'}, not {head}: run `passhouse migrate`"
    return None


async def push_worker_progressing(runtime: Runtime) -> str | None:
    try:
        async with runtime.database.reader() as conn:
            progress = await push_jobs.push_progress(
                conn, now_ms=now_ms(), stall_seconds=runtime.settings.push_stall_seconds
            )
    except Exception as error:
        if database_fault(error) is None:
            raise
        return "unknown while the database is unreachable"
    return None if progress.ok else progress.reason


# (name, check, the checks it needs to pass first). The push check reads push_jobs, which a
# database behind on migrations may not have: asking would only raise.
READINESS_CHECKS: list[tuple[str, Check, tuple[str, ...]]] = [
    ("database", database_reachable, ()),
    ("migrations", migrations_at_head, ()),
    ("push", push_worker_progressing, ("migrations",)),
]


async def _run_check(check: Check, runtime: Runtime) -> str | None:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
            return await check(runtime)
    except TimeoutError:
        return f"no answer within {CHECK_TIMEOUT_SECONDS:g} s"
    except Exception as error:  # a readiness answer, not a 500
        log.exception("readiness_check_failed")
        return f"failed: {type(error).__name__}"


async def _run_checks(
    checks: Sequence[tuple[str, Check, tuple[str, ...]]], runtime: Runtime
) -> dict[str, str | None]:
    """Every check at once, except that one waits for those it needs (skipped needs pass)."""
    tasks: dict[str, asyncio.Task[str | None]] = {}

    async def run(check: Check, needs: tuple[str, ...]) -> str | None:
        for need in needs:
            if need in tasks and await tasks[need] is not None:
                return f"unknown until {need} is ok"
        return await _run_check(check, runtime)

    for name, check, needs in checks:
        tasks[name] = asyncio.ensure_future(run(check, needs))
    return {name: await task for name, task in tasks.items()}


def health_routes(
    runtime: Runtime, checks: Sequence[tuple[str, Check, tuple[str, ...]]] = READINESS_CHECKS
) -> list[BaseRoute]:
    async def live(_request: Request) -> Response:
        return JSONResponse({"status": "ok", "version": __version__})

    async def ready(request: Request) -> Response:
        # `?skip=push` lets a load balancer in front of web-only processes keep them in
        # rotation while a separate worker is stuck (that is for alerting, not routing).
        skipped = {
            name for value in request.query_params.getlist("skip") for name in value.split(",")
        }
        problems = await _run_checks(
            [check for check in checks if check[0] not in skipped], runtime
        )
        failing = {name: problem for name, problem in problems.items() if problem is not None}
        body: dict[str, object] = {
            "status": "not_ready" if failing else "ready",
            "checks": {name: problem or "ok" for name, problem in problems.items()},
        }
        if not failing:
            return JSONResponse(body)
        message = "; ".join(f"{name}: {problem}" for name, problem in failing.items())
        body["error"] = {"code": "not_ready", "message": message}
        return JSONResponse(body, status_code=503, headers={"Retry-After": "5"})

    return [
        Route("/livez", live, include_in_schema=False),
        Route("/healthz", live, include_in_schema=False),
        Route("/readyz", ready, include_in_schema=False),
    ]
