"""The Google Wallet REST client: access tokens, insert-or-patch, addMessage, outcomes.

It knows nothing of storage: the sync worker (google_sync.py) gives it a service account
and a resource and gets back what Google answered, classified the way the queue needs
(done, retry later, failed for good, notification quota used up).

HTTP is aiohttp over kept-alive HTTP/1.1 connections, one per sync in flight: httpx cost
5 to 6 times more CPU per request here (its pool checks every connection on each request;
docs/benchmarks.md, Google Wallet), which capped one worker near 300 syncs per CPU-second.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp

from passhouse.google.service_account import GRANT_TYPE, ServiceAccount, token_assertion

# Token lifetimes are an hour; refresh when less than this is left (google-auth's margin).
REFRESH_MARGIN_SECONDS = 225
RETRY_STATUSES = {408, 429, 500, 502, 503, 504}
RETRY_REASONS = {"rateLimitExceeded", "userRateLimitExceeded", "backendError"}

DONE = "done"
RETRY = "retry"
FAILED = "failed"
QUOTA = "quota"  # notification quota used up: resend without notifying


@dataclass(frozen=True, slots=True)
class GoogleAnswer:
    outcome: str
    status: int | None = None
    reason: str | None = None
    message: str | None = None
    body: Any = None
    retry_after: float | None = None


class Pacer:
    """A token bucket shared by every request of a worker (0 per second: no pacing)."""

    def __init__(self, rate_per_second: float) -> None:
        self.rate = rate_per_second
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        if self.rate <= 0:
            return
        async with self._lock:
            now = time.monotonic()
            if self._next > now:
                await asyncio.sleep(self._next - now)
            self._next = max(self._next, now) + 1.0 / self.rate


def ssl_context(ca_file: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca_file is not None:
        context.load_verify_locations(cafile=str(ca_file))
    return context


def classify(status: int, headers: Mapping[str, str], content: bytes) -> GoogleAnswer:
    """Google's answer as an outcome: keyed on the status, then on errors[0].reason."""
    if 200 <= status < 300:
        return GoogleAnswer(DONE, status, body=_json(content))
    reason, message = _error_of(content)
    retry_after = _retry_after(headers.get("retry-after"))
    if status == 403 and reason == "quotaExceeded":
        return GoogleAnswer(QUOTA, status, reason, message)
    if status in RETRY_STATUSES or status >= 500 or reason in RETRY_REASONS:
        return GoogleAnswer(RETRY, status, reason, message, retry_after=retry_after)
    return GoogleAnswer(FAILED, status, reason, message)


def _json(content: bytes) -> Any:
    try:
        return json.loads(content) if content else None
    except ValueError:  # UnicodeDecodeError included
        return None


def _error_of(content: bytes) -> tuple[str | None, str | None]:
    try:
        body = json.loads(content)
    except ValueError:
        return None, content[:300].decode("utf-8", "replace") or None
    error = body.get("error") if isinstance(body, Mapping) else None
    if isinstance(error, str):  # the OAuth token endpoint's shape
        return error, str(body.get("error_description", ""))[:300] or None
    if not isinstance(error, Mapping):
        return None, None
    errors = error.get("errors")
    reason = None
    if isinstance(errors, list) and errors and isinstance(errors[0], Mapping):
        reason = errors[0].get("reason")
    message = error.get("message")
    return (
        str(reason)[:255] if reason else None,
        str(message)[:1000] if message else None,
    )


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


_JSON_HEADERS = {"content-type": "application/json; charset=utf-8"}
_FORM_HEADERS = {"content-type": "application/x-www-form-urlencoded"}


