"""A loopback TCP proxy a test can stop and start: a real database outage, for this test only.

Stopping closes the listening socket and every proxied connection, so clients see what a
restarted or unplugged server gives them (refused connects, connections reset) while the
real server keeps running for everyone else.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

import sqlalchemy as sa


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.sent = bytearray()  # every byte clients sent the server, for tests to read

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def running(self) -> bool:
        return self._server is not None

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        await self._server.wait_closed()
        self._server = None

    def url(self, database_url: str) -> str:
        """`database_url` with its host and port replaced by this proxy's."""
        parsed = sa.make_url(database_url)
        return parsed.set(host="127.0.0.1", port=self.port).render_as_string(hide_password=False)

    async def _serve(
        self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter
    ) -> None:
        try:
            server_reader, server = await asyncio.open_connection(*self.target)
        except OSError:
            client.transport.abort()
            return
        self._writers |= {client, server}
        try:
            await asyncio.gather(
                self._pipe(client_reader, server, self.sent), self._pipe(server_reader, client)
            )
        finally:
            self._writers -= {client, server}
            for writer in (client, server):
                writer.transport.abort()

    @staticmethod
    async def _pipe(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: bytearray | None = None
    ) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                if seen is not None:
                    seen += data
                writer.write(data)
                await writer.drain()
        writer.transport.abort()


class BlackHole:
    """A port that completes TCP handshakes (the kernel's backlog) and never answers,
    like a database behind a network partition that drops packets."""

    def __init__(self) -> None:
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(64)
        self.port: int = self._socket.getsockname()[1]

    def close(self) -> None:
        self._socket.close()
