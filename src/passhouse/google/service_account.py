"""Service account key files and the JWTs signed with them (RS256, PyJWT).

Two JWTs: the OAuth2 JWT-bearer assertion exchanged for an access token at the key's
token_uri, and the "Add to Google Wallet" save link. PyJWT on `cryptography` is enough
for both; google-auth would bring requests and a synchronous transport with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

SCOPE = "https://www.googleapis.com/auth/wallet_object.issuer"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_SECONDS = 3600
# Browsers and Google's save page truncate longer links.
MAX_SAVE_JWT = 1800
PAYLOAD_KEYS = {
    "generic": "genericObjects",
    "loyalty": "loyaltyObjects",
    "offer": "offerObjects",
    "giftCard": "giftCardObjects",
    "eventTicket": "eventTicketObjects",
    "flight": "flightObjects",
    "transit": "transitObjects",
}


class ServiceAccountError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class ServiceAccount:
    client_email: str
    private_key_pem: bytes
    private_key_id: str | None
    token_uri: str
    project_id: str | None = None


def load_service_account(info: Mapping[str, Any]) -> ServiceAccount:
    """The parts of a Google key file a client needs, checked; one sentence on a problem."""
    if not isinstance(info, Mapping):
        raise ServiceAccountError(
            "The service account must be the JSON key file as Google gives it."
        )
    if info.get("type") != "service_account":
        raise ServiceAccountError(
            'This is not a service account key file (its "type" is not "service_account"): '
            "create a JSON key for the service account in Google Cloud's console."
        )
    missing = [
        k for k in ("client_email", "private_key", "token_uri") if not isinstance(info.get(k), str)
    ]
    if missing:
        raise ServiceAccountError(f"The key file lacks {', '.join(missing)}.")
    token_uri = str(info["token_uri"])
    if not token_uri.startswith(("https://", "http://")):
        raise ServiceAccountError("The key file's token_uri is not an http(s) URL.")
    try:
        key = serialization.load_pem_private_key(str(info["private_key"]).encode(), None)
    except (ValueError, TypeError):
        raise ServiceAccountError(
            "The key file's private_key is not a readable PEM key: use the file unchanged."
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ServiceAccountError("The key file's private_key is not an RSA key.")
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    key_id = info.get("private_key_id")
    project = info.get("project_id")
    return ServiceAccount(
        client_email=str(info["client_email"]),
        private_key_pem=pem,
        private_key_id=key_id if isinstance(key_id, str) else None,
        token_uri=token_uri,
        project_id=project if isinstance(project, str) else None,
    )


def _headers(account: ServiceAccount) -> dict[str, str]:
    return {"kid": account.private_key_id} if account.private_key_id else {}


def token_assertion(account: ServiceAccount, *, now: int) -> str:
    """The JWT exchanged for an access token (OAuth2 for server-to-server applications)."""
    claims = {
        "iss": account.client_email,
        "scope": SCOPE,
        "aud": account.token_uri,
        "iat": now,
        "exp": now + ASSERTION_SECONDS,
    }
    return jwt.encode(claims, account.private_key_pem, algorithm="RS256", headers=_headers(account))


def save_jwt(
    account: ServiceAccount, google_type: str, object_id: str, *, origins: list[str], now: int
) -> str:
    """The save-link JWT, referring to an object already inserted by id (short, and
    patchable before and after the holder saves it)."""
    claims = {
        "iss": account.client_email,
        "aud": "google",
        "typ": "savetowallet",
        "iat": now,
        "origins": origins,
        "payload": {PAYLOAD_KEYS[google_type]: [{"id": object_id}]},
    }
    return jwt.encode(claims, account.private_key_pem, algorithm="RS256", headers=_headers(account))


def save_url(save_base: str, token: str) -> str:
    if len(token) > MAX_SAVE_JWT:
        raise ServiceAccountError(
            f"The save link's JWT is {len(token)} characters, above Google's {MAX_SAVE_JWT}."
        )
    return save_base.rstrip("/") + "/" + token
