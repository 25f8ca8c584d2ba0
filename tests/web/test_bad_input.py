"""Bad input, admin and device side alike: a 4xx with our JSON error, and nothing changed.

Requests go straight to the ASGI app (as uvicorn would hand them over), so paths can hold
what an HTTP client would normalise away: `..`, `%2F`, `%00`, invalid UTF-8.
"""

from __future__ import annotations

import base64
import bz2
import io
import json
import struct
import tracemalloc
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from starlette.types import ASGIApp, Message
from structlog.testing import capture_logs
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from conftest import ADMIN_TOKEN, PASS_TYPE_ID, TEMPLATE_JSON
from factories import IssuedPass
from passhouse import devmode
from passhouse.bootstrap import Runtime
from passhouse.pkpass.json_input import MAX_DEPTH_CAP
from passhouse.settings import Settings
from passhouse.storage.database import Database
from passhouse.storage.tables import metadata
from passhouse.web.app import create_app

MAX_BYTES = 8192
# The admin API reads the bearer token, the PassNinja-compatible API (/v1) the X-API-KEY.
ADMIN = (
    (b"authorization", f"Bearer {ADMIN_TOKEN}".encode()),
    (b"x-api-key", ADMIN_TOKEN.encode()),
)
JSON = ((b"content-type", b"application/json"),)
FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[bytes, bytes]
    body: bytes

    def error(self, *, status_in_body: bool = False) -> dict[str, Any]:
        assert self.headers.get(b"content-type", b"").startswith(b"application/json"), self
        loaded = json.loads(self.body)
        assert set(loaded) == {"error"}, loaded
        error: dict[str, Any] = loaded["error"]
        if status_in_body:
            assert error.pop("status_code") == self.status
        assert set(error) == {"code", "message"}
        assert isinstance(error["code"], str)
        assert isinstance(error["message"], str)
        assert error["message"]
        return error


