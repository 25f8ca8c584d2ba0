"""APNs client: h2 over asyncio TLS, a pool of long-lived connections per pass type.

Each pool holds up to `apns_connections_per_pass_type` connections with up to
`apns_streams_per_connection` concurrent streams each (fewer if the server's
SETTINGS_MAX_CONCURRENT_STREAMS says so). A connection that receives GOAWAY or drops
leaves the pool; its unanswered streams are tried once more on a fresh connection before
the push comes back as a connection error for the worker to retry with backoff.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import ssl
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit

import structlog
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RemoteSettingsChanged,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    WindowUpdated,
)
from h2.exceptions import H2Error
from hpack import HeaderTuple, NeverIndexedHeaderTuple
from hpack.hpack import encode_integer
from hpack.table import HeaderTable

from passhouse.push.sender import NOT_SENT, PushResult
from passhouse.settings import Settings
from passhouse.storage import push_jobs
from passhouse.storage.database import Database
from passhouse.storage.sealing import Sealer

log = structlog.get_logger("passhouse.push.apns")

BODY = b"{}"
# APNs refuses provider tokens refreshed more often than every 20 minutes and expires
# them after an hour.
TOKEN_LIFETIME_SECONDS = 50 * 60


@dataclass(frozen=True, slots=True)
class ApnsCredentials:
    pass_type_id: str
    # TLS client certificate and key (PEM); Apple's documented way for pass pushes.
    certificate_pem: bytes
    key_pem: bytes
    # Token auth (.p8, ES256) instead, when the pass type has an APNs key.
    apns_key_pem: bytes | None = None
    apns_key_id: str | None = None
    apns_team_id: str | None = None


CredentialsLoader = Callable[[str], Awaitable[ApnsCredentials | None]]


def database_credentials(database: Database, sealer: Sealer) -> CredentialsLoader:
    """Read a pass type's certificate and keys from the database, decrypting the keys."""

    async def load(pass_type_id: str) -> ApnsCredentials | None:
        async with database.reader() as conn:
            row = await push_jobs.pass_type_credentials(conn, pass_type_id)
        if row is None:
            return None
        token_key = (
            sealer.open(row.apns_key_encrypted)
            if row.apns_key_encrypted and row.apns_key_id
            else None
        )
        return ApnsCredentials(
            pass_type_id=pass_type_id,
            certificate_pem=row.certificate_pem.encode(),
            key_pem=sealer.open(row.private_key_encrypted),
            apns_key_pem=token_key,
            apns_key_id=row.apns_key_id,
            apns_team_id=row.apns_team_id or row.team_id,
        )

    return load


class ApnsConnectionError(Exception):
    """No HTTP answer: the connection failed, dropped, or went away before answering."""


class UnknownPassType(Exception):
    """The pass type of a queued push no longer exists."""


class SendingStopped(Exception):
    """The sender is shutting down; the push was not sent."""


