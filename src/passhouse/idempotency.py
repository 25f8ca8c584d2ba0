"""Idempotency-Key: a retried POST gets the first answer again and creates nothing.

The key is taken (a row written) at the start of the request's transaction and the
answer stored at its end, in the same transaction: an answer is remembered exactly when
what it reports was committed. A request that fails rolls back its key with everything
else, so retrying it is safe and does the work again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from passhouse.errors import InvalidInput
from passhouse.issuing import now_seconds
from passhouse.storage import idempotency


class IdempotencyKeyReused(InvalidInput):
    code = "idempotency_key_reused"


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    status_code: int
    body: str


def fingerprint(method: str, path: str, request: Any) -> str:
    """What makes two requests "the same": method, path and the request's content."""
    canonical = json.dumps([method, path, request], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


async def begin(
    conn: AsyncConnection, *, scope: str, key: str, fingerprint: str, keep_seconds: int
) -> StoredAnswer | None:
    """Take `key` for this request (None: go on and answer), or the answer to repeat."""
    now = now_seconds()
    row = await idempotency.claim(
        conn,
        scope=scope,
        key=key,
        fingerprint=fingerprint,
        now=now,
        expired_before=now - keep_seconds,
    )
    if row is None:
        return None
    if row.fingerprint != fingerprint:
        raise IdempotencyKeyReused(
            "This Idempotency-Key was already used with another request (method, path or "
            "body); use a new key for a new request."
        )
    return StoredAnswer(int(row.status_code), row.body)


async def remember(
    conn: AsyncConnection, *, scope: str, key: str, status_code: int, body: str
) -> None:
    await idempotency.remember(conn, scope=scope, key=key, status_code=status_code, body=body)