async def call(
    app: ASGIApp,
    method: str,
    raw_path: bytes,
    *,
    headers: Sequence[tuple[bytes, bytes]] = (),
    body: bytes = b"",
    chunks: Sequence[bytes] | None = None,
) -> Answer:
    """One request, given to the app the way uvicorn does (percent-decoded path, raw bytes)."""
    target, _, query = raw_path.partition(b"?")
    path = unquote(target.decode("ascii"))  # what uvicorn does
    parts = list(chunks) if chunks is not None else [body]
    sized = chunks is None and (body or method in ("POST", "PUT", "PATCH"))
    all_headers = [(b"host", b"passes.example.test"), *headers]
    if sized:
        all_headers.append((b"content-length", str(len(body)).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "https",
        "path": path,
        "raw_path": target,
        "root_path": "",
        "query_string": query,
        "headers": all_headers,
        "client": ("203.0.113.9", 50000),
        "server": ("passes.example.test", 443),
        "state": {},
    }
    pending = [
        {"type": "http.request", "body": part, "more_body": i < len(parts) - 1}
        for i, part in enumerate(parts)
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        if pending:
            return pending.pop(0)
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    content = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return Answer(start["status"], dict(start["headers"]), content)


def template_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("pass.json", json.dumps(TEMPLATE_JSON))
        archive.writestr("icon.png", devmode.solid_png(29, 29))
    return buffer.getvalue()


async def row_counts(database: Database) -> dict[str, int]:
    async with database.reader() as conn:
        return {
            table.name: int(await conn.scalar(sa.select(sa.func.count()).select_from(table)) or 0)
            for table in metadata.sorted_tables
        }


@pytest.fixture
def small_app(runtime: Runtime) -> ASGIApp:
    """The app with a small request size limit, so oversized bodies stay cheap to send."""
    settings = runtime.settings.model_copy(update={"max_request_bytes": MAX_BYTES})
    return create_app(Runtime(settings=settings, database=runtime.database, sealer=runtime.sealer))


@pytest.fixture
async def held_pass(small_app: ASGIApp, wallet_pass: IssuedPass) -> IssuedPass:
    """A pass already on a device, so every table the bad requests could touch has rows."""
    answer = await call(
        small_app,
        "POST",
        wallet_pass.registration_path("device-0001").encode(),
        headers=[(b"authorization", f"ApplePass {wallet_pass.authentication_token}".encode())],
        body=b'{"pushToken": "token-1"}',
    )
    assert answer.status == 201
    return wallet_pass


async def assert_refused(
    app: ASGIApp, database: Database, method: str, raw_path: bytes, **request: Any
) -> dict[str, Any]:
    before = await row_counts(database)

    answer = await call(app, method, raw_path, **request)

    assert 400 <= answer.status < 500, (method, raw_path, answer.status, answer.body[:500])
    error = answer.error(status_in_body=raw_path.startswith(b"/v1/"))
    assert await row_counts(database) == before
    return error


# --- malformed and mistyped JSON --------------------------------------------------------

PASSES = b"/api/v1/passes"
BAD_JSON = [
    b"",
    b"{",
    b'{"template": "card",}',
    b"\xff\xfe\x00{",
    b'{"template": "card"}{"x": 1}',
    b"[" * 3000 + b"]" * 3000,  # deeper than the JSON reader recurses
    b"null",
]
WRONG_TYPES: list[Any] = [
    [],
    "card",
    42,
    {"template": 1},
    {"template": None},
    {"template": ["card"]},
    {"template": "card", "data": []},
    {"template": "card", "data": "name=Ada"},
    {"template": "card", "serial_number": 5},
    {"template": "card", "serial_number": {"a": 1}},
    {"template": "card", "data": {"name": "Ada", "balance": 1}, "extra": True},
    {"template": "", "data": {}},
]


# Each table is one test that loops over its rows: the arranged database is the slow part.


async def test_malformed_json_to_the_admin_api_is_4xx(
    small_app: ASGIApp, database: Database, held_pass: IssuedPass
) -> None:
    for body in BAD_JSON:
        error = await assert_refused(
            small_app, database, "POST", PASSES, headers=ADMIN + JSON, body=body
        )

        assert error["code"] in {"invalid_input", "bad_request"}, body[:50]


async def test_wrong_json_types_when_issuing_are_422(
    small_app: ASGIApp, database: Database, held_pass: IssuedPass
) -> None:
    for value in WRONG_TYPES:
        body = json.dumps(value).encode()

        error = await assert_refused(
            small_app, database, "POST", PASSES, headers=ADMIN + JSON, body=body
        )

        assert error["code"] == "invalid_input", value


@pytest.mark.parametrize(
    "body",
    [
        b'{"template": "card", "data": {"name": "Ada", "balance": NaN}}',
        b'{"template": "card", "data": {"name": "Ada", "balance": Infinity}}',
        b'{"template": "card", "data": {"name": "Ada", "balance": 1e999}}',
        b'{"template": "card\\u0000", "data": {"name": "Ada", "balance": 1}}',
        b'{"template": "card", "serial_number": "a\\u0000b", "data": {"name": "Ada"}}',
        b'{"template": "card", "data": {"name": "Ada\\u0000", "balance": 1}}',
        b'{"template": "card", "data": {"name": "\\ud800", "balance": 1}}',
    ],
)
async def test_values_no_database_or_json_can_hold_are_refused(
    small_app: ASGIApp, database: Database, held_pass: IssuedPass, body: bytes
) -> None:
    await assert_refused(small_app, database, "POST", PASSES, headers=ADMIN + JSON, body=body)


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("PATCH", b"", b"{"),
        ("PATCH", b"", b"[]"),
        ("PATCH", b"", b"{}"),
        ("PATCH", b"", b'{"data": null}'),
        ("PATCH", b"", b'{"data": [1, 2]}'),
        ("PATCH", b"", b'{"data": {"balance": NaN}}'),
        ("PUT", b"", b'{"data": "x"}'),
        ("PUT", b"", b'{"data": {"name": "Ada"}, "voided": false}'),
    ],
)
async def test_bad_bodies_when_changing_a_pass_are_4xx(
    small_app: ASGIApp,
    database: Database,
    held_pass: IssuedPass,
    method: str,
    suffix: bytes,
    body: bytes,
) -> None:
    path = f"/api/v1/passes/{held_pass.pass_type_id}/{held_pass.serial_number}".encode()

    await assert_refused(
        small_app, database, method, path + suffix, headers=ADMIN + JSON, body=body
    )


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", b"/api/v1/pass-types", b'{"certificate_pem": ["x"], "private_key_pem": "y"}'),
        ("POST", b"/api/v1/pass-types", b'{"certificate_pem": "\\u0000", "private_key_pem": "y"}'),
        ("POST", b"/api/v1/pass-types", b'{"p12_base64": "////", "p12_password": 3}'),
        ("POST", b"/api/v1/templates", b'{"name": "x", "pass_type_id": "p", "pass_json": []}'),
        ("POST", b"/api/v1/templates", b'{"name": "x", "pass_type_id": "p", "pass_json": {}, '
         b'"assets": {"icon.png": 1}}'),
        ("PUT", b"/api/v1/templates/card", b'{"pass_json": "x"}'),
        ("PUT", b"/api/v1/templates/card", b'{"pass_json": {}, "assets": {"../x": "AA=="}}'),
    ],
)  # fmt: skip
async def test_bad_bodies_for_pass_types_and_templates_are_4xx(
    small_app: ASGIApp, database: Database, held_pass: IssuedPass, method: str, path: bytes,
    body: bytes,
) -> None:  # fmt: skip
    await assert_refused(small_app, database, method, path, headers=ADMIN + JSON, body=body)