class _ProviderToken:
    """An ES256 JWT for token auth, made once and reused for most of its hour."""

    def __init__(self, key_pem: bytes, key_id: str, team_id: str) -> None:
        key = load_pem_private_key(key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("an APNs auth key (.p8) must be an EC P-256 key")
        self._key = key
        self._key_id = key_id
        self._team_id = team_id
        self._value = ""
        self._issued_at = 0.0

    def header(self) -> str:
        now = time.time()
        if now - self._issued_at >= TOKEN_LIFETIME_SECONDS:
            self._value = self._make(int(now))
            self._issued_at = now
        return f"bearer {self._value}"

    def _make(self, issued_at: int) -> str:
        header = _b64(json.dumps({"alg": "ES256", "kid": self._key_id}).encode())
        claims = _b64(json.dumps({"iss": self._team_id, "iat": issued_at}).encode())
        signing_input = f"{header}.{claims}".encode()
        der = self._key.sign(signing_input, ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        signature = _b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
        return f"{header}.{claims}.{signature}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class _LiteralEncoder:
    """HPACK without the dynamic table: every header is a static-table index or a literal
    "without indexing" (never indexed for the path and the provider token, as APNs asks).

    hpack's own encoder searches its tables and Huffman-codes every header of every push,
    about half of the client's CPU per push; our header blocks repeat, so theirs are cached.
    """

    def __init__(self) -> None:
        self._cache: dict[tuple[bytes, bytes, bool], bytes] = {}
        self._size_update: int | None = None
        self._header_table_size = 4096

    @property
    def header_table_size(self) -> int:
        return self._header_table_size

    @header_table_size.setter
    def header_table_size(self, value: int) -> None:
        # The peer changed SETTINGS_HEADER_TABLE_SIZE: acknowledge it in the next block.
        self._header_table_size = value
        self._size_update = value

    def encode(self, headers: Iterable[tuple[bytes, bytes]], huffman: bool = True) -> bytes:
        parts: list[bytes] = []
        if self._size_update is not None:
            parts.append(_prefixed(self._size_update, 5, 0x20))
            self._size_update = None
        for header in headers:
            name, value = header[0], header[1]
            sensitive = isinstance(header, NeverIndexedHeaderTuple)
            key = (name, value, sensitive)
            block = self._cache.get(key)
            if block is None:
                block = _literal(name, value, sensitive)
                if not sensitive and len(self._cache) < 256:
                    self._cache[key] = block
            parts.append(block)
        return b"".join(parts)


_STATIC_FULL = {entry: index for index, entry in enumerate(HeaderTable.STATIC_TABLE, 1)}
_STATIC_NAME: dict[bytes, int] = {}
for _index, (_name, _) in enumerate(HeaderTable.STATIC_TABLE, 1):
    _STATIC_NAME.setdefault(_name, _index)


def _prefixed(value: int, bits: int, pattern: int) -> bytes:
    encoded = encode_integer(value, bits)
    encoded[0] |= pattern
    return bytes(encoded)


def _literal(name: bytes, value: bytes, sensitive: bool) -> bytes:
    if not sensitive and (name, value) in _STATIC_FULL:
        return _prefixed(_STATIC_FULL[(name, value)], 7, 0x80)
    pattern = 0x10 if sensitive else 0x00
    index = _STATIC_NAME.get(name)
    head = _prefixed(index, 4, pattern) if index else bytes([pattern]) + _string(name)
    return head + _string(value)


def _string(data: bytes) -> bytes:
    return _prefixed(len(data), 7, 0x00) + data


class _H2(H2Connection):
    """H2Connection whose stream count is ours: h2 counts open streams by walking all of
    them on every new stream, which is O(streams in flight) per push."""

    in_flight = 0
    _counted = 0

    @property
    def open_outbound_streams(self) -> int:
        self._counted += 1
        if self._counted % 256 == 0:
            return self._open_streams(1)  # also forgets closed streams, now and then
        return self.in_flight


@dataclass(slots=True)
class _Stream:
    future: asyncio.Future[tuple[int, bytes]]
    status: int = 0
    body: bytearray = field(default_factory=bytearray)


class _Connection(asyncio.Protocol):
    """One HTTP/2 connection; requests are multiplexed as streams."""

    def __init__(self, stream_limit: int, on_change: Callable[[], None]) -> None:
        config = H2Configuration(
            client_side=True,
            header_encoding=None,
            # We build the headers ourselves; checking them on every push costs CPU.
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
            validate_inbound_headers=False,
        )
        self.h2 = _H2(config=config)
        # h2 only calls encode() and sets header_table_size on its encoder.
        self.h2.encoder = _LiteralEncoder()  # type: ignore[assignment]
        self._flush_scheduled = False
        self.streams: dict[int, _Stream] = {}
        self.in_flight = 0  # reserved by the pool, including streams not yet opened
        self.closed = False
        self.going_away = False
        self._stream_limit = stream_limit
        self._on_change = on_change
        self._transport: asyncio.Transport | None = None
        self._last_received = time.monotonic()
        self._settings_received = asyncio.Event()
        self._window_open = asyncio.Event()
        self._window_open.set()

    @property
    def capacity(self) -> int:
        remote = self.h2.remote_settings.max_concurrent_streams
        return min(self._stream_limit, remote)

    @property
    def usable(self) -> bool:
        return not self.closed and not self.going_away

    async def wait_ready(self, within: float) -> None:
        # The server's first SETTINGS frame carries its stream limit; wait for it.
        async with asyncio.timeout(within):
            await self._settings_received.wait()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, so no isinstance check.
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        self.h2.initiate_connection()
        self._flush()

    def data_received(self, data: bytes) -> None:
        self._last_received = time.monotonic()
        try:
            events = self.h2.receive_data(data)
        except H2Error as error:
            self._fail_all(f"protocol error: {error}")
            self.close()
            return
        for event in events:
            if isinstance(event, ResponseReceived):
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    for name, value in event.headers:
                        if name == b":status":
                            stream.status = int(value)
            elif isinstance(event, DataReceived):
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    stream.body += event.data
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, StreamEnded):
                stream = self.streams.pop(event.stream_id, None)
                if stream is not None and not stream.future.done():
                    stream.future.set_result((stream.status, bytes(stream.body)))
            elif isinstance(event, StreamReset):
                stream = self.streams.pop(event.stream_id, None)
                if stream is not None and not stream.future.done():
                    stream.future.set_exception(
                        ApnsConnectionError(f"stream reset ({event.error_code})")
                    )
            elif isinstance(event, ConnectionTerminated):
                self._go_away(event.last_stream_id, event.additional_data)
            elif isinstance(event, RemoteSettingsChanged):
                self._settings_received.set()
                self._on_change()
            elif isinstance(event, WindowUpdated):
                self._window_open.set()
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._settings_received.set()
        self._window_open.set()
        self._fail_all("connection lost")
        self._on_change()

    # requests

    async def request(self, headers: list[HeaderTuple], within: float) -> tuple[int, bytes]:
        if not self.usable:
            raise ApnsConnectionError("connection is closing")
        stream_id = self.h2.get_next_available_stream_id()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[int, bytes]] = loop.create_future()
        self.h2.in_flight = len(self.streams)  # open before this one
        self.streams[stream_id] = _Stream(future)
        sent_at = time.monotonic()
        try:
            # The timeout covers a wait for flow-control window too, not only the answer.
            async with asyncio.timeout(within):
                self.h2.send_headers(stream_id, headers)
                # `{}` fits any window a server can advertise but a zero one; wait if so.
                while self.h2.local_flow_control_window(stream_id) < len(BODY):
                    self._window_open.clear()
                    self._flush()
                    await self._window_open.wait()
                    if not self.usable:
                        raise ApnsConnectionError("connection closed while waiting for window")
                self.h2.send_data(stream_id, BODY, end_stream=True)
                # One TLS record and one write for all the pushes queued in this loop tick.
                if not self._flush_scheduled:
                    self._flush_scheduled = True
                    loop.call_soon(self._flush)
                return await future
        except TimeoutError:
            if self._last_received < sent_at:
                # Not one frame in all that time: the peer is gone without a word (a
                # dropped NAT entry, a dead host). Every push on it would time out too.
                self._abandon("no frame from APNs within the request timeout")
            else:
                self._reset(stream_id)
            raise
        except H2Error as error:
            self._reset(stream_id)
            raise ApnsConnectionError(f"protocol error: {error}") from None
        finally:
            self.streams.pop(stream_id, None)
            self.h2.in_flight = len(self.streams)

    def close(self) -> None:
        self.going_away = True
        if self._transport is not None and not self.closed:
            try:
                self.h2.close_connection()
                self._flush()
            except H2Error:
                pass
            self._transport.close()

    def _abandon(self, why: str) -> None:
        log.warning("apns_connection_abandoned", reason=why)
        self.going_away = True
        self._fail_all(why)
        if self._transport is not None:
            self._transport.abort()  # a TLS goodbye would wait for the silent peer
        self._on_change()

    def _reset(self, stream_id: int) -> None:
        if self.closed:
            return
        try:
            self.h2.reset_stream(stream_id)
            self._flush()
        except H2Error:
            pass

    def _go_away(self, last_stream_id: int | None, data: bytes | None) -> None:
        # h2 accepts no frame after a GOAWAY, so even streams up to `last_stream_id` can
        # get no answer here: fail them all as retryable. APNs may have taken some of
        # them, so a device can be woken twice; an empty push is harmless to repeat.
        self.going_away = True
        reason = _reason(data or b"")
        log.warning("apns_goaway", last_stream_id=last_stream_id, reason=reason)
        self._fail_all(f"GOAWAY {reason or ''}".strip())
        if self._transport is not None:
            self._transport.close()
        self._on_change()

    def _fail_all(self, why: str) -> None:
        for stream in self.streams.values():
            if not stream.future.done():
                stream.future.set_exception(ApnsConnectionError(why))
        self.streams.clear()

    def _flush(self) -> None:
        self._flush_scheduled = False
        data = self.h2.data_to_send()
        if data and self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)


