"""Apple's PassKit web service (`{webServiceURL}/v1/...`), as plain Starlette routes.

These are the device hot path: plain routes (FastAPI's routing costs about 2x here) and
SQLAlchemy Core statements compiled once, no ORM.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any, TypeGuard

import structlog
from starlette.datastructures import QueryParams
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, Router
from starlette.types import Receive, Scope, Send

from passhouse import issuing
from passhouse.errors import PasshouseError
from passhouse.metrics import DEVICE_LATENCY, DEVICE_REQUESTS
from passhouse.pkpass.bundle import PKPASS_MEDIA_TYPE
from passhouse.pkpass.errors import PkpassError
from passhouse.pkpass.json_input import JsonRejected, parse_json
from passhouse.push import transports
from passhouse.settings import Settings
from passhouse.storage import device_logs, passes, registrations
from passhouse.storage.database import Database
from passhouse.storage.hot_path import PassAuth, Registered, Registration, token_matches
from passhouse.web.clients import client_address, limit_key
from passhouse.web.errors import error_response, fault_response
from passhouse.web.limits import BodyTooLarge

log = structlog.get_logger("passhouse.passkit")

MAX_SEGMENT = 255
MAX_DEVICE_BODY = 64 * 1024
# The server log gets a summary of each /v1/log request, not the messages (the database
# keeps those): a device may send 100 messages of 4 kB each.
LOG_PREVIEW_CHARS = 200

Handler = Callable[[Request], Awaitable[Response]]
_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
_METHODS = frozenset(_ALL_METHODS)


@dataclass(slots=True)
class PassKitContext:
    settings: Settings
    database: Database
    builder: issuing.PassBuilder
    log_limiter: RateLimiter
    registration_limiter: RateLimiter


class RateLimiter:
    """Fixed one-minute windows per client address (see clients.limit_key); bounded memory.

    `clock` gives monotonic seconds; tests pass one they control. 0 per minute: no limit.
    """

    def __init__(
        self,
        per_minute: int,
        *,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_minute = per_minute
        self.max_clients = max_clients
        self._clock = clock
        self._window = 0
        self._counts: dict[str, int] = {}

    def allow(self, client: str) -> bool:
        if self.per_minute == 0:
            return True
        window = int(self._clock() // 60)
        if window != self._window or len(self._counts) > self.max_clients:
            self._window = window
            self._counts = {}
        key = limit_key(client)
        count = self._counts.get(key, 0) + 1
        self._counts[key] = count
        return count <= self.per_minute

    def refusal(self, what: str) -> Response:
        """The 429 for a client over the limit, saying when the window ends."""
        retry_after = max(1, math.ceil(60 - self._clock() % 60))
        return error_response(
            429,
            f"Too many {what} from this address; try again in {retry_after} s.",
            headers={"Retry-After": str(retry_after)},
        )


def _unauthorized() -> Response:
    return error_response(401, "Request not authorized.")


def _bad_segment(name: str) -> Response:
    return error_response(400, f"{name} must be 1 to {MAX_SEGMENT} characters.")


def _segments_ok(*values: str) -> bool:
    return all(0 < len(value) <= MAX_SEGMENT and "\x00" not in value for value in values)


def _token_matches(request: Request, expected: str | None) -> bool:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    # ApplePass, or the Android apps' AndroidPass and AttidoPass: the token decides.
    valid = scheme in transports.SCHEMES
    return token_matches(token, expected) and valid


def _text(value: Any) -> TypeGuard[str]:
    """A non-blank string a text column can hold (PostgreSQL's cannot hold NUL)."""
    return isinstance(value, str) and bool(value.strip()) and "\x00" not in value


class _TooLarge(ValueError):
    pass


async def _read_json(request: Request, max_depth: int) -> Any:
    """The body as JSON, or raise ValueError with a sentence for the client."""
    chunks = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_DEVICE_BODY:
                raise _TooLarge(f"The request body is larger than {MAX_DEVICE_BODY} bytes.")
            chunks.append(chunk)
    except BodyTooLarge as error:
        raise _TooLarge(error.message) from None
    except ClientDisconnect:
        # The device went away mid-upload (lost network): nothing to store, nobody to answer.
        raise ValueError("The client disconnected before sending the whole body.") from None
    try:
        return parse_json(b"".join(chunks), max_depth=max_depth)
    except JsonRejected:
        raise
    except ValueError:
        raise ValueError("The request body is not valid JSON.") from None


def _parse_tag(value: str | None) -> int:
    """Our tags are version numbers; anything else (absent, or another server's tag) is 0.

    Answering "everything" for an unreadable tag is safe: the device then asks for each
    pass with If-Modified-Since and gets a 304 for the unchanged ones.
    """
    if value is None:
        return 0
    try:
        return max(int(value), 0)
    except ValueError:
        return 0


def _tag_of_query(query_string: bytes) -> int:
    """passesUpdatedSince of a query string, as _parse_tag reads it."""
    if not query_string:
        return 0
    return _tag_of_nonempty_query(query_string)


# Devices of one fan-out send the same few tags: parse each query string once (bounded).
@functools.lru_cache(maxsize=4096)
def _tag_of_nonempty_query(query_string: bytes) -> int:
    return _parse_tag(QueryParams(query_string).get("passesUpdatedSince"))


def _parse_if_modified_since(value: str | None) -> int | None:
    """Unix seconds of If-Modified-Since: an HTTP date, or a bare number; None if unreadable."""
    if not value:
        return None
    return _parse_http_time(value)


# A pass's Last-Modified comes back in every If-Modified-Since: few distinct values.
@functools.lru_cache(maxsize=4096)
def _parse_http_time(value: str) -> int | None:
    value = value.strip()
    if value.isdigit():
        return int(value)
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:  # an HTTP date is always GMT, even when it does not say so
        return int(parsed.replace(tzinfo=dt.UTC).timestamp())
    return int(parsed.timestamp())


@functools.lru_cache(maxsize=4096)
def _http_date(seconds: int) -> str:
    return format_datetime(dt.datetime.fromtimestamp(seconds, dt.UTC), usegmt=True)


def passkit_routes(context: PassKitContext) -> list[BaseRoute]:
    database = context.database
    hot = database.hot
    builder = context.builder
    settings = context.settings

    async def authorized_pass(request: Request) -> PassAuth | Response:
        """The pass named in the path if the request holds its token, else the answer.

        One 401 for "no such pass" and "wrong token", so serials cannot be probed.
        """
        params = request.path_params
        pass_type_id, serial = params["pass_type_id"], params["serial_number"]
        if not _segments_ok(pass_type_id, serial, params.get("device_library_id", "-")):
            return _bad_segment("Each path segment")
        found = await hot.pass_for_device(pass_type_id, serial)
        if not _token_matches(request, found.authentication_token if found else None):
            return _unauthorized()
        assert found is not None
        return found

    async def register_device(request: Request) -> Response:
        """developer.apple.com/documentation/walletpasses/register-a-pass-for-update-notifications

        Also Wallet Passes, Pass2U and Passworks, told apart by their headers.
        """
        return await register(request, passwallet=False)

    async def register_passwallet(request: Request) -> Response:
        """github.com/Kwiket/passwallet README, "Registering a Device to Receive Push
        Notifications for a Pass": Apple's call plus a pushServiceUrl to push to."""
        return await register(request, passwallet=True)

    async def register(request: Request, *, passwallet: bool) -> Response:
        limiter = context.registration_limiter
        if not limiter.allow(client_address(request, settings)):
            return limiter.refusal("registrations")
        params = request.path_params
        pass_type_id, serial = params["pass_type_id"], params["serial_number"]
        device_library_id = params["device_library_id"]
        if not _segments_ok(pass_type_id, serial, device_library_id):
            return _bad_segment("Each path segment")
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        if scheme not in transports.SCHEMES:
            return _unauthorized()

        async def refused(
            answer: Response, *, push_service: bool = False, reason: str | None = None
        ) -> Response:
            """A request refused for its body: the pass and token are checked first, so
            an unauthorized one still gets its 401. A retired pass's push service is not
            checked: it is answered as any registration for it is (200)."""
            found = await authorized_pass(request)
            if isinstance(found, Response):
                return found
            if push_service and found.retired:
                return Response(status_code=200)
            if reason is not None:
                # The reason names the host: an operator whose PassWallet users are
                # refused learns what to add to the allow-list.
                log.warning("registration_refused_push_service", pass_id=found.id, reason=reason)
            return answer

        try:
            body = await _read_json(request, settings.json_max_depth)
        except ValueError as error:
            return await refused(
                error_response(413 if isinstance(error, _TooLarge) else 400, str(error))
            )
        push_token = body.get("pushToken") if isinstance(body, dict) else None
        if not _text(push_token):
            extra = ', "pushServiceUrl": "<url>"' if passwallet else ""
            return await refused(
                error_response(400, f'The body must be {{"pushToken": "<token>"{extra}}}.')
            )
        if passwallet:
            transport, push_service_url = transports.PASSWALLET, body.get("pushServiceUrl")
            if not _text(push_service_url):
                answer = error_response(400, "pushServiceUrl must be a URL.")
                return await refused(answer, push_service=True)
            push_service_url = push_service_url.strip()
            # Anyone holding the pass's public token can send this URL: it is only ever
            # called on an allow-listed host (ADR 0017).
            refusal = transports.push_service_refusal(
                push_service_url, settings.passwallet_push_hosts
            )
            if refusal is not None:
                answer = error_response(403, refusal, code="push_service_not_allowed")
                return await refused(answer, push_service=True, reason=refusal)
        else:
            headers = request.headers
            push_service_url = ""
            transport = transports.registration_transport(
                scheme, headers.get("x-pass-client"), headers.get("user-agent")
            )
        # The pass is looked up, its token checked and the registration written in one
        # round trip (ADR 0030).
        registered = await hot.register(
            Registration(
                pass_type_id=pass_type_id,
                serial_number=serial,
                presented_token=presented,
                device_library_id=device_library_id,
                push_token=push_token.strip(),
                now_ms=issuing.now_ms(),
                max_registrations=settings.registrations_per_pass,
                transport=transport,
                push_service_url=push_service_url,
            )
        )
        if registered is Registered.UNAUTHORIZED:
            return _unauthorized()
        if registered is Registered.RETIRED:
            # Nothing is pushed for a retired pass again: nothing was stored, and the
            # answer is as for a known registration so the device does not retry; the
            # next time it asks for the pass it gets the file that tells it to stop
            # (ADR 0020).
            return Response(status_code=200)
        if registered is Registered.PASS_FULL:
            # Refused for good, so the device need not retry; the pass still works in
            # Wallet, it just gets no updates on this device (ADR 0010).
            log.warning("registration_refused_pass_full", pass_type_id=pass_type_id, serial=serial)
            return error_response(
                403,
                f"This pass is already registered on {settings.registrations_per_pass} "
                "devices, the most it takes.",
                code="registration_limit",
            )
        return Response(status_code=201 if registered is Registered.CREATED else 200)

    async def unregister_device(request: Request) -> Response:
        """developer.apple.com/documentation/walletpasses/unregister-a-pass-for-update-notifications"""
        found = await authorized_pass(request)
        if isinstance(found, Response):
            return found
        device_library_id = request.path_params["device_library_id"]
        async with database.transaction() as conn:
            await registrations.unregister_device(
                conn, found.id, device_library_id, now_ms=issuing.now_ms()
            )
        return Response(status_code=200)

    async def list_updatable_passes(request: Request) -> Response:
        """developer.apple.com/documentation/walletpasses/get-the-list-of-updatable-passes"""
        params = request.path_params
        device_library_id, pass_type_id = params["device_library_id"], params["pass_type_id"]
        if not _segments_ok(device_library_id, pass_type_id):
            return _bad_segment("Each path segment")
        since = _tag_of_query(request.scope["query_string"])
        changed = await hot.serials_updated_since(device_library_id, pass_type_id, since)
        if not changed:
            return Response(status_code=204)
        return JSONResponse(
            {
                "serialNumbers": [serial for serial, _ in changed],
                # A string, as Apple documents; the device hands it back unchanged.
                "lastUpdated": str(max(version for _, version in changed)),
            }
        )

    async def latest_pass(request: Request) -> Response:
        """developer.apple.com/documentation/walletpasses/send-an-updated-pass"""
        found = await authorized_pass(request)
        if isinstance(found, Response):
            return found
        since = _parse_if_modified_since(request.headers.get("if-modified-since"))
        if since is not None and since >= found.modified_at:
            return Response(
                status_code=304, headers={"last-modified": _http_date(found.modified_at)}
            )
        data, version = await builder.pkpass(database, found.id, found.version)
        modified_at = found.modified_at
        if version != found.version:  # a newer version was built meanwhile: say so
            params = request.path_params
            newer = await hot.pass_for_device(params["pass_type_id"], params["serial_number"])
            modified_at = newer.modified_at if newer else modified_at
        return Response(
            data,
            media_type=PKPASS_MEDIA_TYPE,
            headers={"last-modified": _http_date(modified_at), "cache-control": "no-cache"},
        )

    async def log_messages(request: Request) -> Response:
        """developer.apple.com/documentation/walletpasses/log-a-message"""
        client = client_address(request, settings)
        if not context.log_limiter.allow(client):
            return context.log_limiter.refusal("log requests")
        try:
            body = await _read_json(request, settings.json_max_depth)
        except ValueError as error:
            return error_response(413 if isinstance(error, _TooLarge) else 400, str(error))
        # Apple sends {"logs": [...]}; some clients post the bare array.
        logs = body.get("logs") if isinstance(body, dict) else body
        if not isinstance(logs, list) or not all(
            isinstance(m, str) and "\x00" not in m for m in logs
        ):
            return error_response(400, 'The body must be {"logs": ["message", ...]}.')
        messages = [message[:4096] for message in logs[:100]]
        if messages:
            log.info(
                "device_log",
                count=len(messages),
                bytes=sum(len(m.encode(errors="surrogatepass")) for m in messages),
                first=messages[0][:LOG_PREVIEW_CHARS],
                client=client,
            )
        async with database.transaction() as conn:
            await device_logs.add_messages(
                conn,
                messages,
                remote_addr=client,
                now=issuing.now_seconds(),
                keep=settings.device_log_keep,
            )
        return Response(status_code=200)

    async def personalize(request: Request) -> Response:
        """developer.apple.com/documentation/walletpasses/return-a-personalized-pass"""
        params = request.path_params
        pass_type_id, serial = params["pass_type_id"], params["serial_number"]
        if not _segments_ok(pass_type_id, serial):
            return _bad_segment("Each path segment")
        try:
            body = await _read_json(request, settings.json_max_depth)
        except ValueError as error:
            return error_response(413 if isinstance(error, _TooLarge) else 400, str(error))
        parsed = _personalization_body(body)
        if isinstance(parsed, str):
            return error_response(400, parsed)
        token, info = parsed
        async with database.transaction() as conn:
            found = await passes.get_pass(conn, pass_type_id, serial)
            # Apple documents no Authorization header here; when one is sent it must be
            # right (ADR 0004). With or without one, a pass is personalized once: its
            # token is in every copy of the pass, so it proves nothing here (ADR 0010).
            if found is None:
                return _unauthorized()
            if "authorization" in request.headers and not _token_matches(
                request, found.authentication_token
            ):
                return _unauthorized()
            signature = await issuing.personalize_pass(
                conn, builder, found, personalization_token=token, info=info
            )
        return Response(signature, media_type="application/octet-stream")

    def measured(endpoint: str, handler: Handler) -> Handler:
        latency = DEVICE_LATENCY.labels(endpoint)
        counters: dict[int, Any] = {}

        async def wrapper(request: Request) -> Response:
            started = time.perf_counter()
            try:
                response = await handler(request)
            except PasshouseError as error:
                response = error_response(error.status_code, error.message, code=error.code)
            except PkpassError as error:
                response = error_response(422, error.message, code="invalid_pass")
            except Exception as error:
                # These routes sit outside FastAPI's error handlers (see web/app.py).
                fault = fault_response(database, error)
                if fault is None:
                    log.exception("device_endpoint_failed", endpoint=endpoint)
                    fault = error_response(500, "Internal error; it has been logged.")
                response = fault
            latency.observe(time.perf_counter() - started)
            counter = counters.get(response.status_code)
            if counter is None:
                counter = counters[response.status_code] = DEVICE_REQUESTS.labels(
                    endpoint, str(response.status_code)
                )
            counter.inc()
            return response

        return wrapper

    def by_method(handlers: dict[str, Handler]) -> Handler:
        allow = ", ".join(handlers)

        async def dispatch(request: Request) -> Response:
            handler = handlers.get(request.method)
            if handler is None:
                return error_response(405, f"Use {allow} on this path.", headers={"Allow": allow})
            return await handler(request)

        return dispatch

    def route(path: str, handlers: dict[str, Handler]) -> Route:
        # Every method reaches by_method, which answers a JSON 405 for the wrong ones.
        return Route(path, by_method(handlers), methods=_ALL_METHODS)

    registration = "/passkit/v1/devices/{device_library_id}/registrations/{pass_type_id}"
    attido = "/passkit/v1/devices/{device_library_id}/registrations_attido/{pass_type_id}"
    return [
        route(
            registration + "/{serial_number}",
            {
                "POST": measured("register", register_device),
                "DELETE": measured("unregister", unregister_device),
            },
        ),
        route(
            attido + "/{serial_number}",
            {
                "POST": measured("register_passwallet", register_passwallet),
                "DELETE": measured("unregister", unregister_device),
            },
        ),
        route(registration, {"GET": measured("serials", list_updatable_passes)}),
        route(
            "/passkit/v1/passes/{pass_type_id}/{serial_number}",
            {"GET": measured("pass", latest_pass)},
        ),
        route(
            "/passkit/v1/passes/{pass_type_id}/{serial_number}/personalize",
            {"POST": measured("personalize", personalize)},
        ),
        route("/passkit/v1/log", {"POST": measured("log", log_messages)}),
    ]


async def _not_found(scope: Scope, receive: Receive, send: Send) -> None:
    response = error_response(404, "No such PassKit web service endpoint.")
    await response(scope, receive, send)


def passkit_router(context: PassKitContext) -> DeviceRouter:
    """The device endpoints, matched by path segments, with a Starlette router behind.

    Device requests skip FastAPI's middleware stack and its route list (measured: about
    0.2 ms per request, a quarter of a 304); web/app.py sends /passkit/ paths here.
    """
    return DeviceRouter(passkit_routes(context))


class DeviceRouter:
    """Calls the endpoint of a path that fits one of the routes' templates segment by
    segment (a `{name}` is one non-empty segment, as in Starlette); any other path
    (trailing slash, empty segment, a root_path) goes to the Starlette router built from
    the same routes, which answers as before (its redirect, or the JSON 404).

    Starlette's Router, Route matching by regular expression and request_response
    wrapper cost about a tenth of a 304 (py-spy, docs/benchmarks.md "Request path").
    """

    def __init__(self, routes: list[BaseRoute]) -> None:
        self.router = Router(routes=routes, default=_not_found)
        self.templates: list[tuple[int, tuple[tuple[int, str, bool], ...], Handler]] = []
        for route in routes:
            assert isinstance(route, Route)
            parts = route.path.split("/")
            pieces = tuple(
                (i, part[1:-1], True) if part.startswith("{") else (i, part, False)
                for i, part in enumerate(parts)
            )
            endpoint = route.endpoint
            self.templates.append((len(parts), pieces, endpoint))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Only the methods the routes accept: Starlette answers any other one itself.
        if scope["type"] == "http" and scope["method"] in _METHODS and not scope.get("root_path"):
            parts = scope["path"].split("/")
            count = len(parts)
            for length, pieces, endpoint in self.templates:
                if length != count:
                    continue
                params: dict[str, str] = {}
                for i, text, is_param in pieces:
                    part = parts[i]
                    if is_param:
                        if not part:
                            break
                        params[text] = part
                    elif part != text:
                        break
                else:
                    scope["path_params"] = params
                    response = await endpoint(Request(scope, receive, send))
                    await response(scope, receive, send)
                    return
        await self.router(scope, receive, send)


def _personalization_body(body: Any) -> tuple[str, dict[str, str]] | str:
    """(token, info) from a PersonalizationDictionary, or a sentence saying what is wrong."""
    if not isinstance(body, dict):
        return "The body must be a JSON object."
    token = body.get("personalizationToken")
    if not isinstance(token, str) or not token:
        return "personalizationToken must be a non-empty string."
    info = body.get("requiredPersonalizationInfo")
    if not isinstance(info, dict):
        return "requiredPersonalizationInfo must be an object."
    cleaned: dict[str, str] = {}
    for key in issuing.PERSONALIZATION_KEYS:
        value = info.get(key)
        if value is None:
            continue
        if isinstance(value, dict):  # the archived guide types some of these as dictionaries
            value = " ".join(str(v) for v in value.values() if isinstance(v, str | int))
        if not isinstance(value, str | int):
            return f"requiredPersonalizationInfo.{key} must be a string."
        cleaned[key] = str(value)[:500]
    if not cleaned:
        # Stored, it would use up the pass's one personalization and sign up nobody.
        return "requiredPersonalizationInfo must hold one of: " + ", ".join(
            issuing.PERSONALIZATION_KEYS
        )
    return token, cleaned
