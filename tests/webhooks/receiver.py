"""A webhook receiver: a real HTTP/1.1 server on loopback that checks every signature.

Tests run it in their own event loop; the benchmark runs it as a separate process
(`python tests/webhooks/receiver.py --secret S`), which prints `PORT n` and then
`COUNT n unique last_received_unix_seconds` whenever the count changes. The signature is
checked here with the standard library alone, as the README tells receivers to.
It imports only the standard library and h11, so it runs as a plain script.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import h11

REPLAY_WINDOW_SECONDS = 300


@dataclass(frozen=True, slots=True)
class Received:
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def event(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.body)
        return loaded


def signature_problem(secret: str, header: str, body: bytes, now: float) -> str | None:
    """Why a Passhouse-Signature is not valid, or None."""
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    if "t" not in parts or "v1" not in parts:
        return "malformed"
    if abs(now - int(parts["t"])) > REPLAY_WINDOW_SECONDS:
        return "outside the replay window"
    expected = hmac.new(
        secret.encode(), parts["t"].encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    return None if hmac.compare_digest(expected, parts["v1"]) else "wrong signature"


@dataclass
class Receiver:
    secret: str = ""
    status: int = 200
    delay: float = 0.0  # before answering: beyond the sender's timeout, an attempt times out
    received: list[Received] = field(default_factory=list)
    bad_signatures: list[str] = field(default_factory=list)
    attempts: int = 0  # every request, whatever it was answered
    connections: int = 0
    # The distinct event ids received, kept as they come: the benchmark's process reports
    # their number every 50 ms, and re-reading every body for it cost more CPU than
    # receiving them (at 100,000 events, a second per report).
    unique_ids: set[str] = field(default_factory=set)
    port: int = 0
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def event_ids(self) -> list[str]:
        return [r.event["id"] for r in self.received]

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        connection = h11.Connection(h11.SERVER)
        try:
            while True:
                request, body = await self._read_request(connection, reader)
                if request is None:
                    return
                self.attempts += 1
                if self.delay:
                    await asyncio.sleep(self.delay)
                status = self._take(request, body)
                out = connection.send(
                    h11.Response(status_code=status, headers=[("content-length", "2")])
                )
                out += connection.send(h11.Data(data=b"ok")) or b""
                out += connection.send(h11.EndOfMessage()) or b""
                writer.write(out)
                await writer.drain()
                if connection.our_state is h11.MUST_CLOSE:
                    return
                connection.start_next_cycle()
        except (ConnectionError, h11.ProtocolError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _read_request(
        self, connection: h11.Connection, reader: asyncio.StreamReader
    ) -> tuple[h11.Request | None, bytes]:
        request = None
        body = b""
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                data = await reader.read(65536)
                connection.receive_data(data)
                if not data and request is None:
                    return None, b""
                continue
            if isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return request, body
            elif isinstance(event, h11.ConnectionClosed):
                return None, b""

    def _take(self, request: h11.Request, body: bytes) -> int:
        headers = {k.decode().lower(): v.decode() for k, v in request.headers}
        if self.status < 200 or self.status >= 300:
            return self.status
        problem = (
            "not a POST"
            if request.method != b"POST"
            else "not JSON"
            if headers.get("content-type") != "application/json"
            else signature_problem(
                self.secret, headers.get("passhouse-signature", ""), body, time.time()
            )
        )
        if problem:
            self.bad_signatures.append(problem)
            return 400
        received = Received(headers, body, time.time())
        self.received.append(received)
        self.unique_ids.add(received.event["id"])
        return self.status


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def _main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--secret", required=True)
    args = parser.parse_args()
    receiver = Receiver(secret=args.secret)
    await receiver.start()
    _say(f"PORT {receiver.port}")
    shown = -1
    while True:
        await asyncio.sleep(0.05)
        count = len(receiver.received)
        if count != shown:
            shown = count
            last = receiver.received[-1].at if count else 0.0
            unique = len(receiver.unique_ids)
            _say(f"COUNT {count} {unique} {last:.3f} {len(receiver.bad_signatures)}")


if __name__ == "__main__":
    try:
        asyncio.run(_main())
    except KeyboardInterrupt:
        sys.exit(0)