async def test_a_json_body_sent_as_text_plain_is_4xx(
    small_app: ASGIApp, database: Database, held_pass: IssuedPass
) -> None:
    body = b'{"template": "card", "data": {"name": "Ada", "balance": 1}}'

    await assert_refused(
        small_app,
        database,
        "POST",
        PASSES,
        headers=[*ADMIN, (b"content-type", b"text/plain")],
        body=body,
    )


async def test_a_template_upload_without_a_file_is_422(
    small_app: ASGIApp, database: Database, held_pass: IssuedPass
) -> None:
    body = b'--b\r\nContent-Disposition: form-data; name="name"\r\n\r\nzipped\r\n--b--\r\n'
    headers = [*ADMIN, (b"content-type", b"multipart/form-data; boundary=b")]

    await assert_refused(
        small_app, database, "POST", b"/api/v1/templates/upload", headers=headers, body=body
    )


# --- device endpoints -------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [b"", b"{", b"[]", b'{"pushToken": 5}', b'{"pushToken": ""}', b'{"pushToken": "  "}', b"\xff"],
)
async def test_bad_registration_bodies_are_400(
    small_app: ASGIApp, database: Database, held_pass: IssuedPass, body: bytes
) -> None:
    auth = ((b"authorization", f"ApplePass {held_pass.authentication_token}".encode()),)
    path = held_pass.registration_path("device-0002").encode()

    error = await assert_refused(small_app, database, "POST", path, headers=auth + JSON, body=body)

    assert error["code"] == "bad_request"


@pytest.mark.parametrize(
    "body", [b"{", b'{"logs": "x"}', b'{"logs": [1, 2]}', b"42", b'{"logs": [null]}']
)
async def test_bad_device_log_bodies_are_400(
    small_app: ASGIApp, database: Database, held_pass: IssuedPass, body: bytes
) -> None:
    await assert_refused(small_app, database, "POST", b"/passkit/v1/log", headers=JSON, body=body)


@pytest.mark.parametrize(
    ("kind", "body"),
    [("register", b'{"pushToken": "abc\\u0000def"}'), ("log", b'{"logs": ["a\\u0000b"]}')],
)
async def test_nul_characters_from_a_device_are_refused(
    small_app: ASGIApp, database: Database, held_pass: IssuedPass, kind: str, body: bytes
) -> None:
    auth = ((b"authorization", f"ApplePass {held_pass.authentication_token}".encode()),)
    path = held_pass.registration_path("device-0003") if kind == "register" else "/passkit/v1/log"

    await assert_refused(small_app, database, "POST", path.encode(), headers=auth + JSON, body=body)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", b"/api/v1/templates/%C2%B2", b""),
        ("GET", b"/api/v1/templates/99999999999999999999999", b""),
        ("GET", b"/api/v1/passes?template=%C2%B2", b""),
        ("POST", PASSES, b'{"template": "99999999999999999999999", "data": {}}'),
    ],
)
async def test_template_refs_that_look_like_huge_or_odd_numbers_are_404(
    small_app: ASGIApp,
    database: Database,
    held_pass: IssuedPass,
    method: str,
    path: bytes,
    body: bytes,
) -> None:
    error = await assert_refused(small_app, database, method, path, headers=ADMIN + JSON, body=body)

    assert error["code"] == "not_found"


# --- sizes ------------------------------------------------------------------------------

SIZED_TARGETS = [
    ("POST", PASSES),
    ("POST", b"/api/v1/templates"),
    ("POST", b"/api/v1/templates/upload"),
    ("POST", b"/api/v1/pass-types"),
    ("PATCH", f"/api/v1/passes/{PASS_TYPE_ID}/x".encode()),
    ("POST", b"/passkit/v1/log"),
    ("POST", b"<registration of the held pass>"),
]


@pytest.mark.parametrize(("method", "path"), SIZED_TARGETS)
async def test_a_body_over_the_limit_is_413_by_its_content_length(
    small_app: ASGIApp, database: Database, held_pass: IssuedPass, method: str, path: bytes
) -> None:
    body = b'{"template": "' + b"x" * MAX_BYTES + b'"}'

    error = await assert_refused(small_app, database, method, path, headers=ADMIN + JSON, body=body)

    assert error["code"] == "payload_too_large"


@pytest.mark.parametrize(("method", "path"), SIZED_TARGETS)
async def test_a_chunked_body_that_grows_over_the_limit_is_413(
    small_app: ASGIApp, database: Database, held_pass: IssuedPass, method: str, path: bytes
) -> None:
    chunks = [b'{"template": "', *[b"x" * 1024] * 8, b'"}']
    headers = [*ADMIN, *JSON]
    if path.startswith(b"<"):
        path = held_pass.registration_path("device-0002").encode()
        headers = [(b"authorization", f"ApplePass {held_pass.authentication_token}".encode())]
    elif path.endswith(b"/upload"):
        headers = [*ADMIN, (b"content-type", b"multipart/form-data; boundary=b")]
        part = b'--b\r\nContent-Disposition: form-data; name="file"; filename="t.zip"\r\n\r\n'
        chunks = [part, *chunks[1:]]

    error = await assert_refused(small_app, database, method, path, headers=headers, chunks=chunks)

    assert error["code"] == "payload_too_large"


