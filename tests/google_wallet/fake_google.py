"""A fake Google Wallet on loopback: the OAuth token endpoint, the walletobjects v1 REST
API for all seven types, the save page, the callback root keys, and a callback emitter.

It is a real HTTPS server (uvicorn, a test CA) and checks what Google checks, after
section 9 of shared/design/google-wallet.md: the JWT-bearer assertion against the test
service account's public key, bearer tokens, resource ids, 409 on duplicate inserts, 404
for unknown ids, required fields, draft classes, PATCH merging (arrays replaced, null
deletes), PUT replacing, a token-bucket rate limit answering 429, the notification quota
of 3 per object per 24 h (403 quotaExceeded), and scripted faults (500, 503, timeouts).
Its rules are written here from Google's documentation, not imported from passhouse.

The benchmark runs it as a process: `python tests/google/fake_google.py --certs DIR`
prints `PORT n`, then `COUNT n` as object writes arrive.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import re
import secrets
import socket
import ssl
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

TYPES = ("generic", "loyalty", "offer", "giftCard", "eventTicket", "flight", "transit")
SCOPE = "https://www.googleapis.com/auth/wallet_object.issuer"
CLASS_REQUIRED = {
    "generic": (),
    "loyalty": ("issuerName", "programName", "programLogo", "reviewStatus"),
    "offer": ("issuerName", "title", "provider", "redemptionChannel", "reviewStatus"),
    "eventTicket": ("issuerName", "eventName", "reviewStatus"),
    "giftCard": ("issuerName", "reviewStatus"),
    "flight": ("issuerName", "reviewStatus", "flightHeader", "origin", "destination"),
    "transit": ("issuerName", "reviewStatus", "transitType", "logo"),
}
OBJECT_REQUIRED = {
    "generic": ("classId", "cardTitle", "header"),
    "loyalty": ("classId", "state"),
    "offer": ("classId", "state"),
    "giftCard": ("classId", "state", "cardNumber"),
    "eventTicket": ("classId", "state"),
    "flight": ("classId", "state", "passengerName", "reservationInfo"),
    "transit": ("classId", "state", "tripType"),
}
_ID = re.compile(r"([0-9]+)\.([A-Za-z0-9._-]+)")
DAY_MS = 86_400_000


def google_error(status: int, message: str, reason: str) -> JSONResponse:
    return JSONResponse(
        {
            "error": {
                "code": status,
                "message": message,
                "errors": [{"domain": "walletobjects", "reason": reason, "message": message}],
            }
        },
        status_code=status,
    )


def merge(target: Any, patch: Any) -> Any:
    """PATCH semantics: objects merge, arrays and scalars replace, null deletes."""
    if not isinstance(patch, dict) or not isinstance(target, dict):
        return copy.deepcopy(patch)
    merged = dict(target)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge(merged.get(key), value)
    return merged


def _upper_enums(body: dict[str, Any]) -> None:
    for key in ("state", "reviewStatus"):
        value = body.get(key)
        if isinstance(value, str) and not value.isupper():  # deprecated aliases: underReview
            body[key] = re.sub(r"(?<!^)(?=[A-Z])", "_", value).upper()


@dataclass
class Fault:
    status: int | None = None  # an HTTP status to answer, or None for a timeout
    reason: str = "backendError"
    seconds: float = 30.0


@dataclass
class Write:
    method: str
    path: str
    body: Any
    at: float


@dataclass
class FakeGoogle:
    """State and behaviour; `serve()` puts it on loopback."""

    issuer_id: str
    public_key: rsa.RSAPublicKey
    client_email: str
    keys_document: dict[str, Any] = field(default_factory=dict)
    rate_per_second: float = 0.0  # 0: no rate limit
    rate_limit_status: int = 429
    strict_save_length: bool = True
    classes: dict[str, dict[str, Any]] = field(default_factory=dict)
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)  # resource id -> type
    writes: list[Write] = field(default_factory=list)
    notifications: list[tuple[str, float]] = field(default_factory=list)
    tokens: set[str] = field(default_factory=set)
    token_requests: int = 0
    saved_links: list[dict[str, Any]] = field(default_factory=list)
    faults: deque[Fault] = field(default_factory=deque)
    object_write_count: int = 0
    in_flight: dict[str, int] = field(default_factory=dict)
    max_concurrent_per_object: int = 0
    _bucket: float = 0.0
    _bucket_at: float = 0.0
    port: int = 0

    # --- test hooks -----------------------------------------------------------------------

    def fail_next(self, *faults: Fault) -> None:
        self.faults.extend(faults)

    def revoke_tokens(self) -> None:
        self.tokens.clear()

    def object_writes(self, object_id: str) -> list[Write]:
        return [
            w
            for w in self.writes
            if f"Object/{object_id}" in w.path
            or (
                w.path.endswith("Object")
                and isinstance(w.body, dict)
                and w.body.get("id") == object_id
            )
        ]

    def class_writes(self) -> list[Write]:
        return [w for w in self.writes if "Class" in w.path]

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/token"

    # --- the app --------------------------------------------------------------------------

    def app(self) -> Starlette:
        routes = [
            Route("/token", self.token, methods=["POST"]),
            Route("/gp/m/issuer/keys", self.keys, methods=["GET"]),
            Route("/gp/v/save/{token}", self.save_page, methods=["GET"]),
            Route(
                "/walletobjects/v1/{resource}",
                self.collection,
                methods=["POST", "GET"],
            ),
            Route(
                "/walletobjects/v1/{resource}/{resource_id}",
                self.item,
                methods=["GET", "PATCH", "PUT"],
            ),
            Route(
                "/walletobjects/v1/{resource}/{resource_id}/addMessage",
                self.add_message,
                methods=["POST"],
            ),
        ]
        return Starlette(routes=routes)

    async def keys(self, _request: Request) -> Response:
        return JSONResponse(self.keys_document)

    async def token(self, request: Request) -> Response:
        self.token_requests += 1
        form = await request.form()
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        try:
            claims = jwt.decode(
                str(form.get("assertion", "")),
                self.public_key,
                algorithms=["RS256"],
                audience=self.token_url,
                options={"require": ["iss", "aud", "iat", "exp"]},
            )
        except jwt.PyJWTError:
            return JSONResponse(
                {"error": "invalid_grant", "error_description": "Invalid JWT Signature."},
                status_code=400,
            )
        now = time.time()
        if (
            claims["iss"] != self.client_email
            or SCOPE not in str(claims.get("scope", "")).split()
            or not claims["iat"] - 60 <= now <= claims["exp"]
            or claims["exp"] - claims["iat"] > 3600
        ):
            return JSONResponse(
                {
                    "error": "invalid_grant",
                    "error_description": "Invalid JWT: Token must be a short-lived token and "
                    "in a reasonable timeframe.",
                },
                status_code=400,
            )
        token = "fake-" + secrets.token_urlsafe(16)
        self.tokens.add(token)
        return JSONResponse({"access_token": token, "expires_in": 3600, "token_type": "Bearer"})

    async def _guard(self, request: Request) -> Response | None:
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.tokens:
            return google_error(401, "Request had invalid authentication credentials.", "authError")
        if self.rate_per_second > 0:
            now = time.monotonic()
            self._bucket = min(
                self.rate_per_second,
                self._bucket + (now - self._bucket_at) * self.rate_per_second,
            )
            self._bucket_at = now
            if self._bucket < 1:
                return google_error(
                    self.rate_limit_status, "Rate limit exceeded.", "rateLimitExceeded"
                )
            self._bucket -= 1
        if self.faults:
            fault = self.faults.popleft()
            if fault.status is None:
                await asyncio.sleep(fault.seconds)
                return google_error(504, "Deadline exceeded.", "timeout")
            return google_error(fault.status, "Injected fault.", fault.reason)
        return None

    def _split(self, resource: str) -> tuple[str, str] | None:
        for suffix in ("Class", "Object"):
            if resource.endswith(suffix) and resource[: -len(suffix)] in TYPES:
                return resource[: -len(suffix)], suffix
        return None

    def _check_id(self, resource_id: Any) -> Response | None:
        match = _ID.fullmatch(resource_id) if isinstance(resource_id, str) else None
        if match is None:
            return google_error(400, f"Invalid resource ID: {resource_id}", "invalidResource")
        if match.group(1) != self.issuer_id:
            return google_error(403, "Permission denied.", "permissionDenied")
        return None

    async def collection(self, request: Request) -> Response:
        if (denied := await self._guard(request)) is not None:
            return denied
        split = self._split(request.path_params["resource"])
        if split is None:
            return google_error(404, "Not found.", "notFound")
        kind, what = split
        store = self.classes if what == "Class" else self.objects
        if request.method == "GET":
            key = "issuerId" if what == "Class" else "classId"
            wanted = request.query_params.get(key, "")
            if what == "Class" and wanted != self.issuer_id:
                return google_error(403, "Permission denied.", "permissionDenied")
            items = [
                v
                for k, v in store.items()
                if self.kinds[k] == kind
                and (k.startswith(wanted + ".") if what == "Class" else v.get("classId") == wanted)
            ]
            return JSONResponse({"resources": items, "pagination": {"resultsPerPage": len(items)}})
        body = await request.json()
        self._record(request, body)
        resource_id = body.get("id")
        if (bad := self._check_id(resource_id)) is not None:
            return bad
        if resource_id in store:
            noun = "Class" if what == "Class" else "Object"
            return google_error(
                409, f"Wallet Object {noun} {resource_id} already exists.", "duplicate"
            )
        if what == "Class" and (bad_status := self._review_status_problem(body)) is not None:
            return bad_status
        _upper_enums(body)
        problem = self._problem(kind, what, body)
        if problem is not None:
            return problem
        if what == "Class":
            if body.get("reviewStatus") == "UNDER_REVIEW":
                body["reviewStatus"] = "APPROVED"
        else:
            body["hasUsers"] = False
            if (quota := self._count_notification(resource_id, body)) is not None:
                return quota
        store[resource_id] = body
        self.kinds[resource_id] = kind
        return JSONResponse(self._view(kind, what, body))

    @staticmethod
    def _review_status_problem(body: Any) -> Response | None:
        """Only DRAFT or UNDER_REVIEW may be sent (in any write of a class)."""
        status = body.get("reviewStatus") if isinstance(body, dict) else None
        if isinstance(status, str) and not status.isupper():
            status = re.sub(r"(?<!^)(?=[A-Z])", "_", status).upper()
        if status not in (None, "UNDER_REVIEW", "DRAFT"):
            return google_error(400, f"Invalid reviewStatus {status}", "invalid")
        return None

    def _problem(self, kind: str, what: str, body: dict[str, Any]) -> Response | None:
        required = CLASS_REQUIRED[kind] if what == "Class" else OBJECT_REQUIRED[kind]
        for key in required:
            if body.get(key) in (None, "", [], {}):
                return google_error(400, f"Missing required field: {key}", "required")
        if what == "Object":
            class_id = body["classId"]
            parent = self.classes.get(class_id)
            if parent is None:
                return google_error(404, f"Wallet Object Class {class_id} not found.", "notFound")
            if self.kinds[class_id] != kind:
                return google_error(400, "Object and class types differ.", "invalid")
            if parent.get("reviewStatus") == "DRAFT":
                return google_error(400, f"Class {class_id} is a draft.", "invalid")
        return None

    def _count_notification(self, object_id: str, body: dict[str, Any]) -> Response | None:
        notify = body.pop("notifyPreference", None) == "NOTIFY_ON_UPDATE"
        notify = notify or any(
            isinstance(m, dict) and m.get("messageType") == "TEXT_AND_NOTIFY"
            for m in body.get("messages") or ()
        )
        if not notify:
            return None
        now = time.time()
        recent = [t for oid, t in self.notifications if oid == object_id and now - t < 86_400]
        if len(recent) >= 3:
            return google_error(
                403,
                f"Quota exceeded for issuer {self.issuer_id} when adding TEXT_AND_NOTIFY "
                f"message to object {object_id}.",
                "quotaExceeded",
            )
        self.notifications.append((object_id, now))
        return None

    def _view(self, kind: str, what: str, body: dict[str, Any]) -> dict[str, Any]:
        view = copy.deepcopy(body)
        if what == "Object" and kind != "generic":
            view["classReference"] = copy.deepcopy(self.classes.get(body["classId"], {}))
        return view

    def _record(self, request: Request, body: Any) -> None:
        self.writes.append(Write(request.method, request.url.path, body, time.time()))
        if "Object" in request.url.path:
            self.object_write_count += 1

    async def item(self, request: Request) -> Response:
        if (denied := await self._guard(request)) is not None:
            return denied
        split = self._split(request.path_params["resource"])
        resource_id = request.path_params["resource_id"]
        if split is None:
            return google_error(404, "Not found.", "notFound")
        kind, what = split
        store = self.classes if what == "Class" else self.objects
        current = store.get(resource_id)
        if request.method == "GET":
            if current is None or self.kinds[resource_id] != kind:
                return google_error(404, f"Wallet Object {resource_id} not found.", "notFound")
            return JSONResponse(self._view(kind, what, current))
        self.in_flight[resource_id] = self.in_flight.get(resource_id, 0) + 1
        self.max_concurrent_per_object = max(
            self.max_concurrent_per_object, self.in_flight[resource_id]
        )
        try:
            body = await request.json()
            self._record(request, body)
            await asyncio.sleep(0)
            if current is None or self.kinds[resource_id] != kind:
                return google_error(404, f"Wallet Object {resource_id} not found.", "notFound")
            if what == "Class" and (bad_status := self._review_status_problem(body)) is not None:
                return bad_status
            updated = merge(current, body) if request.method == "PATCH" else dict(body)
            updated["id"] = resource_id
            _upper_enums(updated)
            if what == "Class":
                if (
                    current.get("reviewStatus") != "DRAFT"
                    and updated.get("reviewStatus") == "DRAFT"
                ):
                    return google_error(400, "A class cannot go back to DRAFT.", "invalid")
                if updated.get("reviewStatus") == "UNDER_REVIEW":
                    updated["reviewStatus"] = "APPROVED"
            else:
                updated["hasUsers"] = current.get("hasUsers", False)
            problem = self._problem(kind, what, updated)
            if problem is not None:
                return problem
            if what == "Object" and (quota := self._count_notification(resource_id, updated)):
                return quota
            store[resource_id] = updated
            return JSONResponse(self._view(kind, what, updated))
        finally:
            self.in_flight[resource_id] -= 1

    async def add_message(self, request: Request) -> Response:
        if (denied := await self._guard(request)) is not None:
            return denied
        split = self._split(request.path_params["resource"])
        resource_id = request.path_params["resource_id"]
        if split is None:
            return google_error(404, "Not found.", "notFound")
        kind, what = split
        store = self.classes if what == "Class" else self.objects
        body = await request.json()
        self._record(request, body)
        current = store.get(resource_id)
        if current is None:
            return google_error(404, f"Wallet Object {resource_id} not found.", "notFound")
        message = body.get("message") if isinstance(body, dict) else None
        if not isinstance(message, dict):
            return google_error(400, "message is required.", "required")
        if message.get("messageType") == "TEXT_AND_NOTIFY":
            quota = self._count_notification(resource_id, {"messages": [message]})
            if quota is not None:
                return quota
        current["messages"] = [*(current.get("messages") or []), message][-10:]
        return JSONResponse({"resource": self._view(kind, what, current)})

    async def save_page(self, request: Request) -> Response:
        token = request.path_params["token"]
        if self.strict_save_length and len(token) > 1800:
            return Response("JWT too long", status_code=400)
        try:
            claims = jwt.decode(token, self.public_key, algorithms=["RS256"], audience="google")
        except jwt.PyJWTError as error:
            return Response(f"Invalid JWT: {error}", status_code=400)
        if claims.get("typ") != "savetowallet" or "iat" not in claims:
            return Response("Not a save JWT", status_code=400)
        if claims.get("iss") != self.client_email:
            return Response("Wrong issuer", status_code=400)
        saved = []
        for key, entries in (claims.get("payload") or {}).items():
            for entry in entries:
                object_id = entry.get("id")
                if object_id not in self.objects:
                    if len(entry) <= 2:  # a reference to an object that was never inserted
                        return Response(f"Object {object_id} not found", status_code=404)
                    self.objects[object_id] = dict(entry)
                    self.kinds[object_id] = key.removesuffix("Objects")
                self.objects[object_id]["hasUsers"] = True
                saved.append(object_id)
        self.saved_links.append(claims)
        return JSONResponse({"saved": saved})

    # --- serving ------------------------------------------------------------------------

    async def serve(self, cert_file: Path, key_file: Path) -> uvicorn.Server:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted sockets inherit this. asyncio sets it only on sockets made with proto
        # IPPROTO_TCP, not this one (proto 0): without it uvicorn's body, written after the
        # headers, waited for the client's delayed ACK, 40 ms on every answer.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app(),
            log_level="warning",
            ssl_certfile=str(cert_file),
            ssl_keyfile=str(key_file),
            lifespan="off",
            access_log=False,
            timeout_keep_alive=30,
        )
        server = uvicorn.Server(config)
        self._task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:  # noqa: ASYNC110 - uvicorn has no event to wait on
            await asyncio.sleep(0.01)
        return server


def ssl_context_for(ca_file: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca_file))


async def _main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--certs", type=Path, required=True, help="dir with server.pem/key.pem")
    parser.add_argument("--public-key", type=Path, required=True)
    parser.add_argument("--issuer-id", required=True)
    parser.add_argument("--client-email", required=True)
    args = parser.parse_args()
    from cryptography.hazmat.primitives import serialization

    public_key = serialization.load_pem_public_key(args.public_key.read_bytes())
    assert isinstance(public_key, rsa.RSAPublicKey)
    fake = FakeGoogle(args.issuer_id, public_key, args.client_email)
    await fake.serve(args.certs / "server.pem", args.certs / "key.pem")
    print(f"PORT {fake.port}", flush=True)  # noqa: T201
    last = -1
    while True:
        await asyncio.sleep(0.05)
        if fake.object_write_count != last:
            last = fake.object_write_count
            print(f"COUNT {last} {time.time():.3f}", flush=True)  # noqa: T201


if __name__ == "__main__":
    try:
        asyncio.run(_main())
    except KeyboardInterrupt:
        sys.exit(0)
