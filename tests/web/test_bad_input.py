"""Bad input, admin and device side alike: a 4xx with our JSON error, and nothing changed.

Requests go straight to the ASGI app (as uvicorn would hand them over), so paths can hold
what an HTTP client would normalise away: `..`, `%2F`, `%00`, invalid UTF-8.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.types import ASGIApp, Message

from conftest import ADMIN_TOKEN, PASS_TYPE_ID, TEMPLATE_JSON
from factories import IssuedPass
from passhouse import devmode
from passhouse.bootstrap import Runtime
from passhouse.storage.database import Database
from passhouse.storage.tables import metadata
from passhouse.web.app import create_app

MAX_BYTES = 8192
ADMIN = ((b"authorization", f"Bearer {ADMIN_TOKEN}".encode()),)
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

    def error(self) -> dict[str, Any]:
        assert self.headers.get(b"content-type", b"").startswith(b"application/json"), self
        loaded = json.loads(self.body)
        assert set(loaded) == {"error"}, loaded
        error: dict[str, Any] = loaded["error"]
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
    error = answer.error()
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
segments = st.text(min_size=1, max_size=300).map(lambda text: quote(text, safe=""))


def refusable(body: bytes) -> bool:
    """Bodies that could make a valid request are left out: this sweep is about refusals."""
    try:
        value = json.loads(body)
    except ValueError:
        return True
    if isinstance(value, dict):
        return not {"data", "pushToken", "logs", "pass_json"} & set(value)
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
    target=st.sampled_from(["issue", "change", "register", "log", "template"]),
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