@pytest.mark.parametrize("length", [b"abc", b"-1", b"1e3", b"99999999999999999999999"])
async def test_an_unreadable_content_length_is_4xx(
    small_app: ASGIApp, database: Database, held_pass: IssuedPass, length: bytes
) -> None:
    headers = [*ADMIN, *JSON, (b"content-length", length)]

    await assert_refused(small_app, database, "POST", PASSES, headers=headers, chunks=[b"{}"])


# --- paths, methods, query strings ------------------------------------------------------

ODD_SEGMENTS = [
    "..",
    ".",
    "%2e%2e",
    "a%2Fb",
    "%2F",
    "%00",
    "a%00b",
    "%ff%fe",
    "%C3%A9t%C3%A9",
    quote("🎫"),
    "x" * 1000,
    quote("é" * 600),
    "%20",
    "%",
    "%zz",
    "%2f",
    "a%2F..%2F..%2Fb",
]
PATH_SHAPES = [
    ("GET", "/api/v1/passes/{}/x"),
    ("GET", "/api/v1/passes/" + PASS_TYPE_ID + "/{}"),
    ("GET", "/api/v1/passes/" + PASS_TYPE_ID + "/{}/pkpass"),
    ("GET", "/api/v1/passes/" + PASS_TYPE_ID + "/{}/registrations"),
    ("DELETE", "/api/v1/passes/" + PASS_TYPE_ID + "/{}"),
    ("GET", "/api/v1/pass-types/{}"),
    ("DELETE", "/api/v1/pass-types/{}"),
    ("GET", "/api/v1/templates/{}"),
    ("DELETE", "/api/v1/templates/{}"),
    ("GET", "/passkit/v1/passes/" + PASS_TYPE_ID + "/{}"),
    ("DELETE", "/passkit/v1/devices/d/registrations/" + PASS_TYPE_ID + "/{}"),
    ("GET", "/p/{}"),
    ("GET", "/p/{}/pass.pkpass"),
    ("GET", "/v1/passtypes/keys/{}"),
    ("GET", "/v1/passes/{}"),
    ("GET", "/v1/passes/{}/x"),
    ("GET", "/v1/passes/card/{}"),
    ("DELETE", "/v1/passes/card/{}"),
    ("GET", "/v1/pass_templates/{}"),
]


@pytest.mark.parametrize(("method", "shape"), PATH_SHAPES)
async def test_odd_path_segments_are_4xx(
    small_app: ASGIApp, database: Database, held_pass: IssuedPass, method: str, shape: str
) -> None:
    # One test per route, looping over the segments: the setup is the slow part.
    for segment in ODD_SEGMENTS:
        path = shape.format(segment).encode()

        await assert_refused(small_app, database, method, path, headers=ADMIN)


PASS_LIST_QUERIES = [
    "template=%00",
    "cursor=%00",
    "cursor=abc",
    "cursor=%C2%B2",
    "cursor=99999999999999999999999",
    "limit=99999999999999999999999",
    "limit=-1",
    "limit=1.5",
    "limit=%00",
    "template=" + "x" * 1000,
]
DEVICE_LOG_QUERIES = [
    "before=abc",
    "before=99999999999999999999999",
    "before=-5",
    "limit=0",
    "limit=%00",
]
WRONG_METHODS = [
    ("PATCH", "/api/v1/pass-types"),
    ("PUT", "/api/v1/passes"),
    ("POST", "/api/v1/passes/" + PASS_TYPE_ID + "/x"),
    ("POST", "/api/v1/device-logs"),
    ("DELETE", "/healthz"),
    ("POST", "/metrics"),
    ("GET", "/passkit/v1/log"),
    ("PUT", "/passkit/v1/devices/d/registrations/" + PASS_TYPE_ID + "/x"),
    ("POST", "/p/abc"),
    ("PUT", "/v1/passes"),
    ("POST", "/v1/pass_templates"),
]
UNKNOWN_ROUTES = [
    "/",
    "/nope",
    "/api/v1",
    "/api/v1/nope",
    "/api/v2/passes",
    "/passkit/v2/log",
    "/passkit/v1/passes/" + PASS_TYPE_ID,
    "/api/v1/passes/" + PASS_TYPE_ID + "/x/y/z",
    "/v1/nope",
    "/v1/passes/card/x/y",
]
ODD_AUTHORIZATIONS = [
    b"Bearer \x00",
    b"Bearer \xff\xfe",
    b"Bearer " + b"k" * 10_000,
    b"\xe9",
    b"Bearer  " + ADMIN_TOKEN.encode(),
]


