"""The HTTP edge: the limits uvicorn's httptools protocol does not enforce.

uvicorn (0.54, httptools) has no header size or count limit, no timeout for headers or
bodies that trickle in, and its `limit_concurrency` answers 503 only once a request's
headers are complete (a trickling client is never counted out). This protocol adds them
on top of uvicorn's own and keeps its keep-alive path: per request it stores a deadline
and counts header bytes; one timer per process sweeps the open connections.
See docs/decisions/0009-http-server.md.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, ClassVar

import httptools
import structlog
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from passhouse.settings import Settings
from passhouse.web.access_log import AccessLog

log = structlog.get_logger("passhouse.http")

# After a refusal, keep reading (and dropping) what the client still sends this long, so
# it can read the answer instead of a reset (a close with unread data sends RST).
LINGER_SECONDS = 1.0
# At most one "connection limit reached" line per process this often.
CAP_LOG_INTERVAL_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class EdgeLimits:
    max_header_bytes: int
    max_headers: int
    header_timeout: float
    body_timeout: float
    max_connections: int
    shutdown_timeout: float

    @classmethod
    def from_settings(cls, settings: Settings) -> EdgeLimits:
        return cls(
            max_header_bytes=settings.http_max_header_bytes,
            max_headers=settings.http_max_headers,
            header_timeout=settings.http_header_timeout_seconds,
            body_timeout=settings.http_body_timeout_seconds,
            max_connections=settings.http_max_connections,
            shutdown_timeout=settings.http_shutdown_timeout_seconds,
        )


class _Refused(Exception):
    """Raised inside a parser callback to stop parsing the request."""


def guarded_protocol(
    limits: EdgeLimits, access: AccessLog | None = None
) -> type[HttpToolsProtocol]:
    """A protocol class for one uvicorn server (its sweep state lives on the class).

    `access` replaces uvicorn's access logger (web/access_log.py); None logs no requests.
    """

    class Guarded(GuardedHttpToolsProtocol):
        pass

    Guarded.limits = limits
    Guarded.access = access
    return Guarded


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    limits: ClassVar[EdgeLimits]
    access: ClassVar[AccessLog | None] = None
    _sweeping: ClassVar[bool] = False
    _cap_logged_at: ClassVar[float] = float("-inf")
    _cap_refused: ClassVar[int] = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        access = self.access
        # uvicorn calls access_logger.info(...) per response when access_log is set.
        self.access_log = access is not None and access.enabled
        if access is not None:
            self.access_logger = access  # type: ignore[assignment]
        # loop time by which the current phase (headers, or body) must be complete
        self._deadline: float | None = None
        self._in_head = True
        self._began = False
        self._head_bytes = 0
        self._chunk_bytes = 0
        self._refusal: tuple[int, str, str] | None = None
        self._refused = False

    # --- connection ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        limits = self.limits
        if len(self.connections) > limits.max_connections:
            self.connections.discard(self)
            self._note_cap_reached()
            self._refuse(
                HTTPStatus.SERVICE_UNAVAILABLE,
                "too_many_connections",
                "The server has too many open connections; try again shortly.",
            )
            return
        self._deadline = self.loop.time() + limits.header_timeout
        cls = type(self)
        if not cls._sweeping:
            cls._sweeping = True
            self.loop.call_later(_tick(limits), _sweep, cls, self.loop, self.connections)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # lingering after a refusal: drop what still arrives
        self._unset_keepalive_if_required()
        self._chunk_bytes = len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError:
            if self._refusal is None:
                raise
            self._refuse(*self._refusal)
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError:
            msg = "Invalid HTTP request received."
            self.logger.warning(msg)
            self.send_400_response(msg)
            return
        if self._in_head and self._began:
            # Counted per chunk read: a header that trickles in is refused once the
            # bytes read so far pass the limit, long before it could fill memory.
            self._head_bytes += len(data)
            if self._head_bytes > self.limits.max_header_bytes:
                self._refuse(*self._too_large())

    # --- parser callbacks ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._began = True
        self._head_bytes = 0
        if self._deadline is None:  # a later request on a kept-alive connection
            self._deadline = self.loop.time() + self.limits.header_timeout

    def on_headers_complete(self) -> None:
        self._in_head = False
        limits = self.limits
        # Checked once the head is parsed (cheaper than per header): the byte count in
        # data_received has already bounded how much could pile up before this point.
        if len(self.headers) > limits.max_headers:
            self._refusal = (
                HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                "too_many_headers",
                f"The request has more than {limits.max_headers} header fields.",
            )
            raise _Refused
        if (
            self._head_bytes + self._chunk_bytes > limits.max_header_bytes
            and self._head_size() > limits.max_header_bytes
        ):
            self._refusal = self._too_large()
            raise _Refused
        self._deadline = self.loop.time() + limits.body_timeout
        super().on_headers_complete()

    def _head_size(self) -> int:
        # The request line's method and version, plus ": " and CRLF around every header.
        return 16 + len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers)

    def _too_large(self) -> tuple[int, str, str]:
        return (
            HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            f"The request line and headers are larger than {self.limits.max_header_bytes} bytes.",
        )

    def on_message_complete(self) -> None:
        self._deadline = None
        self._began = False
        super().on_message_complete()

    def shutdown(self) -> None:
        super().shutdown()  # closes idle connections; others close after their response
        if not self.transport.is_closing():
            # Shortly before uvicorn cancels what still runs (a traceback and a 500 each),
            # answer what is left ourselves: a handler waiting for a trickling body then
            # ends quietly, as when the client goes away.
            timeout = self.limits.shutdown_timeout
            self.loop.call_later(timeout - min(1.0, timeout / 5), self._close_at_shutdown)

    def _close_at_shutdown(self) -> None:
        if not self.transport.is_closing():
            self._refuse(
                HTTPStatus.SERVICE_UNAVAILABLE,
                "shutting_down",
                "The server is shutting down; try again.",
            )
            self.connections.discard(self)  # its linger must not hold up the exit

    # --- refusals and timeouts ----------------------------------------------------------

    def _expire(self) -> None:
        """The current request's headers or body did not arrive in time."""
        self._deadline = None
        if self.transport.is_closing():
            return
        if self._in_head and not self._began:
            self.transport.close()  # connected, sent nothing: nobody to answer
            return
        phase = "headers" if self._in_head else "body"
        limit = self.limits.header_timeout if self._in_head else self.limits.body_timeout
        self._refuse(
            HTTPStatus.REQUEST_TIMEOUT,
            "request_timeout",
            f"The request {phase} did not arrive within {limit:g} seconds.",
        )

    def _refuse(self, status: int, code: str, message: str) -> None:
        """Answer `status` with a JSON error and close, unless a response is under way."""
        self._refused = True
        self._deadline = None
        transport = self.transport
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.keep_alive = False
            if cycle.response_started:
                transport.close()  # a response is half sent: nothing valid can follow
                return
        body = json.dumps({"error": {"code": code, "message": message}}).encode()
        head = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n".encode()]
        for name, value in self.server_state.default_headers:
            head.append(name + b": " + value + b"\r\n")
        head.append(
            b"content-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n" % len(body)
        )
        transport.write(b"".join(head) + body)
        if cycle is not None and not cycle.response_complete:
            # What connection_lost does: the app's receive() says the client left (it ends
            # quietly) and whatever it still sends is dropped.
            cycle.disconnected = True
            cycle.message_event.set()
        self.flow.resume_reading()  # drain while lingering, even if the body had paused it
        if transport.can_write_eof():
            transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, transport.close)

    def _note_cap_reached(self) -> None:
        cls = type(self)
        cls._cap_refused += 1
        now = time.monotonic()
        if now - cls._cap_logged_at >= CAP_LOG_INTERVAL_SECONDS:
            log.warning(
                "http_connection_limit_reached",
                limit=self.limits.max_connections,
                refused=cls._cap_refused,
                hint="new connections get 503 until some close (PASSHOUSE_HTTP_MAX_CONNECTIONS)",
            )
            cls._cap_logged_at = now
            cls._cap_refused = 0


def _tick(limits: EdgeLimits) -> float:
    return min(1.0, max(0.05, min(limits.header_timeout, limits.body_timeout) / 4))


def _sweep(
    cls: type[GuardedHttpToolsProtocol], loop: asyncio.AbstractEventLoop, connections: set[Any]
) -> None:
    now = loop.time()
    for connection in list(connections):
        deadline = getattr(connection, "_deadline", None)
        if deadline is not None and deadline <= now:
            connection._expire()
    if connections:
        loop.call_later(_tick(cls.limits), _sweep, cls, loop, connections)
    else:
        cls._sweeping = False
