"""create_app(runtime): the admin API, the PassKit web service and the share pages."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from passhouse import __version__
from passhouse.bootstrap import Runtime
from passhouse.issuing import PassBuilder, now_ms
from passhouse.metrics import PUSH_QUEUE_DEPTH, PUSH_STALLED
from passhouse.sign_ahead import Share, run_sign_ahead
from passhouse.storage import push_jobs
from passhouse.web import (
    admin,
    admin_preview,
    bulk,
    dashboard,
    google,
    passninja,
    scheduled,
    share,
    webhooks_api,
)
from passhouse.web.errors import EXCEPTION_HANDLERS
from passhouse.web.health import health_routes
from passhouse.web.limits import RequestLimits
from passhouse.web.passkit import PassKitContext, RateLimiter, passkit_router

BackgroundTask = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


def create_app(
    runtime: Runtime,
    *,
    background: BackgroundTask | None = None,
    clock: Callable[[], float] = time.monotonic,
    sign_ahead: Share | None = None,
) -> ASGIApp:
    """The whole HTTP surface. `background` (the in-process push worker) runs with the app;
    `clock` (monotonic seconds) times the per-client rate limits; with `sign_ahead`, this
    process signs its share of the files queued pushes will make devices download."""
    settings = runtime.settings
    builder = PassBuilder(runtime.sealer, settings.web_service_url)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        stop = asyncio.Event()
        task = asyncio.create_task(background(stop)) if background else None
        signing = (
            asyncio.create_task(run_sign_ahead(runtime.database, builder, sign_ahead, stop))
            if sign_ahead is not None
            else None
        )
        try:
            yield
        finally:
            stop.set()
            for running in (task, signing):
                if running is not None:
                    await running
            await runtime.database.dispose()

    # Swagger UI's files come from the fastapi-offline package: the docs work with no CDN.
    app = FastAPIOffline(
        title="passhouse",
        version=__version__,
        description="Issue Apple Wallet passes and keep every installed copy up to date.",
        docs_url="/api/docs",
        redoc_url=None,
        static_url="/api/docs/static",
        openapi_url="/api/openapi.json",
        swagger_ui_oauth2_redirect_url="/api/docs/oauth2-redirect",
        swagger_ui_parameters={"persistAuthorization": True},
        lifespan=lifespan,
        exception_handlers=EXCEPTION_HANDLERS,
    )
    app.state.runtime = runtime
    app.state.builder = builder
    app.include_router(admin.router)
    app.include_router(scheduled.router)
    app.include_router(webhooks_api.router)
    app.include_router(bulk.router)
    app.include_router(admin_preview.router)
    app.include_router(google.router)
    app.include_router(google.public_router)
    app.include_router(share.router)
    app.include_router(dashboard.router)
    # /api/openapi.json describes passhouse's own admin API (ADR 0015); the PassNinja-
    # compatible API is PassNinja's, described by its docs and driven by its SDKs.
    app.include_router(passninja.router, include_in_schema=False)
    context = PassKitContext(
        settings=settings,
        database=runtime.database,
        builder=builder,
        log_limiter=RateLimiter(settings.device_log_rate_per_minute, clock=clock),
        registration_limiter=RateLimiter(settings.registration_rate_per_minute, clock=clock),
    )

    async def metrics(_request: Request) -> Response:
        # The queue is shared by every process: read its depth when scraped.
        async with runtime.database.reader() as conn:
            PUSH_QUEUE_DEPTH.set(await push_jobs.queue_depth(conn))
            progress = await push_jobs.push_progress(
                conn, now_ms=now_ms(), stall_seconds=settings.push_stall_seconds
            )
        PUSH_STALLED.set(0 if progress.ok else 1)
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    app.router.routes.append(Route("/metrics", metrics, include_in_schema=False))
    app.router.routes.extend(health_routes(runtime))
    devices = passkit_router(context)

    async def dispatch(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/passkit/"):
            await devices(scope, receive, send)
        else:
            await app(scope, receive, send)

    return RequestLimits(dispatch, max_bytes=settings.max_request_bytes)
