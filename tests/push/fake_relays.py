"""Fake push relays of the Android pkpass apps: real HTTP/1.1 servers (TLS optional) on
loopback, checking each relay's request shape as its developer page documents it.

- Wallet Passes: POST /api/v1/push {"passTypeIdentifier", "pushTokens"}, optional
  `Authorization: <key>` (checked when the fake has a key);
- Pass2U: POST /v2/registrations/{passTypeIdentifier}/push {"registrationIds"} (at most
  1,000), `x-api-key` required;
- Passworks: POST /v1/pushUpdate {"passTypeIdentifier", "pushTokens"},
  `Authorization: <Wallet App Key>` required;
- PassWallet: POST {base}/v1/pushUpdate {"passTypeID", "pushToken"} or
  {base}/v1/pushUpdates {"passTypeID", "pushTokens"}; 200 {"status": "OK"}, 400 with
  details otherwise.

Answers can be scripted: `status` for every request (503 while "down"), `gone` tokens
(a request naming one is answered 410), or `stop()` to refuse connections and `start()`
to listen again on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import ssl
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h11

WALLETPASSES = "walletpasses"
PASS2U = "pass2u"
PASSWORKS = "passworks"
PASSWALLET = "passwallet"

PASSWALLET_BASE = "/PassWallet"
_PASS2U_PATH = re.compile(r"^/v2/registrations/([^/]+)/push$")


@dataclass(frozen=True, slots=True)
class Received:
    path: str
    pass_type_id: str
    tokens: tuple[str, ...]
    headers: dict[str, str]
    status: int


@dataclass
class FakeRelay:
    kind: str
    api_key: str | None = None
    # PEM server certificate and key for HTTPS; None serves plain HTTP.
    cert_pem: bytes | None = None
    key_pem: bytes | None = None
    # Answer every well-formed request with this status (200: delivered).
    status: int = 200
    # A request naming one of these tokens is answered 410 Gone.
    gone: set[str] = field(default_factory=set)
    # Seconds to wait before answering each request.
    delay: float = 0.0
    received: list[Received] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    @property
    def url(self) -> str:
        scheme = "https" if self.cert_pem else "http"
        base = PASSWALLET_BASE if self.kind == PASSWALLET else ""
        return f"{scheme}://127.0.0.1:{self.port}{base}"

    def tokens(self, status: int = 200) -> list[str]:
        """Every token received in requests answered with `status`."""
        return [t for r in self.received if r.status == status for t in r.tokens]

    async def start(self) -> None:
        context = None
        if self.cert_pem and self.key_pem:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            with tempfile.TemporaryDirectory() as directory:
                cert, key = Path(directory) / "cert.pem", Path(directory) / "key.pem"
                cert.write_bytes(self.cert_pem)
                key.write_bytes(self.key_pem)
                context.load_cert_chain(cert, key)
        self._server = await asyncio.start_server(
            self._serve, "127.0.0.1", self.port, ssl=context, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and drop open connections: the relay is down."""
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        connection = h11.Connection(h11.SERVER)
        try:
            while True:
                request, body = await self._read_request(connection, reader)
                if request is None:
                    return
                status, payload = self._answer(request, body)
                if self.delay:
                    await asyncio.sleep(self.delay)
                data = json.dumps(payload).encode()
                headers = [("content-type", "application/json"), ("content-length", str(len(data)))]
                writer.write(connection.send(h11.Response(status_code=status, headers=headers)))
                writer.write(connection.send(h11.Data(data=data)))
                writer.write(connection.send(h11.EndOfMessage()))
                await writer.drain()
                if connection.our_state is h11.MUST_CLOSE:
                    return
                connection.start_next_cycle()
        except (ConnectionError, h11.ProtocolError, ssl.SSLError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _read_request(
        self, connection: h11.Connection, reader: asyncio.StreamReader
    ) -> tuple[h11.Request | None, bytes]:
        request: h11.Request | None = None
        body = b""
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                data = await reader.read(65536)
                if not data:
                    return None, b""
                connection.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return request, body
            elif isinstance(event, h11.ConnectionClosed):
                return None, b""

    def _answer(self, request: h11.Request, body: bytes) -> tuple[int, dict[str, Any]]:
        headers = {name.decode().lower(): value.decode() for name, value in request.headers}
        path = request.target.decode()
        if request.method != b"POST":
            return 405, {"error": "POST only"}
        if "application/json" not in headers.get("content-type", ""):
            return 415, {"error": "JSON only"}
        try:
            parsed = json.loads(body)
        except ValueError:
            return 400, {"status": "error", "message": "not JSON"}
        shape = self._shape(path, parsed)
        if isinstance(shape, str):
            return 400, {"status": "error", "message": shape}
        pass_type_id, tokens = shape
        status = self._status(headers, tokens)
        self.received.append(Received(path, pass_type_id, tuple(tokens), headers, status))
        if status == 200:
            return 200, {"status": "OK"}
        return status, {"status": "error", "message": f"answered {status}"}

    def _status(self, headers: dict[str, str], tokens: list[str]) -> int:
        if self.kind == PASS2U and headers.get("x-api-key") != self.api_key:
            return 401
        if self.kind == PASSWORKS and headers.get("authorization") != self.api_key:
            return 401
        if (
            self.kind == WALLETPASSES
            and self.api_key is not None
            and headers.get("authorization") != self.api_key
        ):
            return 401
        if self.status != 200:
            return self.status
        if any(token in self.gone for token in tokens):
            return 410
        return 200

    def _shape(self, path: str, body: Any) -> tuple[str, list[str]] | str:
        """(pass type, tokens) of a well-formed request, else what is wrong with it."""
        if not isinstance(body, dict):
            return "the body must be an object"
        if self.kind == WALLETPASSES:
            if path != "/api/v1/push":
                return f"no such endpoint {path}"
            return _typed(body.get("passTypeIdentifier"), body.get("pushTokens"))
        if self.kind == PASSWORKS:
            if path != "/v1/pushUpdate":
                return f"no such endpoint {path}"
            return _typed(body.get("passTypeIdentifier"), body.get("pushTokens"))
        if self.kind == PASS2U:
            match = _PASS2U_PATH.match(path)
            if match is None:
                return f"no such endpoint {path}"
            ids = body.get("registrationIds")
            if isinstance(ids, list) and len(ids) > 1000:
                return "at most 1,000 registrationIds per call"
            return _typed(match.group(1), ids)
        if path == f"{PASSWALLET_BASE}/v1/pushUpdate":
            token = body.get("pushToken")
            return _typed(body.get("passTypeID"), [token] if isinstance(token, str) else None)
        if path == f"{PASSWALLET_BASE}/v1/pushUpdates":
            return _typed(body.get("passTypeID"), body.get("pushTokens"))
        return f"no such endpoint {path}"


def _typed(pass_type_id: Any, tokens: Any) -> tuple[str, list[str]] | str:
    if not isinstance(pass_type_id, str) or not pass_type_id:
        return "the pass type is missing"
    if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) for t in tokens):
        return "the tokens must be a non-empty list of strings"
    return pass_type_id, tokens
