"""ASGI guards applied before routing: request size and path normalisation."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class RequestLimits:
    """Refuse bodies over `max_bytes` with a JSON 413, and fold `//v1` into `/v1`.

    A webServiceURL that ends in a slash makes Wallet call `.../passkit//v1/...`; the
    route table only knows one slash.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if "//" in path:
            while "//" in path:
                path = path.replace("//", "/")
            scope = {**scope, "path": path, "raw_path": path.encode()}
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    await _send_error(send, 400, "bad_request", "Invalid Content-Length.")
                    return
                if too_big:
                    await _send_error(send, 413, "payload_too_large", self._message())
                    return
                break
        await self.app(scope, self._counting(receive), send)

    def _message(self) -> str:
        return f"The request body is larger than {self.max_bytes} bytes."

    def _counting(self, receive: Receive) -> Receive:
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self._message())
            return message

        return counted


class BodyTooLarge(Exception):
    """A chunked body grew past the limit while being read."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


async def _send_error(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
