"""Every error leaves as {"error": {"code", "message"}} with a 4xx (or a logged 500)."""

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


def error_response(
    status_code: int,
    message: str,
    *,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code or _CODES.get(status_code, "error"), "message": message}},
        status_code=status_code,
        headers=headers,
    )


async def on_passhouse_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PasshouseError)
    return error_response(exc.status_code, exc.message, code=exc.code)


async def on_pkpass_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PkpassError)
    if isinstance(exc, TemplateTooLarge):
        return error_response(413, exc.message)
    return error_response(422, exc.message, code="invalid_pass")


async def on_http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = exc.detail if isinstance(exc.detail, str) else "Request failed."
    headers = dict(exc.headers) if exc.headers else None
    return error_response(exc.status_code, message, headers=headers)


async def on_validation_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if any(error.get("type") == "json_invalid" for error in errors):
        return error_response(400, "The request body is not valid JSON.")
    if any(
        tuple(error.get("loc", ())) == ("body",)
        and error.get("type") in ("model_attributes_type", "dict_type", "missing")
        for error in errors
    ):
        return error_response(
            422,
            "The body must be a JSON object, sent with Content-Type: application/json.",
            code="invalid_input",
        )
    problems = [_describe(error) for error in errors]
    return error_response(422, "; ".join(problems) or "Invalid request.", code="invalid_input")


def _describe(error: Any) -> str:
    location = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
    message = str(error.get("msg", "invalid"))
    return f"{location}: {message}" if location else message


async def on_unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled_error", path=request.url.path, method=request.method)
    return error_response(500, "Internal error; it has been logged.", code="internal_error")


def fault_response(database: Database, error: BaseException) -> Response | None:
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
    )


async def on_database_error(request: Request, exc: Exception) -> Response:
    response = fault_response(request.app.state.runtime.database, exc)
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
