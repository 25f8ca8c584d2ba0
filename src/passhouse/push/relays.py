"""The push relays of the Android pkpass apps, beside the APNs client, behind PushSender.

Each relay takes a list of tokens per call, so a sender gathers the pushes the worker
hands it at about the same time (one batch in flight, or a paced trickle within
`LINGER_SECONDS`) into one request per (pass type, push service), at most
`relay_batch_size` tokens each. A relay's answer is about the whole request: a refusal
of a list that names no token is resent one token at a time, so one bad token cannot
fail the others. Where each relay's protocol is unconfirmed, ADR 0017 says what we chose.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import ip_address
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import structlog

from passhouse.push import transports
from passhouse.push.sender import NOT_SENT, PushOutcome, PushResult, PushSender
from passhouse.settings import Settings

log = structlog.get_logger("passhouse.push.relays")

# How long a sender waits for more pushes to join a call: a paced fan-out at 5,000/s
# fills a call of 50 in this time, and one push on an idle queue is 10 ms later.
LINGER_SECONDS = 0.01
# Relay error bodies are kept in push attempts up to this many characters.
REASON_CHARS = 200
# Calls to one relay in flight at once from one worker (each carries a list).
CONCURRENT_CALLS = 8


def relay_outcome(status: int | None, *, keyed: bool) -> PushOutcome:
    """What a relay's HTTP answer to one token means.

    2xx: delivered. 410 (Gone) is the only answer taken as "this token is gone": no relay
    documents another, and forgetting a registration on a guess would stop updates
    for a device that still holds the pass. 401/403 from a relay that takes an API key:
    the key is refused, so its pushes are parked like those of a relay with no key.
    """
    if status is not None and 200 <= status < 300:
        return PushOutcome.DELIVERED
    if status == 410:
        return PushOutcome.DEVICE_GONE
    if status is None or status in (408, 429) or status >= 500:
        return PushOutcome.RETRY
    if keyed and status in (401, 403):
        return PushOutcome.SKIPPED
    return PushOutcome.REJECTED


@dataclass(frozen=True, slots=True)
class RelayCall:
    url: str
    json: dict[str, Any]
    headers: dict[str, str]


@dataclass(slots=True)
class _Pending:
    tokens: list[str]
    futures: list[asyncio.Future[PushResult]]


class RelaySender:
    """One relay: batches pushes per (pass type, push service URL) into list calls."""

    transport = ""
    # The setting that holds the key this relay needs, or "" when it needs none.
    key_setting = ""
    # Keys refused with 401/403 mean "configure me", not "this token is bad".
    keyed = True

    def __init__(self, settings: Settings, client: httpx.AsyncClient) -> None:
        self._settings = settings
        self._client = client
        self._batch_size = settings.relay_batch_size
        self._pending: dict[tuple[str, str], _Pending] = {}
        self._calls = asyncio.Semaphore(CONCURRENT_CALLS)
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False

    # --- what each relay defines ---------------------------------------------------

    def _api_key(self) -> str | None:
        return None

    def _call(self, pass_type_id: str, push_service_url: str, tokens: list[str]) -> RelayCall:
        raise NotImplementedError

    # --- PushSender ------------------------------------------------------------------

    def missing_key(self) -> str | None:
        """Why this relay cannot send at all (its needed key is not set), or None."""
        if self.key_setting and not self._api_key():
            return f"RelayNotConfigured: set {self.key_setting}"
        return None

    async def send(
        self, push_token: str, pass_type_id: str, push_service_url: str = ""
    ) -> PushResult:
        if self._stopping:
            return PushResult(None, NOT_SENT)
        missing = self.missing_key()
        if missing is not None:
            return PushResult(None, missing, verdict=PushOutcome.SKIPPED)
        key = (pass_type_id, push_service_url)
        future: asyncio.Future[PushResult] = asyncio.get_running_loop().create_future()
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = _Pending([], [])
            task = asyncio.create_task(self._flush(key))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        pending.tokens.append(push_token)
        pending.futures.append(future)
        return await future

    def stop_sending(self) -> None:
        self._stopping = True

    async def forget_credentials(self, pass_type_id: str) -> None:
        """Relays authenticate per issuer, not per pass type: nothing to drop."""

    async def aclose(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._client.aclose()

    # --- batching ----------------------------------------------------------------------

    async def _flush(self, key: tuple[str, str]) -> None:
        await asyncio.sleep(LINGER_SECONDS)
        pending = self._pending.pop(key)
        pass_type_id, push_service_url = key
        calls = []
        for start in range(0, len(pending.tokens), self._batch_size):
            tokens = pending.tokens[start : start + self._batch_size]
            futures = pending.futures[start : start + self._batch_size]
            calls.append(self._deliver(pass_type_id, push_service_url, tokens, futures))
        await asyncio.gather(*calls)

    async def _deliver(
        self,
        pass_type_id: str,
        push_service_url: str,
        tokens: list[str],
        futures: list[asyncio.Future[PushResult]],
    ) -> None:
        try:
            results = await self._send_list(pass_type_id, push_service_url, tokens)
        except Exception as error:  # a bug here must not leave the worker waiting
            log.exception("relay_sender_error", transport=self.transport)
            results = [PushResult(None, f"SenderError: {type(error).__name__}")] * len(tokens)
        for future, result in zip(futures, results, strict=True):
            if not future.done():
                future.set_result(result)

    async def _send_list(
        self, pass_type_id: str, push_service_url: str, tokens: list[str]
    ) -> list[PushResult]:
        result = await self._post(self._call(pass_type_id, push_service_url, tokens))
        outcome = result.outcome
        if len(tokens) > 1 and outcome in (PushOutcome.DEVICE_GONE, PushOutcome.REJECTED):
            # The refusal names no token: find out which one, one call each.
            singles = await asyncio.gather(
                *(self._post(self._call(pass_type_id, push_service_url, [t])) for t in tokens)
            )
            return list(singles)
        return [result] * len(tokens)

    async def _post(self, call: RelayCall, extensions: dict[str, Any] | None = None) -> PushResult:
        started = time.perf_counter()
        async with self._calls:
            try:
                response = await self._client.post(
                    call.url, json=call.json, headers=call.headers, extensions=extensions
                )
            except httpx.TimeoutException:
                return PushResult(None, "Timeout", latency=time.perf_counter() - started)
            except (httpx.HTTPError, OSError, ssl.SSLError) as error:
                reason = f"ConnectionError: {type(error).__name__}"
                return PushResult(None, reason, latency=time.perf_counter() - started)
        return self._result(response, time.perf_counter() - started)

    def _result(self, response: httpx.Response, latency: float) -> PushResult:
        status = response.status_code
        reason = None
        if not 200 <= status < 300:
            text = " ".join(response.text.split())[:REASON_CHARS]
            reason = f"{status} {text}" if text else str(status)
            if self.keyed and status in (401, 403):
                setting = self.key_setting or f"PASSHOUSE_RELAY_{self.transport.upper()}_API_KEY"
                reason = f"KeyRejected: {reason} (check {setting})"
        verdict = relay_outcome(status, keyed=self.keyed)
        return PushResult(status, reason, latency=latency, verdict=verdict)


class WalletPassesSender(RelaySender):
    """Wallet Passes: POST {url}/api/v1/push {"passTypeIdentifier", "pushTokens"}."""

    transport = transports.WALLETPASSES

    def _api_key(self) -> str | None:
        key = self._settings.relay_walletpasses_api_key
        return key.get_secret_value() if key else None

    def _call(self, pass_type_id: str, push_service_url: str, tokens: list[str]) -> RelayCall:
        headers = {"authorization": key} if (key := self._api_key()) else {}
        return RelayCall(
            f"{self._settings.relay_walletpasses_url}/api/v1/push",
            {"passTypeIdentifier": pass_type_id, "pushTokens": tokens},
            headers,
        )


class Pass2USender(RelaySender):
    """Pass2U: POST {url}/v2/registrations/{passTypeIdentifier}/push {"registrationIds"}."""

    transport = transports.PASS2U
    key_setting = "PASSHOUSE_RELAY_PASS2U_API_KEY"

    def _api_key(self) -> str | None:
        key = self._settings.relay_pass2u_api_key
        return key.get_secret_value() if key else None

    def _call(self, pass_type_id: str, push_service_url: str, tokens: list[str]) -> RelayCall:
        path = f"/v2/registrations/{quote(pass_type_id, safe='')}/push"
        return RelayCall(
            f"{self._settings.relay_pass2u_url}{path}",
            {"registrationIds": tokens},
            {"x-api-key": self._api_key() or "", "accept": "application/json"},
        )


class PassworksSender(RelaySender):
    """Passworks: POST {url}/v1/pushUpdate {"passTypeIdentifier", "pushTokens"}."""

    transport = transports.PASSWORKS
    key_setting = "PASSHOUSE_RELAY_PASSWORKS_API_KEY"

    def _api_key(self) -> str | None:
        key = self._settings.relay_passworks_api_key
        return key.get_secret_value() if key else None

    def _call(self, pass_type_id: str, push_service_url: str, tokens: list[str]) -> RelayCall:
        return RelayCall(
            f"{self._settings.relay_passworks_url}/v1/pushUpdate",
            {"passTypeIdentifier": pass_type_id, "pushTokens": tokens},
            {"authorization": self._api_key() or ""},
        )


class PassWalletSender(RelaySender):
    """PassWallet: POST {pushServiceUrl}/v1/pushUpdate {"passTypeID", "pushToken"}, or
    .../v1/pushUpdates {"passTypeID", "pushTokens"} for several.

    The URL came from a device, so it is checked again here, against the allow-list as
    it is now and with the addresses its host resolves to; the request then goes to the
    address that was checked, so a DNS answer cannot change between check and connect.
    """

    transport = transports.PASSWALLET
    keyed = False

    def _call(self, pass_type_id: str, push_service_url: str, tokens: list[str]) -> RelayCall:
        base = push_service_url.rstrip("/")
        if len(tokens) == 1:
            body: dict[str, Any] = {"passTypeID": pass_type_id, "pushToken": tokens[0]}
            return RelayCall(f"{base}/v1/pushUpdate", body, {})
        body = {"passTypeID": pass_type_id, "pushTokens": tokens}
        return RelayCall(f"{base}/v1/pushUpdates", body, {})

    async def _post(self, call: RelayCall, extensions: dict[str, Any] | None = None) -> PushResult:
        allowed = self._settings.passwallet_push_hosts
        refusal = transports.push_service_refusal(call.url, allowed)
        if refusal is not None:
            return PushResult(None, f"PushServiceRefused: {refusal}", verdict=PushOutcome.REJECTED)
        parts = urlsplit(call.url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            address = await self._checked_address(host, port, allowed)
        except OSError as error:  # no DNS answer: the service may be back later
            return PushResult(None, f"ConnectionError: {type(error).__name__}")
        if isinstance(address, PushResult):
            return address
        literal = f"[{address}]" if ":" in address else address
        pinned = parts._replace(netloc=f"{literal}:{port}").geturl()
        headers = {**call.headers, "host": parts.netloc.rpartition("@")[2]}
        # TLS checks the certificate against the host name, not the address.
        tls = {"sni_hostname": host} if parts.scheme == "https" else {}
        return await super()._post(RelayCall(pinned, call.json, headers), tls)

    async def _checked_address(
        self, host: str, port: int, allowed: Sequence[str]
    ) -> str | PushResult:
        """The address to connect to, or the refusal when any address of the host is not
        allowed (a name that resolves partly into a private network is refused whole)."""
        infos = await asyncio.get_running_loop().getaddrinfo(
            host.strip("[]"), port, type=socket.SOCK_STREAM
        )
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        for address in addresses:
            refusal = transports.address_refusal(ip_address(address.partition("%")[0]), allowed)
            if refusal is not None:
                reason = f"PushServiceRefused: {host} resolves to {refusal}"
                return PushResult(None, reason, verdict=PushOutcome.REJECTED)
        if not addresses:
            raise OSError("no address")
        return addresses[0]


RELAYS: Mapping[str, type[RelaySender]] = {
    transports.WALLETPASSES: WalletPassesSender,
    transports.PASSWALLET: PassWalletSender,
    transports.PASS2U: Pass2USender,
    transports.PASSWORKS: PassworksSender,
}


def relay_client(settings: Settings) -> httpx.AsyncClient:
    """One HTTP/1.1 client per relay: system roots plus `relay_ca_file`, no redirects
    (a redirect could lead a device-given URL anywhere)."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if settings.relay_ca_file is not None:
        context.load_verify_locations(cafile=str(settings.relay_ca_file))
    return httpx.AsyncClient(
        verify=context,
        timeout=httpx.Timeout(settings.relay_timeout_seconds),
        follow_redirects=False,
        trust_env=False,
        limits=httpx.Limits(max_connections=CONCURRENT_CALLS),
        headers={"user-agent": "passhouse"},
    )


def make_relay_senders(settings: Settings) -> dict[str, PushSender]:
    senders: dict[str, PushSender] = {}
    for transport, sender in RELAYS.items():
        relay = sender(settings, relay_client(settings))
        missing = relay.missing_key()
        if missing is not None:  # a warning once a push is actually skipped, not here
            log.info(
                "relay_not_configured",
                transport=transport,
                reason=missing,
                action="its pushes are kept in the queue and skipped until the key is set",
            )
        senders[transport] = relay
    return senders
