"""Delivering one event: a signed POST over a shared httpx client.

The client connects only to addresses the settings allow: the name is resolved at every
new connection and each address checked before connecting (a name that resolved to a
public address when the webhook was saved may point inside the network later).
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
import typing
from dataclasses import dataclass
from typing import Any

import certifi
import httpcore
import httpx
from httpcore._backends.auto import AutoBackend

from passhouse import __version__
from passhouse.webhooks.addresses import AddressRefused, refuse_private, resolve
from passhouse.webhooks.signing import signature_header

# What is read of a receiver's answer: its status is all that counts.
_MAX_ANSWER_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Attempt:
    status: int | None
    error: str | None
    seconds: float

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class _CheckedBackend(httpcore.AsyncNetworkBackend):
    """Connects to a host only at an address allowed (public, unless allow_private)."""

    def __init__(self, *, allow_private: bool) -> None:
        self._inner = AutoBackend()
        self._allow_private = allow_private

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: typing.Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await resolve(host, port)
            if not self._allow_private:
                refuse_private(host, addresses)
        except AddressRefused as error:
            raise httpcore.ConnectError(str(error)) from None
        last: Exception | None = None
        for address in addresses:  # connect to the very address that was checked
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                last = error
        assert last is not None
        raise last

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("webhooks do not use Unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _CheckedTransport(httpx.AsyncHTTPTransport):
    def __init__(self, *, allow_private: bool, max_connections: int) -> None:
        super().__init__(trust_env=False)
        # httpx 0.28 takes no network backend, so its connection pool is rebuilt with one
        # (tests/webhooks check that a name resolving to loopback is refused at send time).
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl.create_default_context(cafile=certifi.where()),
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=30.0,
            network_backend=_CheckedBackend(allow_private=allow_private),
        )


def event_body(public_id: str, event_type: str, created_at_ms: int, data: Any) -> bytes:
    created = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created_at_ms // 1000))
    body = {
        "id": public_id,
        "type": event_type,
        "created_at": f"{created}.{created_at_ms % 1000:03d}Z",
        "data": data,
    }
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


class WebhookSender:
    """POSTs signed events; one event per request, a 2xx within the timeout is success."""

    def __init__(self, *, allow_private: bool, timeout: float, max_connections: int) -> None:
        self._timeout = timeout
        self._client = httpx.AsyncClient(
            transport=_CheckedTransport(
                allow_private=allow_private, max_connections=max_connections
            ),
            timeout=timeout,
            follow_redirects=False,  # a redirect is an answer that is not a 2xx
            headers={"User-Agent": f"passhouse-webhooks/{__version__}"},
        )

    async def send(
        self, url: str, secret: str, *, public_id: str, event_type: str, body: bytes
    ) -> Attempt:
        started = time.monotonic()
        headers = {
            "Content-Type": "application/json",
            "Passhouse-Event": event_type,
            "Passhouse-Delivery": public_id,
            "Passhouse-Signature": signature_header(secret, int(time.time()), body),
        }
        try:
            async with asyncio.timeout(self._timeout):
                async with self._client.stream("POST", url, content=body, headers=headers) as r:
                    read = 0
                    async for chunk in r.aiter_raw():
                        read += len(chunk)
                        if read > _MAX_ANSWER_BYTES:
                            break
                    status = r.status_code
        except TimeoutError:
            return Attempt(None, f"no answer within {self._timeout:g} s", _since(started))
        except httpx.TimeoutException:
            return Attempt(None, f"no answer within {self._timeout:g} s", _since(started))
        except httpx.HTTPError as error:
            return Attempt(None, f"{type(error).__name__}: {error}"[:500], _since(started))
        if 200 <= status < 300:
            return Attempt(status, None, _since(started))
        return Attempt(status, f"answered {status}", _since(started))

    async def aclose(self) -> None:
        await self._client.aclose()


def _since(started: float) -> float:
    return time.monotonic() - started
