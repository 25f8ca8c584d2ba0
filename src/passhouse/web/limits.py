"""ASGI guards applied before routing: request size and path normalisation."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from passhouse.web.errors import PASSNINJA_PREFIX


class RequestLimits:
    """Refuse bodies over `max_bytes` with a JSON 413, odd paths with a JSON 400, and fold
    `//v1` into `/v1`.

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
        in_body = ("/" + path.lstrip("/")).startswith(PASSNINJA_PREFIX)  # before "//" folds
        if "\x00" in path or b"%00" in scope.get("query_string", b""):
            # No identifier holds NUL, and PostgreSQL cannot even compare text with one.
            await _send_error(
                send, 400, "bad_request", "The URL contains a NUL character.", in_body=in_body
            )
            return
        raw_path: bytes = scope.get("raw_path") or path.encode()
        # An encoded slash would be decoded into a real one and route the request elsewhere.
        if b"%2f" in raw_path.lower():
            await _send_error(
                send, 400, "bad_request", "The URL path holds an encoded '/'.", in_body=in_body
            )
            return
        if "//" in path:
            while "//" in path:
                path = path.replace("//", "/")
            scope = {**scope, "path": path, "raw_path": path.encode()}
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit():
                    await _send_error(
                        send, 400, "bad_request", "Invalid Content-Length.", in_body=in_body
                    )
                    return
                if int(value) > self.max_bytes:
                    await _send_error(
                        send, 413, "payload_too_large", self._message(), in_body=in_body
                    )
                    return
                break
        await self._guarded(scope, receive, send, in_body=in_body)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send, *, in_body: bool) -> None:
        """Run the app; once a chunked body grows too large, answer 413 whatever it does.

        The app sees BodyTooLarge while reading and may turn it into a 400 or a 500 of
        its own; that answer is replaced.
        """
        exceeded = False
        seen = 0
        response_started = False

        async def counted() -> Message:
            nonlocal seen, exceeded
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    exceeded = True
                    raise BodyTooLarge(self._message())
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            if exceeded:
                if not response_started:
                    response_started = True
                    await _send_error(
                        send, 413, "payload_too_large", self._message(), in_body=in_body
                    )
                return
            response_started = True
            await send(message)

        try:
            await self.app(scope, counted, guarded_send)
        except BodyTooLarge:
            if not response_started:
                await _send_error(send, 413, "payload_too_large", self._message(), in_body=in_body)

    def _message(self) -> str:
        return f"The request body is larger than {self.max_bytes} bytes."


class BodyTooLarge(Exception):
    """A chunked body grew past the limit while being read."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


async def _send_error(
    send: Send, status: int, code: str, message: str, *, in_body: bool = False
) -> None:
    error: dict[str, object] = {"code": code, "message": message}
    if in_body:  # the PassNinja-compatible API's errors also name their status (web/errors.py)
        error["status_code"] = status
    body = json.dumps({"error": error}).encode()
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
