"""Google Wallet over HTTP: issuer accounts (/api/v1/google-issuers), and the public
routes Google itself calls: template images and save/delete callbacks (/google/v1/...)."""

from __future__ import annotations

import re
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from passhouse.errors import InvalidInput, NotFound
from passhouse.google.callbacks import earliest_expiration, usable_root_keys
from passhouse.google_sync import make_client
from passhouse.issuing import google_wallet
from passhouse.pkpass.json_input import JsonRejected, parse_json
from passhouse.push.google import ssl_context
from passhouse.settings import Settings
from passhouse.storage import google_wallet as store
from passhouse.web.admin_schema import JsonObject, error_responses
from passhouse.web.deps import LimitedJsonRoute, ReadConn, RuntimeDep, WriteConn, require_api_key

router = APIRouter(
    prefix="/api/v1",
    generate_unique_id_function=lambda route: route.name,
    dependencies=[Depends(require_api_key)],
    route_class=LimitedJsonRoute,
)
public_router = APIRouter(prefix="/google/v1", include_in_schema=False)

IssuerIdPath = Annotated[
    str,
    Path(
        pattern=r"^[0-9]{1,32}$",
        description="The issuer id from the Google Pay & Wallet Console",
        examples=["3388000000012345678"],
    ),
]
_SERVICE_ACCOUNT_EXAMPLE: dict[str, Any] = {
    "type": "service_account",
    "project_id": "my-project",
    "private_key_id": "0123456789abcdef",
    "private_key": "-----BEGIN PRIVATE KEY-----\n...\n-----END PRIVATE KEY-----\n",
    "client_email": "passhouse@my-project.iam.gserviceaccount.com",
    "token_uri": "https://oauth2.googleapis.com/token",
}

_ISSUER_EXAMPLE: Any = {
    "issuer_id": "3388000000012345678",
    "service_account": _SERVICE_ACCOUNT_EXAMPLE,
}


class GoogleIssuerIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [_ISSUER_EXAMPLE]},
    )

    issuer_id: str = Field(
        pattern=r"^[0-9]{1,32}$",
        description="The issuer id from the Google Pay & Wallet Console",
        examples=["3388000000012345678"],
    )
    service_account: JsonObject = Field(
        description="The service account's JSON key file, as Google gives it"
    )


class GoogleIssuerView(BaseModel):
    model_config = ConfigDict(extra="allow")

    issuer_id: str = Field(examples=["3388000000012345678"])
    client_email: str = Field(examples=["passhouse@my-project.iam.gserviceaccount.com"])
    private_key_id: str | None = Field(description="The key's id; the key is never shown")
    project_id: str | None = Field(examples=["my-project"])
    token_uri: str = Field(examples=["https://oauth2.googleapis.com/token"])
    created_at: str = Field(examples=["2026-12-02T01:00:00Z"])


class GoogleIssuerList(BaseModel):
    model_config = ConfigDict(extra="allow")

    items: list[GoogleIssuerView]


@router.post(
    "/google-issuers",
    status_code=status.HTTP_201_CREATED,
    tags=["google wallet"],
    response_model=GoogleIssuerView,
    responses={
        200: {"model": GoogleIssuerView, "description": "The issuer existed: its key was replaced"},
        201: {"description": "The issuer account was connected"},
        **error_responses(400, 413),
    },
)
async def add_google_issuer(
    body: GoogleIssuerIn, runtime: RuntimeDep, response: Response
) -> dict[str, Any]:
    """Connect a Google Wallet issuer account with its service account key.

    The credentials are checked with Google at once (a token is fetched and the issuer's
    classes listed); a problem is a 422 with one sentence saying what to fix. The private
    key is stored encrypted and never shown again.
    """
    client = make_client(runtime.settings)
    try:
        row, created = await google_wallet.add_issuer(
            runtime.database,
            runtime.sealer,
            client,
            issuer_id=body.issuer_id,
            service_account=body.service_account,
        )
    finally:
        await client.aclose()
    if not created:
        response.status_code = status.HTTP_200_OK
    return google_wallet.issuer_view(row)