def _reason(body: bytes) -> str | None:
    if not body:
        return None
    try:
        value = json.loads(body)
    except ValueError:
        return None
    reason = value.get("reason") if isinstance(value, dict) else None
    return str(reason) if reason is not None else None


def _timestamp(body: bytes) -> int | None:
    try:
        value = json.loads(body)
    except ValueError:
        return None
    stamp = value.get("timestamp") if isinstance(value, dict) else None
    return int(stamp) if isinstance(stamp, int | float) else None


class _Pool:
    """Connections for one pass type's credentials.

    Every wait here is bounded: an open by `apns_connect_timeout_seconds`, a wait for a
    free stream by that plus `apns_request_timeout_seconds` (the longest a healthy pool
    keeps a caller waiting). A failed open wakes every waiter, and when no connection is
    left they fail with the opener's error: the pushes go back to the queue with backoff
    instead of waiting for an open that nobody is making any more.
    """

    def __init__(
        self,
        endpoint: tuple[str, int],
        context: ssl.SSLContext,
        settings: Settings,
        token: _ProviderToken | None,
    ) -> None:
        self._host, self._port = endpoint
        self._context = context
        self._size = settings.apns_connections_per_pass_type
        self._streams = settings.apns_streams_per_connection
        self._connect_timeout = settings.apns_connect_timeout_seconds
        self._wait_timeout = (
            settings.apns_connect_timeout_seconds + settings.apns_request_timeout_seconds
        )
        self.token = token
        self.connections: list[_Connection] = []
        self._opening = 0
        self._changed = asyncio.Condition()
        self._waiting = 0
        self._failed_opens = 0
        self._open_error = ""
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def _notify(self) -> None:
        # Called from protocol callbacks (settings, GOAWAY, loss), which cannot await.
        self.connections = [c for c in self.connections if c.usable]
        if self._waiting:
            task = asyncio.get_running_loop().create_task(self._wake())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _wake(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def acquire(self) -> _Connection:
        """A connection with a stream reserved for one request; raises
        ApnsConnectionError when none can be had in time, SendingStopped when closing."""
        try:
            async with asyncio.timeout(self._wait_timeout):
                return await self._acquire()
        except TimeoutError:
            raise ApnsConnectionError(
                f"no APNs connection free within {self._wait_timeout:g} s"
            ) from None

    async def _acquire(self) -> _Connection:
        async with self._changed:
            while True:
                if self._closed:
                    raise SendingStopped
                usable = [c for c in self.connections if c.usable]
                self.connections = usable
                best = min(usable, key=lambda c: c.in_flight, default=None)
                grow = len(usable) + self._opening < self._size
                if (
                    best is not None
                    and best.in_flight < best.capacity
                    and (not grow or best.in_flight == 0)
                ):
                    best.in_flight += 1
                    return best
                if grow:
                    return await self._grow()
                failed_opens = self._failed_opens
                self._waiting += 1
                try:
                    await self._changed.wait()
                finally:
                    self._waiting -= 1
                if self._failed_opens != failed_opens and not any(
                    c.usable for c in self.connections
                ):
                    raise ApnsConnectionError(self._open_error)

    async def _grow(self) -> _Connection:
        # Called holding the condition's lock; opens without it, so others can go on.
        self._opening += 1
        self._changed.release()
        connection: _Connection | None = None
        error = "connection attempt abandoned"
        try:
            connection = await self._open()
        except ApnsConnectionError as failure:
            error = str(failure)
            raise
        finally:
            # Also on cancellation: a waiter must never wait for an open that has ended.
            cancelled_again = await self._relock()
            self._opening -= 1
            if connection is None:
                self._failed_opens += 1
                self._open_error = error
            else:
                self.connections.append(connection)
                if not cancelled_again:  # else nobody is left to release the stream
                    connection.in_flight += 1
            self._changed.notify_all()
            if cancelled_again:
                raise asyncio.CancelledError
        return connection

    async def _relock(self) -> bool:
        # As asyncio.Condition.wait does: the caller's `async with` will release the lock,
        # so take it back even if cancelled meanwhile; says whether that happened.
        cancelled = False
        while True:
            try:
                await self._changed.acquire()
                return cancelled
            except asyncio.CancelledError:
                cancelled = True

    async def release(self, connection: _Connection) -> None:
        connection.in_flight -= 1
        if connection.going_away and connection.in_flight == 0:
            connection.close()
        if self._waiting:
            async with self._changed:
                self._changed.notify()

    async def _open(self) -> _Connection:
        loop = asyncio.get_running_loop()
        connection = _Connection(self._streams, self._notify)
        try:
            async with asyncio.timeout(self._connect_timeout):
                transport, _ = await loop.create_connection(
                    lambda: connection,
                    self._host,
                    self._port,
                    ssl=self._context,
                    server_hostname=self._host,
                )
                try:
                    ssl_object = transport.get_extra_info("ssl_object")
                    if ssl_object is None or ssl_object.selected_alpn_protocol() != "h2":
                        raise ApnsConnectionError("server did not agree to HTTP/2 (ALPN h2)")
                    await connection.wait_ready(self._connect_timeout)
                except BaseException:
                    transport.close()
                    raise
        except (OSError, TimeoutError) as error:
            raise ApnsConnectionError(f"cannot connect: {error!r}") from None
        if connection.closed:
            raise ApnsConnectionError("connection closed during setup")
        return connection

    async def stop(self) -> None:
        self._closed = True
        async with self._changed:
            self._changed.notify_all()

    async def aclose(self) -> None:
        self._closed = True
        for connection in self.connections:
            connection.close()
        self.connections = []
        async with self._changed:
            self._changed.notify_all()


class ApnsSender:
    """Sends pass-update pushes (`{}` to topic = pass type id) over pooled HTTP/2."""

    def __init__(self, settings: Settings, load_credentials: CredentialsLoader) -> None:
        parts = urlsplit(settings.apns_url)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError("PASSHOUSE_APNS_URL must be an https:// URL")
        self._endpoint = (parts.hostname, parts.port or 443)
        self._authority = parts.netloc
        self._settings = settings
        self._load_credentials = load_credentials
        self._pools: dict[str, _Pool] = {}
        self._pool_locks: dict[str, asyncio.Lock] = {}
        self._stopping = False
        self._tasks: set[asyncio.Task[None]] = set()

    def stop_sending(self) -> None:
        self._stopping = True
        for pool in self._pools.values():
            task = asyncio.get_running_loop().create_task(pool.stop())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def send(
        self, push_token: str, pass_type_id: str, push_service_url: str = ""
    ) -> PushResult:
        if self._stopping:
            return PushResult(None, NOT_SENT)
        started = time.perf_counter()
        try:
            pool = await self._pool(pass_type_id)
        except UnknownPassType:
            # Deleted since the push was queued: nobody is left to authenticate as.
            return PushResult(400, "UnknownPassType", None, 0.0)
        except (ValueError, OSError, ssl.SSLError) as error:
            # Unusable credentials are a certificate problem, like APNs' own 403.
            log.error("apns_credentials_unusable", pass_type_id=pass_type_id, error=str(error))
            return PushResult(403, f"CredentialsUnusable: {error}", None, 0.0)
        headers = self._headers(push_token, pass_type_id, pool.token)
        reason = "ConnectionError"
        # A connection can die or go away under a push that APNs never saw; one more try
        # on a fresh connection hides that from the queue.
        for _ in range(2):
            try:
                connection = await pool.acquire()
            except SendingStopped:
                return PushResult(None, NOT_SENT)
            except ApnsConnectionError as error:
                reason = f"ConnectionError: {error}"
                break
            try:
                status, body = await connection.request(
                    headers, self._settings.apns_request_timeout_seconds
                )
            except ApnsConnectionError as error:
                reason = f"ConnectionError: {error}"
                continue
            except TimeoutError:
                reason = "Timeout"
                break
            finally:
                await pool.release(connection)
            latency = time.perf_counter() - started
            if status == 200:
                return PushResult(200, None, None, latency)
            return PushResult(status, _reason(body), _timestamp(body), latency)
        return PushResult(None, reason, None, time.perf_counter() - started)

    def _headers(
        self, push_token: str, pass_type_id: str, token: _ProviderToken | None
    ) -> list[HeaderTuple]:
        expiration = self._settings.apns_expiration_seconds
        headers = [
            HeaderTuple(b":method", b"POST"),
            HeaderTuple(b":scheme", b"https"),
            HeaderTuple(b":authority", self._authority.encode()),
            # APNs asks for the path and the token as literals never indexed.
            NeverIndexedHeaderTuple(b":path", f"/3/device/{push_token}".encode()),
            HeaderTuple(b"apns-topic", pass_type_id.encode()),
            HeaderTuple(b"apns-push-type", b"background"),
            # APNs rejects priority 10 with push type background.
            HeaderTuple(b"apns-priority", b"5"),
            HeaderTuple(
                b"apns-expiration",
                str(int(time.time()) + expiration if expiration else 0).encode(),
            ),
            HeaderTuple(b"content-type", b"application/json"),
            HeaderTuple(b"content-length", b"2"),
        ]
        if token is not None:
            headers.append(NeverIndexedHeaderTuple(b"authorization", token.header().encode()))
        return headers

    async def _pool(self, pass_type_id: str) -> _Pool:
        pool = self._pools.get(pass_type_id)
        if pool is not None:
            return pool
        lock = self._pool_locks.setdefault(pass_type_id, asyncio.Lock())
        async with lock:
            pool = self._pools.get(pass_type_id)
            if pool is None:
                credentials = await self._load_credentials(pass_type_id)
                if credentials is None:
                    raise UnknownPassType(pass_type_id)
                pool = self._make_pool(credentials)
                self._pools[pass_type_id] = pool
        return pool

    def _make_pool(self, credentials: ApnsCredentials) -> _Pool:
        token: _ProviderToken | None = None
        if credentials.apns_key_pem and credentials.apns_key_id and credentials.apns_team_id:
            token = _ProviderToken(
                credentials.apns_key_pem, credentials.apns_key_id, credentials.apns_team_id
            )
            context = client_context(self._settings.apns_ca_file, None, None)
        else:
            context = client_context(
                self._settings.apns_ca_file, credentials.certificate_pem, credentials.key_pem
            )
        return _Pool(self._endpoint, context, self._settings, token)

    async def forget_credentials(self, pass_type_id: str) -> None:
        pool = self._pools.pop(pass_type_id, None)
        if pool is not None:
            await pool.aclose()

    async def aclose(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.aclose()


def client_context(
    ca_file: Path | None, certificate_pem: bytes | None, key_pem: bytes | None
) -> ssl.SSLContext:
    """TLS for APNs: system roots plus `ca_file`, ALPN h2, the pass certificate if given."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca_file is not None:
        context.load_verify_locations(cafile=str(ca_file))
    context.set_alpn_protocols(["h2"])
    if certificate_pem and key_pem:
        # The ssl module loads client certificates only from files: write them to a
        # private directory (0700, file 0600) and delete them right after loading.
        with tempfile.TemporaryDirectory(prefix="passhouse-apns-") as directory:
            path = Path(directory) / "client.pem"
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(certificate_pem.rstrip() + b"\n" + key_pem)
            context.load_cert_chain(path)
    return context


def make_sender(settings: Settings, database: Database, sealer: Sealer) -> ApnsSender:
    return ApnsSender(settings, database_credentials(database, sealer))
