"""A fake APNs: a real HTTP/2 server over TLS on loopback that checks client certificates.

Tests run it in their own event loop; the benchmark runs it as a separate process
(`python tests/push/fake_apns.py --certs DIR`), which prints `PORT n` and then
`COUNT n last_received_unix_seconds` whenever the count of received pushes changes.
It only imports the standard library and h2, so it runs as a plain script.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import DataReceived, RequestReceived, StreamEnded
from h2.exceptions import H2Error
from h2.settings import SettingCodes, Settings
from hyperframe.frame import DataFrame, HeadersFrame


@dataclass(frozen=True, slots=True)
class Answer:
    status: int = 200
    reason: str | None = None
    timestamp_ms: int | None = None

    def body(self) -> bytes:
        if self.status == 200:
            return b""
        payload: dict[str, object] = {"reason": self.reason or "Error"}
        if self.timestamp_ms is not None:
            payload["timestamp"] = self.timestamp_ms
        return json.dumps(payload).encode()


OK = Answer(200)
BAD_DEVICE_TOKEN = Answer(400, "BadDeviceToken")
BAD_CERTIFICATE = Answer(403, "BadCertificate")
TOO_MANY_REQUESTS = Answer(429, "TooManyRequests")
SERVICE_UNAVAILABLE = Answer(503, "ServiceUnavailable")


def unregistered(timestamp_ms: int) -> Answer:
    return Answer(410, "Unregistered", timestamp_ms)


@dataclass(frozen=True, slots=True)
class ReceivedPush:
    token: str
    headers: dict[str, str]
    body: bytes
    at: float
    connection: int
    status: int


@dataclass
class FakeApns:
    server_cert_pem: bytes
    server_key_pem: bytes
    # PEM of the CAs a client certificate must chain to; None accepts any client.
    client_ca_pem: bytes | None
    max_concurrent_streams: int = 1000
    # Seconds to wait before answering each push.
    delay: float = 0.0
    # Send GOAWAY (and close) after this many streams on each connection.
    goaway_after: int | None = None
    # Record pushes (a benchmark only counts them).
    keep: bool = True
    default: Answer = OK
    answers: dict[str, list[Answer]] = field(default_factory=dict)
    received: list[ReceivedPush] = field(default_factory=list)
    count: int = 0
    last_at: float = 0.0
    connections: int = 0
    goaways: int = 0
    client_subjects: list[str] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None
    _open: set[asyncio.Transport] = field(default_factory=set)
    _silent: set[asyncio.Transport] = field(default_factory=set)

    def answer(self, token: str, *answers: Answer) -> None:
        """Script the answers for one token, in order; the last one repeats."""
        self.answers[token] = list(answers)

    def next_answer(self, token: str) -> Answer:
        scripted = self.answers.get(token)
        if not scripted:
            return self.default
        return scripted.pop(0) if len(scripted) > 1 else scripted[0]

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def tokens(self, status: int = 200) -> list[str]:
        return [push.token for push in self.received if push.status == status]

    async def start(self) -> FakeApns:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        with tempfile.TemporaryDirectory() as directory:
            cert, key = Path(directory) / "cert.pem", Path(directory) / "key.pem"
            cert.write_bytes(self.server_cert_pem)
            key.write_bytes(self.server_key_pem)
            context.load_cert_chain(cert, key)
        if self.client_ca_pem is not None:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(cadata=self.client_ca_pem.decode())
        context.set_alpn_protocols(["h2"])
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _ServerConnection(self), "127.0.0.1", self.port, ssl=context
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def go_silent(self) -> None:
        """Stop reading and answering on the open connections, as a peer that vanished
        without closing them (new connections are served as usual)."""
        for transport in self._open:
            transport.pause_reading()
            self._silent.add(transport)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for transport in list(self._open):
                transport.close()
            for transport in self._silent:
                transport.abort()  # a silent side never reads the TLS goodbye
            self._silent.clear()
            await self._server.wait_closed()


APNS_ID = "00000000-0000-4000-8000-000000000000"


class _H2(H2Connection):
    """h2 counts open streams by walking them all for every new stream; count cheaply."""

    _counted = 0
    open_count = 0  # requests received and not yet answered

    @property
    def open_inbound_streams(self) -> int:
        self._counted += 1
        if self._counted % 256 == 0:
            self._open_streams(0)  # forgets closed streams
        return self.open_count


class _ServerConnection(asyncio.Protocol):
    def __init__(self, apns: FakeApns) -> None:
        self.apns = apns
        apns.connections += 1
        self.number = apns.connections
        config = H2Configuration(
            client_side=False,
            header_encoding="utf-8",
            validate_inbound_headers=False,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
        self.h2 = _H2(config=config)
        self.flush_scheduled = False
        # As initial values, so the first SETTINGS frame advertises what is enforced.
        self.h2.local_settings = Settings(
            client=False,
            initial_values={SettingCodes.MAX_CONCURRENT_STREAMS: apns.max_concurrent_streams},
        )
        self.transport: asyncio.Transport | None = None
        self.requests: dict[int, dict[str, str]] = {}
        self.bodies: dict[int, bytearray] = {}
        self.streams_seen = 0
        self.pending = 0
        self.last_stream_id: int | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, so no isinstance check.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        self.apns._open.add(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        peer = ssl_object.getpeercert() if ssl_object is not None else None
        if peer:
            subject = dict(item[0] for item in peer.get("subject", ()))
            self.apns.client_subjects.append(str(subject.get("commonName", "")))
        self.h2.initiate_connection()
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.apns._open.discard(self.transport)

    def data_received(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except H2Error:
            # Frames after our GOAWAY are dropped; answers still owed go out, then we close.
            if self.last_stream_id is None and self.transport is not None:
                self.transport.close()
            return
        for event in events:
            if isinstance(event, RequestReceived):
                self.h2.open_count += 1
                self.requests[event.stream_id] = {
                    str(name): str(value) for name, value in event.headers
                }
                self.bodies[event.stream_id] = bytearray()
            elif isinstance(event, DataReceived):
                self.bodies.setdefault(event.stream_id, bytearray()).extend(event.data)
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, StreamEnded):
                self._received(event.stream_id)
        self._flush()

    def _received(self, stream_id: int) -> None:
        if self.last_stream_id is not None and stream_id > self.last_stream_id:
            return  # after GOAWAY: never processed, the client must retry elsewhere
        headers = self.requests.pop(stream_id, {})
        body = bytes(self.bodies.pop(stream_id, b""))
        token = headers.get(":path", "").rsplit("/", 1)[-1]
        answer = self.apns.next_answer(token)
        self.apns.count += 1
        self.apns.last_at = time.time()
        if self.apns.keep:
            self.apns.received.append(
                ReceivedPush(token, headers, body, self.apns.last_at, self.number, answer.status)
            )
        self.streams_seen += 1
        goaway = self.apns.goaway_after is not None and (
            self.streams_seen >= self.apns.goaway_after
        )
        if goaway and self.last_stream_id is None:
            self.last_stream_id = stream_id
        self.pending += 1
        if self.apns.delay > 0:
            asyncio.get_running_loop().call_later(self.apns.delay, self._respond, stream_id, answer)
        else:
            self._respond(stream_id, answer)
        if goaway and self.last_stream_id == stream_id:
            self.apns.goaways += 1
            self.h2.close_connection(
                additional_data=b'{"reason":"Shutdown"}', last_stream_id=stream_id
            )
            self._flush()

    def _respond(self, stream_id: int, answer: Answer) -> None:
        self.pending -= 1
        self.h2.open_count -= 1
        if self.transport is None or self.transport.is_closing():
            return
        body = answer.body()
        headers = [(":status", str(answer.status)), ("apns-id", APNS_ID)]
        if body:
            headers.append(("content-length", str(len(body))))
        if self.last_stream_id is not None:
            # h2 refuses to send once it has sent GOAWAY, but streams up to the GOAWAY's
            # last stream id are still owed an answer: write the frames by hand.
            self._write_frames(stream_id, headers, body)
        elif body:
            self.h2.send_headers(stream_id, headers)
            self.h2.send_data(stream_id, body, end_stream=True)
        else:
            self.h2.send_headers(stream_id, headers, end_stream=True)
        if not self.flush_scheduled:
            # One write for all answers of this loop tick: the fake must outrun the client.
            self.flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        if self.last_stream_id is not None and self.pending == 0:
            self.transport.close()

    def _write_frames(self, stream_id: int, headers: list[tuple[str, str]], body: bytes) -> None:
        assert self.transport is not None
        block = self.h2.encoder.encode(headers)
        frame = HeadersFrame(stream_id, block, flags=["END_HEADERS"])
        if not body:
            frame.flags.add("END_STREAM")
        self.transport.write(frame.serialize())
        if body:
            self.transport.write(DataFrame(stream_id, body, flags=["END_STREAM"]).serialize())

    def _flush(self) -> None:
        self.flush_scheduled = False
        data = self.h2.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)


async def _serve(args: argparse.Namespace) -> None:
    certs = Path(args.certs)
    apns = FakeApns(
        server_cert_pem=(certs / "server.pem").read_bytes(),
        server_key_pem=(certs / "server.key").read_bytes(),
        client_ca_pem=(certs / "client-ca.pem").read_bytes(),
        delay=args.delay,
        keep=False,
        port=args.port,
    )
    await apns.start()
    sys.stdout.write(f"PORT {apns.port}\n")
    sys.stdout.flush()
    reported = -1
    while True:
        await asyncio.sleep(0.002)
        if apns.count != reported:
            reported = apns.count
            sys.stdout.write(f"COUNT {apns.count} {apns.last_at:.6f}\n")
            sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--certs", required=True, help="server.pem, server.key, client-ca.pem")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.run(_serve(args))
    except ImportError:
        asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