@router.get(
    "/google-issuers",
    tags=["google wallet"],
    response_model=GoogleIssuerList,
    responses=error_responses(),
)
async def list_google_issuers(conn: ReadConn) -> dict[str, Any]:
    """Every connected Google Wallet issuer account."""
    return {"items": [google_wallet.issuer_view(r) for r in await store.list_issuers(conn)]}


@router.get(
    "/google-issuers/{issuer_id}",
    tags=["google wallet"],
    response_model=GoogleIssuerView,
    responses=error_responses(404),
)
async def get_google_issuer(issuer_id: IssuerIdPath, conn: ReadConn) -> dict[str, Any]:
    """One Google Wallet issuer account."""
    row = await store.get_issuer(conn, issuer_id)
    if row is None:
        raise NotFound(f"No Google issuer {issuer_id!r}.")
    return google_wallet.issuer_view(row)


@router.delete(
    "/google-issuers/{issuer_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["google wallet"],
    responses={204: {"description": "Removed"}, **error_responses(404, 409)},
)
async def delete_google_issuer(issuer_id: IssuerIdPath, conn: WriteConn) -> None:
    """Remove an issuer account that no template uses (409 otherwise)."""
    await google_wallet.delete_issuer(conn, issuer_id)


# --- what Google calls -------------------------------------------------------------------

_DIGEST = re.compile(r"[0-9a-f]{64}")


@public_router.get("/images/{name}")
async def google_image(name: str, conn: ReadConn) -> Response:
    """A template image, by the SHA-256 of its bytes: the URL never changes meaning, so it
    may be cached for ever, and a new image has a new URL."""
    digest = name.removesuffix(".png")
    data = await store.get_image(conn, digest) if _DIGEST.fullmatch(digest) else None
    if data is None:
        raise NotFound("No such image.")
    return Response(
        data,
        media_type="image/png",
        headers={"cache-control": "public, max-age=31536000, immutable"},
    )


class RootKeys:
    """Google's callback root keys, cached until the earliest expires (at most an hour).

    A callback that fails to verify never causes a refetch: forged callbacks cannot make
    this server hammer Google (a failed fetch is retried after a minute).
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._keys: list[str] = []
        self._until = 0.0

    async def get(self) -> list[str]:
        now = time.time()
        if now < self._until:
            return self._keys
        import httpx

        try:
            async with httpx.AsyncClient(
                verify=ssl_context(self._settings.google_ca_file), timeout=10.0
            ) as http:
                response = await http.get(self._settings.google_callback_keys_url)
            document = response.json()
        except (httpx.HTTPError, ValueError):
            self._until = now + 60
            return self._keys
        self._keys = usable_root_keys(document, now_ms=int(now * 1000))
        expires = earliest_expiration(document)
        until = now + 3600
        if expires is not None:
            until = min(until, expires / 1000 - 300)
        self._until = max(until, now + 60)
        return self._keys


def _root_keys(request: Request) -> RootKeys:
    keys: RootKeys | None = getattr(request.app.state, "google_root_keys", None)
    if keys is None:
        keys = request.app.state.google_root_keys = RootKeys(request.app.state.runtime.settings)
    return keys


@public_router.post("/callbacks")
async def google_callback(request: Request, conn: WriteConn) -> dict[str, Any]:
    """Google's save/delete callback: verified (ECv2SigningOnly), applied once per nonce.

    https://developers.google.com/wallet/generic/use-cases/use-callbacks-for-saves-and-deletions
    """
    try:
        body = parse_json(await request.body(), max_depth=8)
    except (JsonRejected, ValueError):
        raise InvalidInput("The callback is not a JSON object Google sends.") from None
    outcome, _ = await google_wallet.apply_callback(
        conn, body, root_keys=await _root_keys(request).get()
    )
    return {"status": "success", "outcome": outcome}