async def test_odd_query_strings_are_4xx(
    small_app: ASGIApp, database: Database, held_pass: IssuedPass
) -> None:
    paths = [b"/api/v1/passes?" + query.encode() for query in PASS_LIST_QUERIES]
    paths += [b"/api/v1/device-logs?" + query.encode() for query in DEVICE_LOG_QUERIES]

    for path in paths:
        await assert_refused(small_app, database, "GET", path, headers=ADMIN)


async def test_a_wrong_method_is_405(
    small_app: ASGIApp, database: Database, held_pass: IssuedPass
) -> None:
    for method, path in WRONG_METHODS:
        error = await assert_refused(small_app, database, method, path.encode(), headers=ADMIN)

        assert error["code"] == "method_not_allowed", (method, path)


async def test_an_unknown_route_is_404(
    small_app: ASGIApp, database: Database, held_pass: IssuedPass
) -> None:
    for path in UNKNOWN_ROUTES:
        error = await assert_refused(small_app, database, "GET", path.encode(), headers=ADMIN)

        assert error["code"] == "not_found", path


async def test_odd_authorization_headers_are_401(
    small_app: ASGIApp, database: Database, held_pass: IssuedPass
) -> None:
    for authorization in ODD_AUTHORIZATIONS:
        headers = [(b"authorization", authorization)]

        error = await assert_refused(
            small_app, database, "GET", b"/api/v1/pass-types", headers=headers
        )

        assert error["code"] == "unauthorized", authorization[:20]


# --- generated input --------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
# Not the names of what exists: a template is found by its name ("card") or its id (1, 2, ...).
segments = (
    st.text(min_size=1, max_size=300)
    .map(lambda text: quote(text, safe=""))
    .filter(lambda segment: not segment.isdigit() and segment not in {"card", PASS_TYPE_ID})
)


def refusable(body: bytes) -> bool:
    """Bodies that could make a valid request are left out: this sweep is about refusals."""
    try:
        value = json.loads(body)
    except ValueError:
        return True
    if isinstance(value, dict):
        return not {"data", "pushToken", "logs", "pass_json", "pass"} & set(value)
    # A list of strings is a valid device log.
    return not (isinstance(value, list) and all(isinstance(item, str) for item in value))


@FUZZ
@given(
    shape=st.sampled_from(PATH_SHAPES),
    segment=segments,
)
async def test_generated_path_segments_are_4xx(
    small_app: ASGIApp,
    database: Database,
    held_pass: IssuedPass,
    shape: tuple[str, str],
    segment: str,
) -> None:
    method, template = shape

    await assert_refused(
        small_app, database, method, template.format(segment).encode(), headers=ADMIN
    )


@FUZZ
@given(
    target=st.sampled_from(["issue", "change", "register", "log", "template", "passninja"]),
    body=st.one_of(
        json_values.map(lambda value: json.dumps(value).encode()),
        st.binary(max_size=200),
    ).filter(refusable),
)
async def test_generated_bodies_are_4xx(
    small_app: ASGIApp,
    database: Database,
    held_pass: IssuedPass,
    target: str,
    body: bytes,
) -> None:
    device_auth = (b"authorization", f"ApplePass {held_pass.authentication_token}".encode())
    method, path, headers = {
        "issue": ("POST", PASSES, ADMIN + JSON),
        "change": (
            "PATCH",
            f"/api/v1/passes/{held_pass.pass_type_id}/{held_pass.serial_number}".encode(),
            ADMIN + JSON,
        ),
        "register": (
            "POST",
            held_pass.registration_path("device-9").encode(),
            (device_auth, *JSON),
        ),
        "log": ("POST", b"/passkit/v1/log", JSON),
        "template": ("PUT", b"/api/v1/templates/card", ADMIN + JSON),
        "passninja": ("POST", b"/v1/passes", ADMIN + JSON),
    }[target]

    await assert_refused(small_app, database, method, path, headers=headers, body=body)


@pytest.mark.parametrize(
    ("name", "pass_type_id"),
    [("a\x00b", PASS_TYPE_ID), ("zipped", "pass.\x00"), ("", PASS_TYPE_ID), ("x" * 201, "p")],
)
async def test_odd_form_fields_in_a_template_upload_are_4xx(
    small_app: ASGIApp, database: Database, held_pass: IssuedPass, name: str, pass_type_id: str
) -> None:
    fields = {"name": name, "pass_type_id": pass_type_id}
    parts = [
        f'--b\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode()
        for key, value in fields.items()
    ]
    file_part = b'--b\r\nContent-Disposition: form-data; name="file"; filename="t.zip"\r\n\r\n'
    body = b"".join(parts) + file_part + template_zip() + b"\r\n--b--\r\n"
    headers = [*ADMIN, (b"content-type", b"multipart/form-data; boundary=b")]

    await assert_refused(
        small_app, database, "POST", b"/api/v1/templates/upload", headers=headers, body=body
    )


