"""Every error leaves as {"error": {"code", "message"}} with a 4xx (or a logged 500).

Under /v1/ (the PassNinja-compatible API, web/passninja.py) the error also carries its
"status_code", as PassNinja's own errors do.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import structlog
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match

from passhouse.errors import PasshouseError
from passhouse.pkpass.errors import PkpassError, TemplateTooLarge
from passhouse.storage.database import Database
from passhouse.storage.faults import database_fault

log = structlog.get_logger("passhouse.web")

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    429: "too_many_requests",
}

PASSNINJA_PREFIX = "/v1/"


def error_response(
    status_code: int,
    message: str,
    *,
    code: str | None = None,
    headers: dict[str, str] | None = None,
    status_in_body: bool = False,
) -> JSONResponse:
    error: dict[str, Any] = {"code": code or _CODES.get(status_code, "error"), "message": message}
    if status_in_body:
        error["status_code"] = status_code
    return JSONResponse({"error": error}, status_code=status_code, headers=headers)


def _status_in_body(request: Request) -> bool:
    return request.url.path.startswith(PASSNINJA_PREFIX)


async def on_passhouse_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PasshouseError)
    return error_response(
        exc.status_code, exc.message, code=exc.code, status_in_body=_status_in_body(request)
    )


async def on_pkpass_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PkpassError)
    in_body = _status_in_body(request)
    if isinstance(exc, TemplateTooLarge):
        return error_response(413, exc.message, status_in_body=in_body)
    return error_response(422, exc.message, code="invalid_pass", status_in_body=in_body)


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = exc.detail if isinstance(exc.detail, str) else "Request failed."
    headers = dict(exc.headers) if exc.headers else None
    if exc.status_code == 405:
        headers = {**(headers or {}), "Allow": _allowed_methods(request)}
    return error_response(
        exc.status_code, message, headers=headers, status_in_body=_status_in_body(request)
    )


_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def _allowed_methods(request: Request) -> str:
    """Every method some route serves at this path. Starlette's own Allow names only the
    first route whose path matches, while a path such as /api/v1/templates/{ref} has three;
    each method is asked of the routes (BaseRoute.matches), whatever router holds them."""
    routes = request.app.router.routes
    allowed = [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes
        )
    ]
    return ", ".join(allowed)


async def on_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    in_body = _status_in_body(request)
    errors = exc.errors()
    if any(error.get("type") == "json_invalid" for error in errors):
        return error_response(400, "The request body is not valid JSON.", status_in_body=in_body)
    if any(
        tuple(error.get("loc", ())) == ("body",)
        and error.get("type") in ("model_attributes_type", "dict_type", "missing")
        for error in errors
    ):
        return error_response(
            422,
            "The body must be a JSON object, sent with Content-Type: application/json.",
            code="invalid_input",
            status_in_body=in_body,
        )
    problems = [_describe(error) for error in errors]
    return error_response(
        422,
        "; ".join(problems) or "Invalid request.",
        code="invalid_input",
        status_in_body=in_body,
    )


def _describe(error: Any) -> str:
    location = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
    message = str(error.get("msg", "invalid"))
    return f"{location}: {message}" if location else message


async def on_unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled_error", path=request.url.path, method=request.method)
    return error_response(
        500,
        "Internal error; it has been logged.",
        code="internal_error",
        status_in_body=_status_in_body(request),
    )


def fault_response(
    database: Database, error: BaseException, *, status_in_body: bool = False
) -> Response | None:
    """A 503 for an outage, a full disk or a read-only database (logged once); else None."""
    fault = database_fault(error)
    if fault is None:
        return None
    database.outages.report(fault, error)
    return error_response(
        503,
        fault.message,
        code=fault.value,
        headers={"Retry-After": str(fault.retry_after_seconds)},
        status_in_body=status_in_body,
    )


async def on_database_error(request: Request, exc: Exception) -> Response:
    response = fault_response(
        request.app.state.runtime.database, exc, status_in_body=_status_in_body(request)
    )
    return response if response is not None else await on_unexpected_error(request, exc)


EXCEPTION_HANDLERS = {
    PasshouseError: on_passhouse_error,
    # Handled here rather than by the catch-all below, which Starlette re-raises (a
    # second traceback in the server log for every request of an outage).
    SQLAlchemyError: on_database_error,
    OSError: on_database_error,
    sqlite3.Error: on_database_error,
    asyncpg.PostgresError: on_database_error,
    asyncpg.InterfaceError: on_database_error,
    PkpassError: on_pkpass_error,
    HTTPException: on_http_error,
    RequestValidationError: on_validation_error,
    Exception: on_unexpected_error,
}
