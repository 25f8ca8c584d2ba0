"""The Idempotency-Key header of the POSTs that create passes (see passhouse/idempotency.py)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Header, Request
from fastapi.encoders import jsonable_encoder
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response

from passhouse import idempotency

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="Any unique value of up to 255 printable ASCII characters (a UUID). "
        "Sent again with the same request within 24 hours, the first answer is repeated "
        "and nothing new is made; with another request, a 422 (idempotency_key_reused). "
        "Keys are scoped to the API key that sends them.",
        examples=["7c1e4c2a-4b8e-4f6e-9d43-2f1a0c9b5e11"],
    ),
]

REPLAYED_HEADER = "Idempotent-Replayed"


def _scope(request: Request) -> str:
    """The API key's SHA-256 (require_api_key has already checked the key)."""
    _, _, key = request.headers.get("authorization", "").partition(" ")
    return hashlib.sha256(key.encode()).hexdigest()


def _json(value: Any) -> str:
    # As FastAPI's JSONResponse renders.
    return json.dumps(
        jsonable_encoder(value), ensure_ascii=False, allow_nan=False, separators=(",", ":")
    )


async def answer_once(
    conn: AsyncConnection,
    request: Request,
    key: str | None,
    content: Any,
    status_code: int,
    action: Callable[[], Awaitable[Any]],
) -> Response:
    """Run `action` and answer its value with `status_code`, at most once per key.

    `content` is what the request asks (its parsed body): the same key with other content
    is refused. The answer is stored in `conn`'s transaction (the request's own).
    """
    if key is None:
        return Response(_json(await action()), status_code, media_type="application/json")
    scope = _scope(request)
    settings = request.app.state.runtime.settings
    stored = await idempotency.begin(
        conn,
        scope=scope,
        key=key,
        fingerprint=idempotency.fingerprint(request.method, request.url.path, content),
        keep_seconds=settings.idempotency_keep_seconds,
    )
    if stored is not None:
        return Response(
            stored.body,
            stored.status_code,
            media_type="application/json",
            headers={REPLAYED_HEADER: "true"},
        )
    body = _json(await action())
    await idempotency.remember(conn, scope=scope, key=key, status_code=status_code, body=body)
    return Response(body, status_code, media_type="application/json")
