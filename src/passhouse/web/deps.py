"""FastAPI dependencies, written once: connections, API keys, and bounded JSON bodies."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.exceptions import HTTPException

from passhouse.bootstrap import Runtime
from passhouse.errors import Unauthorized
from passhouse.issuing import PassBuilder
from passhouse.pkpass.json_input import JsonRejected, parse_json
from passhouse.settings import Settings
from passhouse.storage import api_keys, pass_versions
from passhouse.storage.pass_versions import Actor


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def get_builder(request: Request) -> PassBuilder:
    builder: PassBuilder = request.app.state.builder
    return builder


async def get_write_connection(request: Request) -> AsyncIterator[AsyncConnection]:
    async with get_runtime(request).database.transaction() as conn:
        yield conn


async def get_read_connection(request: Request) -> AsyncIterator[AsyncConnection]:
    async with get_runtime(request).database.reader() as conn:
        yield conn


# scope="function" commits before the response is sent: a failed commit is an error
# response, never a success the database does not hold.
WriteConn = Annotated[AsyncConnection, Depends(get_write_connection, scope="function")]
ReadConn = Annotated[AsyncConnection, Depends(get_read_connection, scope="function")]
RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
BuilderDep = Annotated[PassBuilder, Depends(get_builder)]


# In the OpenAPI description as the admin API's security scheme (the docs' Authorize button);
# auto_error=False: the check below answers with our own error body.
_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="apiKey",
    description="A passhouse API key (`passhouse api-key create`) or PASSHOUSE_ADMIN_TOKEN, "
    "sent as `Authorization: Bearer <key>`.",
)


async def require_api_key(
    request: Request,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Actor:
    """The key's actor: the routers run this for every request, and a handler that records
    who changed a pass gets the same answer through ActorDep (FastAPI runs it once)."""
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key:
        raise Unauthorized("Send an API key as 'Authorization: Bearer <key>'.")
    actor = await authenticate(get_runtime(request), key)
    if actor is None:
        raise Unauthorized("The API key is not valid.")
    return actor


async def authenticate(runtime: Runtime, key: str) -> Actor | None:
    """The bootstrap token or a key made with `api-key create` (and not revoked), as the
    actor the version history names; None for any other key."""
    bootstrap = runtime.settings.admin_token
    if bootstrap is not None and secrets.compare_digest(
        key.encode(), bootstrap.get_secret_value().encode()
    ):
        return pass_versions.ADMIN_TOKEN
    async with runtime.database.reader() as conn:
        found = await api_keys.find_key(conn, key)
    return None if found is None else Actor.api_key(*found)


async def is_valid_api_key(runtime: Runtime, key: str) -> bool:
    return await authenticate(runtime, key) is not None


# Who is calling, for the version history (ADR 0029).
ActorDep = Annotated[Actor, Depends(require_api_key)]


class _LimitedJsonRequest(Request):
    """A request whose JSON body is read within PASSHOUSE_JSON_MAX_DEPTH."""

    async def json(self) -> Any:
        if not hasattr(self, "_limited_json"):
            settings: Settings = self.app.state.runtime.settings
            try:
                self._limited_json = parse_json(
                    await self.body(), max_depth=settings.json_max_depth
                )
            except JsonRejected as error:
                raise HTTPException(400, error.message) from None
        return self._limited_json


class LimitedJsonRoute(APIRoute):
    """Routes whose handlers read JSON bodies through _LimitedJsonRequest."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def limited(request: Request) -> Response:
            return await handler(_LimitedJsonRequest(request.scope, request.receive))

        return limited
