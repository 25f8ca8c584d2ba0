"""Delivering one event: a signed POST over one shared aiohttp session.

The session connects only to addresses the settings allow: its resolver resolves each
name, refuses it if any address is not public, and hands the connector the checked
addresses, so what is connected to is what was checked (a name that pointed at a public
address when the webhook was saved may point inside the network later). IP literals do
not reach a resolver; they are checked before the request.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

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


class _CheckedResolver(AbstractResolver):
    """Resolves a name and refuses it when it leads to a non-public address."""

    def __init__(self, *, allow_private: bool) -> None:
        self._allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        try:
            addresses = await resolve(host, port)
            if not self._allow_private:
                refuse_private(host, addresses)
        except AddressRefused as error:
            raise OSError(str(error)) from None
        results: list[ResolveResult] = []
        for address in addresses:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
            results.append(
                {
                    "hostname": host,
                    "host": address,
                    "port": port,
                    "family": socket.AF_INET6 if ip.version == 6 else socket.AF_INET,
                    "proto": 0,
                    "flags": socket.AI_NUMERICHOST,
                }
            )
        return results

    async def close(self) -> None:
        pass


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
        self._allow_private = allow_private
        self._timeout = timeout
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        # URL -> its host when that is an IP literal (None for a name): parsed once, not
        # per delivery.
        self._literals: dict[str, str | None] = {}

    def _client(self) -> aiohttp.ClientSession:
        # Made on first use: a session belongs to the event loop it was made in.
        if self._session is None:
            connector = aiohttp.TCPConnector(
                resolver=_CheckedResolver(allow_private=self._allow_private),
                limit=0,  # the worker bounds requests per endpoint itself
                limit_per_host=self._max_connections,
                keepalive_timeout=30,
                # A name's checked addresses are kept 10 s per host (aiohttp's cache, in
                # front of the resolver): a delivery does not wait for a lookup, and a
                # name that moves inside the network is refused within 10 s (ADR 0018).
                use_dns_cache=True,
                ttl_dns_cache=10,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                headers={"User-Agent": f"passhouse-webhooks/{__version__}"},
                trust_env=False,  # no proxy from the environment: it would skip the check
            )
        return self._session

    def _check_literal(self, url: str) -> None:
        if url in self._literals:
            host = self._literals[url]
        else:
            host = urlsplit(url).hostname or ""
            try:
                ipaddress.ip_address(host)
            except ValueError:
                host = None  # a name: the resolver checks it
            if len(self._literals) > 10_000:
                self._literals.clear()
            self._literals[url] = host
        if host is not None and not self._allow_private:
            refuse_private(host, [host])

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
            self._check_literal(url)
            async with self._client().post(
                url, data=body, headers=headers, allow_redirects=False
            ) as response:
                # Read (a bounded part of) the answer so the connection can be reused.
                await response.content.read(_MAX_ANSWER_BYTES)
                status = response.status
        except AddressRefused as error:
            return Attempt(None, str(error), _since(started))
        except TimeoutError:
            return Attempt(None, f"no answer within {self._timeout:g} s", _since(started))
        except aiohttp.ClientConnectorError as error:
            reason = error.os_error.strerror or str(error.os_error)
            return Attempt(None, f"cannot connect: {reason}"[:500], _since(started))
        except (aiohttp.ClientError, OSError) as error:
            return Attempt(None, f"{type(error).__name__}: {error}"[:500], _since(started))
        if 200 <= status < 300:
            return Attempt(status, None, _since(started))
        return Attempt(status, f"answered {status}", _since(started))

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _since(started: float) -> float:
    return time.monotonic() - started