def encode(body: Any) -> bytes:
    """A request body, encoded once (compact; arrays and all, as PATCH needs them whole)."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


class GoogleWalletClient:
    def __init__(
        self,
        api_url: str,
        *,
        ca_file: Path | None = None,
        timeout_seconds: float = 20.0,
        rate_per_second: float = 0.0,
        max_connections: int = 32,
    ) -> None:
        self._api = api_url.rstrip("/") + "/walletobjects/v1"
        self._ssl = ssl_context(ca_file)
        self._timeout = timeout_seconds
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._proxies: dict[str, str | None] = {}
        self._tokens: dict[str, tuple[str, float]] = {}
        self._token_locks: dict[str, asyncio.Lock] = {}
        self.pacer = Pacer(rate_per_second)

    def _client(self) -> aiohttp.ClientSession:
        # Made on first use: a session belongs to the event loop it was made in.
        if self._session is None:
            connector = aiohttp.TCPConnector(
                ssl=self._ssl,
                limit=0,  # the sync bounds requests in flight itself (google_concurrency)
                limit_per_host=self._max_connections,
                keepalive_timeout=30,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                # Not trust_env: it costs two thread hops per request (netrc, proxy
                # lookup); the environment's proxy is read once per host in _proxy().
                trust_env=False,
            )
        return self._session

    def _proxy(self, url: str) -> str | None:
        """HTTPS_PROXY / NO_PROXY from the environment, as httpx honoured them."""
        parts = urlsplit(url)
        key = f"{parts.scheme}://{parts.netloc}"
        if key not in self._proxies:
            host = parts.hostname or ""
            proxy = urllib.request.getproxies().get(parts.scheme)
            self._proxies[key] = None if not proxy or urllib.request.proxy_bypass(host) else proxy
        return self._proxies[key]

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _send(
        self, method: str, url: str, data: bytes, headers: Mapping[str, str]
    ) -> GoogleAnswer:
        try:
            async with self._client().request(
                method,
                url,
                data=data or None,
                headers=headers,
                allow_redirects=False,
                proxy=self._proxy(url),
            ) as response:
                content = await response.read()
                status = response.status
                answer_headers = response.headers
        except (TimeoutError, aiohttp.ClientError, OSError) as error:
            return GoogleAnswer(RETRY, None, "connection", _describe(error))
        return classify(status, answer_headers, content)

    async def fetch_token(self, account: ServiceAccount) -> GoogleAnswer:
        """Exchange a signed assertion for an access token; the body carries it."""
        form = urlencode(
            {"grant_type": GRANT_TYPE, "assertion": token_assertion(account, now=_now())}
        )
        answer = await self._send("POST", account.token_uri, form.encode(), _FORM_HEADERS)
        if answer.outcome == DONE and not (
            isinstance(answer.body, Mapping) and isinstance(answer.body.get("access_token"), str)
        ):
            return GoogleAnswer(FAILED, answer.status, "no_token", "no access_token")
        return answer

    async def _token(self, account: ServiceAccount, *, fresh: bool = False) -> str | GoogleAnswer:
        key = account.client_email
        lock = self._token_locks.setdefault(key, asyncio.Lock())
        async with lock:
            cached = self._tokens.get(key)
            if cached is not None and not fresh and cached[1] > time.monotonic():
                return cached[0]
            answer = await self.fetch_token(account)
            if answer.outcome != DONE:
                return answer
            body = answer.body
            try:
                lifetime = float(body.get("expires_in", 3600))
            except (TypeError, ValueError):
                lifetime = 3600.0
            token = str(body["access_token"])
            expiry = time.monotonic() + max(30.0, lifetime - REFRESH_MARGIN_SECONDS)
            self._tokens[key] = (token, expiry)
            return token

    async def request(
        self, account: ServiceAccount, method: str, path: str, body: Any = None
    ) -> GoogleAnswer:
        """One call, paced; a 401 refreshes the token and tries once more. `body` is JSON
        to encode, or bytes already encoded."""
        data = body if isinstance(body, bytes) else b"" if body is None else encode(body)
        for attempt in range(2):
            token = await self._token(account, fresh=attempt > 0)
            if isinstance(token, GoogleAnswer):
                return token
            await self.pacer.wait()
            headers = {"authorization": f"Bearer {token}"}
            if data:
                headers.update(_JSON_HEADERS)
            answer = await self._send(method, f"{self._api}/{path}", data, headers)
            if answer.status == 401 and attempt == 0:
                continue
            return answer
        raise AssertionError("unreachable")

    async def upsert(
        self,
        account: ServiceAccount,
        resource: str,
        resource_id: str,
        body: Mapping[str, Any],
        *,
        exists: bool,
    ) -> GoogleAnswer:
        """Insert-or-patch: insert (409: it exists, patch it), or patch (404: insert).

        `exists` says which to try first. The body is the whole desired state: arrays are
        always sent whole, as PATCH replaces them. It is encoded once for both calls.
        """
        data = encode(body)
        if exists:
            answer = await self.request(account, "PATCH", f"{resource}/{resource_id}", data)
            if answer.status != 404 or answer.reason == "classNotFound":
                return answer
        answer = await self.request(account, "POST", resource, data)
        if answer.status == 409:
            answer = await self.request(account, "PATCH", f"{resource}/{resource_id}", data)
        return answer

    async def add_message(
        self, account: ServiceAccount, resource: str, resource_id: str, message: Mapping[str, Any]
    ) -> GoogleAnswer:
        return await self.request(
            account, "POST", f"{resource}/{resource_id}/addMessage", {"message": dict(message)}
        )


def _now() -> int:
    return int(time.time())


def _describe(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"[:300] or type(error).__name__


def credentials_problem(answer: GoogleAnswer, account: ServiceAccount) -> str | None:
    """One plain sentence for a failed token fetch or permission check; None if it worked."""
    if answer.outcome == DONE:
        return None
    if answer.reason == "connection":
        return (
            f"Google's token endpoint {account.token_uri} could not be reached "
            f"({answer.message}); check the network and try again."
        )
    if answer.reason == "invalid_grant":
        return (
            "Google refused the service account key (invalid_grant: "
            f"{answer.message or 'invalid JWT'}): the key was deleted or rotated, or this "
            "server's clock is wrong; create a new JSON key and add it again."
        )
    if answer.status == 403 or answer.reason == "permissionDenied":
        return (
            f"The service account {account.client_email} is not allowed to act for this "
            "issuer: invite it in the Google Pay & Wallet Console (Users, role Developer)."
        )
    if answer.reason == "invalidResource" or answer.status == 400:
        return (
            "Google does not know this issuer id: copy it from the Google Pay & Wallet "
            "Console (it is not the service account's client_id)."
        )
    return (
        f"Google answered {answer.status or 'nothing'}"
        f"{' ' + answer.reason if answer.reason else ''} when the credentials were checked"
        f"{': ' + answer.message if answer.message else ''}."
    )