# --- hostile input: nesting, huge numbers, zip bombs, long addresses ----------------------

LIMIT = 32  # PASSHOUSE_JSON_MAX_DEPTH's default
HOSTILE_DEPTHS = [LIMIT + 1, 252, 253, 500, 989, 990, 5_000]
HUGE = "9" * 5_000


def nested(levels: int) -> str:
    """JSON text of objects `levels` deep: {"a": {"a": ... 1}}."""
    return '{"a": ' * levels + "1" + "}" * levels


def admin_bodies(data: str) -> list[tuple[str, bytes, bytes]]:
    """Every admin JSON body that carries free-form JSON, with `data` as that JSON."""
    serial = f"/api/v1/passes/{PASS_TYPE_ID}/{{serial}}"
    return [
        ("POST", PASSES, f'{{"template": "card", "data": {{"x": {data}}}}}'.encode()),
        ("PATCH", serial.encode(), f'{{"data": {{"name": {data}}}}}'.encode()),
        ("PUT", serial.encode(), f'{{"data": {{"name": {data}}}}}'.encode()),
        ("POST", b"/api/v1/templates", (
            f'{{"name": "deep", "pass_type_id": "{PASS_TYPE_ID}", '
            f'"pass_json": {{"userInfo": {data}}}}}'
        ).encode()),
        ("PUT", b"/api/v1/templates/card", f'{{"pass_json": {{"userInfo": {data}}}}}'.encode()),
        ("POST", b"/api/v1/pass-types", f'{{"certificate_pem": {data}}}'.encode()),
    ]  # fmt: skip


@pytest.fixture
def roomy_app(runtime: Runtime) -> ASGIApp:
    """The app with the default request size limit, for bodies of many levels or digits."""
    return create_app(runtime)


async def test_json_nested_past_the_limit_is_400_on_the_admin_api_and_reads_still_work(
    roomy_app: ASGIApp, database: Database, held_pass: IssuedPass
) -> None:
    for depth in HOSTILE_DEPTHS:
        for method, path, body in admin_bodies(nested(depth)):
            path = path.replace(b"{serial}", held_pass.serial_number.encode())

            error = await assert_refused(
                roomy_app, database, method, path, headers=ADMIN + JSON, body=body
            )

            assert error["code"] == "bad_request", (method, path, depth)
            assert f"the limit is {LIMIT} levels" in error["message"], error

    for path in (PASSES, b"/api/v1/templates", b"/api/v1/pass-types"):
        assert (await call(roomy_app, "GET", path, headers=ADMIN)).status == 200, path


async def test_integers_of_thousands_of_digits_are_400_in_our_words_on_the_admin_api(
    roomy_app: ASGIApp, database: Database, held_pass: IssuedPass
) -> None:
    for method, path, body in admin_bodies(HUGE):
        path = path.replace(b"{serial}", held_pass.serial_number.encode())

        error = await assert_refused(
            roomy_app, database, method, path, headers=ADMIN + JSON, body=body
        )

        assert "more than 100 digits" in error["message"], (method, path, error)
        assert "int_max_str_digits" not in error["message"]


DEVICE_BODIES = [
    ("register", "pushToken", nested(990), "the limit is 32"),
    ("register", "pushToken", nested(LIMIT + 1), "the limit is 32"),
    ("register", "pushToken", HUGE, "more than 100 digits"),
    ("register", "pushToken", '"a\\ud800b"', "unpaired surrogate"),
    ("log", "logs", nested(990), "the limit is 32"),
    ("log", "logs", f"[{HUGE}]", "more than 100 digits"),
    ("log", "logs", '["a\\udc00"]', "unpaired surrogate"),
    ("personalize", "requiredPersonalizationInfo", nested(990), "the limit is 32"),
    ("personalize", "requiredPersonalizationInfo", f'{{"fullName": {HUGE}}}', "100 digits"),
]


async def test_hostile_json_to_the_device_endpoints_is_400_without_a_traceback(
    roomy_app: ASGIApp, database: Database, held_pass: IssuedPass
) -> None:
    auth = ((b"authorization", f"ApplePass {held_pass.authentication_token}".encode()),)
    paths = {
        "register": held_pass.registration_path("device-0004"),
        "log": "/passkit/v1/log",
        "personalize": held_pass.path + "/personalize",
    }
    for endpoint, key, value, words in DEVICE_BODIES:
        body = f'{{"{key}": {value}}}'.encode()

        with capture_logs() as logs:
            error = await assert_refused(
                roomy_app, database, "POST", paths[endpoint].encode(), headers=auth + JSON,
                body=body,
            )  # fmt: skip

        assert error["code"] == "bad_request", (endpoint, value[:20])
        assert words in error["message"], error
        assert "int_max_str_digits" not in error["message"]
        assert [entry for entry in logs if entry["log_level"] == "error"] == []


async def test_data_nested_to_the_highest_configurable_limit_stays_readable(
    runtime: Runtime, database: Database, pass_type: str
) -> None:
    # The highest PASSHOUSE_JSON_MAX_DEPTH, a template and data each nested to it, and the
    # data placed at the bottom of the template: every read afterwards must still answer.
    settings = runtime.settings.model_copy(update={"json_max_depth": 64})
    app = create_app(Runtime(settings=settings, database=database, sealer=runtime.sealer))
    deep_placeholder = '{"a": ' * 60 + '"{{deep}}"' + "}" * 60
    pass_json = json.dumps(TEMPLATE_JSON)[:-1] + f', "userInfo": {deep_placeholder}}}'
    assets = {"icon.png": base64.b64encode(devmode.solid_png(29, 29)).decode()}
    template = (
        f'{{"name": "deep", "pass_type_id": "{pass_type}", "pass_json": {pass_json}, '
        f'"assets": {json.dumps(assets)}}}'
    )
    issued = (
        f'{{"template": "deep", "data": {{"name": "Ada", "balance": 1, "deep": {nested(62)}}}}}'
    )

    created = await call(
        app, "POST", b"/api/v1/templates", headers=ADMIN + JSON, body=template.encode()
    )
    made = await call(app, "POST", PASSES, headers=ADMIN + JSON, body=issued.encode())
    serial = json.loads(made.body)["serial_number"]
    reads = [
        b"/api/v1/templates",
        b"/api/v1/templates/deep",
        PASSES,
        f"/api/v1/passes/{pass_type}/{serial}".encode(),
        f"/api/v1/passes/{pass_type}/{serial}/pkpass".encode(),
    ]

    assert (created.status, made.status) == (201, 201), (created.body, made.body)
    for path in reads:
        assert (await call(app, "GET", path, headers=ADMIN)).status == 200, path


def test_the_depth_setting_cannot_pass_the_cap_that_keeps_stored_data_readable() -> None:
    assert Settings(_env_file=None, json_max_depth=MAX_DEPTH_CAP).json_max_depth == MAX_DEPTH_CAP
    with pytest.raises(ValidationError):
        Settings(_env_file=None, json_max_depth=MAX_DEPTH_CAP + 1)


def deflated_zeros(mebibytes: int) -> bytes:
    """A raw deflate stream inflating to `mebibytes` MiB of zeros, built in milliseconds.

    After a full flush the compressor starts afresh, so each MiB compresses to the same
    bytes: one is compressed and repeated.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(bytes(1 << 20)) + compressor.flush(zlib.Z_FULL_FLUSH)
    return block * mebibytes + compressor.flush()


@dataclass(frozen=True)
class Entry:
    name: str
    stored: bytes  # the bytes in the zip, already compressed when method is 8
    size: int  # what the headers claim the file inflates to
    crc: int
    method: int = zipfile.ZIP_DEFLATED


def handmade_zip(entries: Sequence[Entry]) -> bytes:
    """A zip written field by field, so its headers can say whatever a test wants."""
    body, directory = b"", b""
    for entry in entries:
        name = entry.name.encode()
        fields = (entry.method, 0, 0x21, entry.crc, len(entry.stored), entry.size, len(name))
        local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, *fields, 0)
        directory += (
            struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, *fields, 0, 0, 0, 0, 0, len(body))
            + name
        )
        body += local + name + entry.stored
    end = struct.pack(
        "<4s4H2LH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(directory), len(body), 0
    )
    return body + directory + end


def honest(name: str, data: bytes) -> Entry:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    stored = compressor.compress(data) + compressor.flush()
    return Entry(name, stored, len(data), zlib.crc32(data))


def template_entries() -> list[Entry]:
    return [
        honest("pass.json", json.dumps(TEMPLATE_JSON).encode()),
        honest("icon.png", devmode.solid_png(29, 29)),
    ]


def upload_body(archive: bytes) -> bytes:
    fields = {"name": "zipped", "pass_type_id": PASS_TYPE_ID}
    parts = [
        f'--b\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode()
        for key, value in fields.items()
    ]
    file_part = b'--b\r\nContent-Disposition: form-data; name="file"; filename="t.zip"\r\n\r\n'
    return b"".join(parts) + file_part + archive + b"\r\n--b--\r\n"


UPLOAD = [*ADMIN, (b"content-type", b"multipart/form-data; boundary=b")]
BOMB_MIB = 256
# (what is wrong, the zip's entries beside pass.json and icon.png, status, words in the error)
HOSTILE_ZIPS: list[tuple[str, list[Entry], int, str]] = [
    (
        "headers claim 100 bytes for 256 MiB",
        [Entry("strip.png", deflated_zeros(BOMB_MIB), 100, 0)],
        422,
        "strip.png is damaged",
    ),
    (
        "headers tell the truth about 256 MiB",
        [Entry("strip.png", deflated_zeros(BOMB_MIB), BOMB_MIB << 20, 0)],
        413,
        "strip.png is larger than 5242880 bytes",
    ),
    (
        "five files of 4.5 MiB: each allowed, together over 20 MiB",
        [honest(f"strip{i}.png", bytes(9 << 19)) for i in range(5)],
        413,
        "larger than 20971520 bytes unpacked",
    ),
    (
        "1,000 files beside pass.json and icon.png",
        [honest(f"en.lproj/f{i}.png", b"x") for i in range(1_000)],
        413,
        "more than 1000 files",
    ),
    (
        "bzip2, which zipfile inflates a whole read at once",
        [Entry("logo.png", bz2.compress(b"x"), 1, zlib.crc32(b"x"), zipfile.ZIP_BZIP2)],
        422,
        "deflate",
    ),
]


@pytest.mark.parametrize(
    ("entries", "status", "needle"),
    [case[1:] for case in HOSTILE_ZIPS],
    ids=[case[0] for case in HOSTILE_ZIPS],
)
async def test_a_hostile_template_zip_is_4xx_within_a_small_memory_budget(
    roomy_app: ASGIApp,
    database: Database,
    held_pass: IssuedPass,
    entries: list[Entry],
    status: int,
    needle: str,
) -> None:
    body = upload_body(handmade_zip([*template_entries(), *entries]))
    before = await row_counts(database)
    tracemalloc.start()

    try:
        answer = await call(
            roomy_app, "POST", b"/api/v1/templates/upload", headers=UPLOAD, body=body
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert answer.status == status, answer.body[:300]
    assert needle in answer.error()["message"], answer.body[:300]
    assert await row_counts(database) == before
    # Python's allocations while answering (the zip's headers claim far more, and the old
    # reader inflated all of it): the budget, not the zip, decides what is held.
    assert peak < 48 << 20, f"{peak >> 20} MiB"


@pytest.mark.parametrize(
    ("pass_json", "needle"),
    [
        (json.dumps(TEMPLATE_JSON)[:-1] + f', "userInfo": {nested(500)}}}', "the limit is 32"),
        (json.dumps(TEMPLATE_JSON)[:-1] + f', "userInfo": {{"n": {HUGE}}}}}', "100 digits"),
    ],
    ids=["nested 500 deep", "a 5,000-digit integer"],
)
async def test_hostile_json_in_a_zipped_pass_json_is_422(
    roomy_app: ASGIApp, database: Database, held_pass: IssuedPass, pass_json: str, needle: str
) -> None:
    archive = handmade_zip([honest("pass.json", pass_json.encode()), *template_entries()[1:]])

    error = await assert_refused(
        roomy_app, database, "POST", b"/api/v1/templates/upload", headers=UPLOAD,
        body=upload_body(archive),
    )  # fmt: skip

    assert needle in error["message"], error
    assert "int_max_str_digits" not in error["message"]


async def test_the_template_limits_are_settings(
    runtime: Runtime, database: Database, held_pass: IssuedPass
) -> None:
    settings = runtime.settings.model_copy(
        update={"template_max_files": 2, "template_max_file_bytes": 2048, "json_max_depth": 4}
    )
    app = create_app(Runtime(settings=settings, database=database, sealer=runtime.sealer))
    deep = json.dumps(TEMPLATE_JSON)[:-1] + f', "userInfo": {nested(4)}}}'
    cases = [
        ([*template_entries(), honest("logo.png", b"x")], "more than 2 files"),
        ([*template_entries()[:1], honest("icon.png", bytes(4096))], "larger than 2048 bytes"),
        ([honest("pass.json", deep.encode()), *template_entries()[1:]], "the limit is 4 levels"),
    ]
    for entries, needle in cases:
        body = upload_body(handmade_zip(entries))

        error = await assert_refused(
            app, database, "POST", b"/api/v1/templates/upload", headers=UPLOAD, body=body
        )

        assert needle in error["message"], error


async def test_a_forwarded_address_longer_than_its_column_is_stored_shortened(
    small_app: ASGIApp, database: Database, held_pass: IssuedPass
) -> None:
    # As `passhouse serve` runs the app: uvicorn takes the client from X-Forwarded-For
    # of a trusted proxy, whatever text it holds.
    behind_proxy = ProxyHeadersMiddleware(small_app, trusted_hosts="203.0.113.9")  # type: ignore[arg-type]
    forwarded = "2001:db8::" + "f" * 300

    answer = await call(
        behind_proxy,  # type: ignore[arg-type]
        "POST",
        b"/passkit/v1/log",
        headers=[*JSON, (b"x-forwarded-for", forwarded.encode())],
        body=b'{"logs": ["hello"]}',
    )
    listed = await call(small_app, "GET", b"/api/v1/device-logs", headers=ADMIN)

    assert answer.status == 200, answer.body
    assert [item["remote_addr"] for item in json.loads(listed.body)["items"]] == [forwarded[:64]]
