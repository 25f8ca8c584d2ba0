"""The admin REST API (/api/v1): pass types, templates, passes, devices' logs, pushes."""

from __future__ import annotations

import asyncio
import base64
import binascii
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import (
    APIRouter,
    Depends,
    File,
    Form,
    Path,
    Query,
    Request,
    Response,
    UploadFile,
    status,
)
from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)
from starlette.convertors import StringConvertor, register_url_convertor

from passhouse import analytics as install_analytics
from passhouse import history, issuing, lifecycle, search
from passhouse.bootstrap import template_limits
from passhouse.errors import InvalidInput, NotFound, TooLarge
from passhouse.issuing import google_wallet
from passhouse.pkpass.bundle import PKPASS_MEDIA_TYPE
from passhouse.pkpass.template import Template
from passhouse.settings import Settings
from passhouse.storage import analytics, device_logs, pass_types, push_jobs, templates
from passhouse.storage import google_wallet as google_storage
from passhouse.storage.pass_versions import Actor
from passhouse.storage.sealing import Sealer
from passhouse.web.admin_schema import (
    NO_NUL,
    PKPASS_RESPONSE,
    DeviceLogList,
    JsonObject,
    NoNulText,
    PassChanged,
    PassList,
    PassTypeList,
    PassTypeSaved,
    PassTypeView,
    PassVersionList,
    PassView,
    PushAttemptList,
    PushStats,
    RegistrationList,
    StatsView,
    TemplateList,
    TemplateReplaced,
    TemplateView,
    error_responses,
)
from passhouse.web.deps import (
    ActorDep,
    BuilderDep,
    LimitedJsonRoute,
    ReadConn,
    RuntimeDep,
    WriteConn,
    require_api_key,
)
from passhouse.web.idempotency import IdempotencyKey, answer_once


class _TemplateRefConvertor(StringConvertor):
    """A template's name or id in a path, except "upload": /templates/upload is the zip
    upload (POST) alone, as the OpenAPI description says, not also the template "upload"."""

    regex = "(?!upload(?:/|$))[^/]+"


register_url_convertor("template_ref", _TemplateRefConvertor())

router = APIRouter(
    prefix="/api/v1",
    # operationId = the handler's name, so generated clients read `issue_pass`, not
    # `issue_pass_api_v1_passes_post`.
    generate_unique_id_function=lambda route: route.name,
    dependencies=[Depends(require_api_key)],
    route_class=LimitedJsonRoute,
)

MAX_ZIP_BYTES = 10 * 1024 * 1024


MAX_ID = 2**63 - 1  # ids are BIGINT; a larger number cannot name a row


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        _check_storable(value, "body")
        return value


def _check_storable(value: Any, where: str) -> None:
    problem = issuing.storable_problem(value, where)
    if problem:
        raise ValueError(problem)


def _iso(seconds: int | None) -> str | None:
    return None if seconds is None else issuing.iso_time(seconds)


# Lists that can grow without bound are pages: `limit` rows after the `cursor` row.
PageLimit = Annotated[
    int, Query(ge=1, le=500, description="Rows in one page (1 to 500)", examples=[100])
]
PageCursor = Annotated[
    str | None,
    Query(
        # At most 18 digits: always below MAX_ID, so the pattern alone says what is valid.
        pattern=r"^[0-9]{1,18}$",
        description="next_cursor of the previous page; leave out for the first page",
        examples=["100"],
    ),
]
# NO_NUL: the edge refuses a URL holding NUL (400), so the description must not allow one.
PassTypeIdPath = Annotated[
    str,
    Path(
        pattern=NO_NUL,
        description="The Pass Type ID (from its certificate)",
        examples=["pass.com.example.loyalty"],
    ),
]
SerialPath = Annotated[
    str, Path(pattern=NO_NUL, description="The pass's serial number", examples=["c0ffee-42"])
]
TemplateRef = Annotated[
    str, Path(pattern=NO_NUL, description="The template's name or id", examples=["loyalty"])
]


def _after_id(cursor: str | None) -> int | None:
    """The id of the row a cursor of ours names (the last row of the previous page)."""
    if cursor is None:
        return None
    # isascii(): str.isdigit() also accepts digits int() cannot read, such as "²".
    if not (cursor.isascii() and cursor.isdigit()) or int(cursor) > MAX_ID:
        raise InvalidInput("cursor is not one this API returned.")
    return int(cursor)


def _next_cursor(last_id: int | None, count: int, limit: int) -> str | None:
    return str(last_id) if count == limit else None


# --- pass types -------------------------------------------------------------------------

BASE64 = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"


class PassTypeIn(_Body):
    """Either certificate_pem and private_key_pem, or p12_base64; the rest is optional."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "certificate_pem": "-----BEGIN CERTIFICATE-----\n...",
                    "private_key_pem": "-----BEGIN PRIVATE KEY-----\n...",
                    "wwdr_pem": "-----BEGIN CERTIFICATE-----\n...",
                },
                {"p12_base64": "MIIK...", "p12_password": "secret"},
            ]
        }
    )

    certificate_pem: str | None = Field(None, description="Pass Type ID certificate (PEM)")
    private_key_pem: str | None = Field(None, description="Its private key (PEM)")
    private_key_password: str | None = Field(None, description="The key's password, if any")
    wwdr_pem: str | None = Field(None, description="Apple WWDR G4 intermediate (PEM)")
    p12_base64: str | None = Field(
        None, pattern=BASE64, description="A .p12 export, base64-encoded"
    )
    p12_password: str | None = Field(None, description="The .p12's password, if any")
    apns_key_p8: str | None = Field(None, description="Optional APNs auth key (.p8) for token auth")
    apns_key_id: str | None = Field(None, description="The .p8 key's id (with apns_key_p8)")
    apns_team_id: str | None = Field(
        None, description="The key's team, if not the certificate's (with apns_key_p8)"
    )


async def _pass_type_view(
    conn: Any, row: sa.Row[Any], sealer: Sealer, warnings: list[str] | None = None
) -> dict[str, Any]:
    view = {
        "pass_type_id": row.pass_type_id,
        "team_id": row.team_id,
        "certificate": issuing.certificate_summary(row.certificate_pem),
        "has_wwdr": row.wwdr_pem is not None,
        "apns_auth": "token" if row.apns_key_id else "certificate",
        "apns_error": (
            {"reason": row.apns_error, "at": _iso((row.apns_error_at or 0) // 1000)}
            if row.apns_error
            else None
        ),
        "expired": row.not_after < issuing.now_seconds(),
        "dev_mode": row.dev_mode,
        "created_at": _iso(row.created_at),
        # Everything that makes (error) or may make (warning) Wallet reject its passes.
        "problems": issuing.pass_type_problems(row, sealer),
        "totals": await install_analytics.totals(
            conn, analytics.Scope(pass_type_id=row.pass_type_id)
        ),
    }
    if warnings is not None:
        view["warnings"] = warnings
    return view


def _credentials(body: PassTypeIn) -> issuing.Credentials:
    def encoded(value: str | None) -> bytes | None:
        return None if value is None else value.encode()

    p12 = None
    if body.p12_base64 is not None:
        try:
            p12 = base64.b64decode(body.p12_base64, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput("p12_base64 is not valid base64.") from None
    return issuing.Credentials(
        certificate_pem=encoded(body.certificate_pem),
        private_key_pem=encoded(body.private_key_pem),
        private_key_password=encoded(body.private_key_password),
        wwdr_pem=encoded(body.wwdr_pem),
        p12=p12,
        p12_password=encoded(body.p12_password),
        apns_key_p8=encoded(body.apns_key_p8),
        apns_key_id=body.apns_key_id,
        apns_team_id=body.apns_team_id,
    )


@router.post(
    "/pass-types",
    status_code=status.HTTP_201_CREATED,
    tags=["pass types"],
    response_model=PassTypeSaved,
    responses={
        200: {
            "model": PassTypeSaved,
            "description": "The pass type existed: its certificate was replaced",
        },
        201: {"description": "The pass type was added"},
        **error_responses(400, 413),
    },
)
async def add_pass_type(
    body: PassTypeIn, conn: WriteConn, runtime: RuntimeDep, response: Response, actor: ActorDep
) -> dict[str, Any]:
    """Add a pass type, or replace its certificate; ids are read from the certificate."""
    pass_type_id, created, warnings = await issuing.save_pass_type(
        conn, runtime.sealer, _credentials(body), actor=actor
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    row = await pass_types.get_pass_type(conn, pass_type_id)
    assert row is not None
    return await _pass_type_view(conn, row, runtime.sealer, warnings)


@router.get(
    "/pass-types", tags=["pass types"], response_model=PassTypeList, responses=error_responses()
)
async def list_pass_types(conn: ReadConn, runtime: RuntimeDep) -> dict[str, Any]:
    """Every pass type, with the problems that would make Wallet reject its passes."""
    rows = await pass_types.list_pass_types(conn)
    return {"items": [await _pass_type_view(conn, row, runtime.sealer) for row in rows]}


@router.get(
    "/pass-types/{pass_type_id}",
    tags=["pass types"],
    response_model=PassTypeView,
    responses=error_responses(404),
)
async def get_pass_type(
    pass_type_id: PassTypeIdPath, conn: ReadConn, runtime: RuntimeDep
) -> dict[str, Any]:
    """One pass type: its certificate, APNs state and problems."""
    row = await pass_types.get_pass_type(conn, pass_type_id)
    if row is None:
        raise NotFound(f"No pass type {pass_type_id!r}.")
    return await _pass_type_view(conn, row, runtime.sealer)


@router.delete(
    "/pass-types/{pass_type_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["pass types"],
    responses={204: {"description": "Deleted"}, **error_responses(404, 409)},
)
async def delete_pass_type(pass_type_id: PassTypeIdPath, conn: WriteConn) -> None:
    """Delete a pass type that no template uses (409 otherwise)."""
    await issuing.delete_pass_type(conn, pass_type_id)


# --- templates --------------------------------------------------------------------------


Assets = Annotated[
    dict[NoNulText, Annotated[str, StringConstraints(pattern=BASE64)]],
    Field(
        description="File name -> base64 bytes (icon.png, logo@2x.png, en.lproj/pass.strings)",
        examples=[{"icon.png": "iVBORw0KGgo..."}],
    ),
]
_TEMPLATE_EXAMPLE: dict[str, Any] = {
    "name": "loyalty",
    "pass_type_id": "pass.com.example.loyalty",
    "pass_json": {
        "formatVersion": 1,
        "organizationName": "Example",
        "description": "Loyalty card",
        "storeCard": {"primaryFields": [{"key": "name", "value": "{{name}}"}]},
    },
    "assets": {"icon.png": "iVBORw0KGgo..."},
}


class TemplateIn(_Body):
    model_config = ConfigDict(json_schema_extra={"examples": [_TEMPLATE_EXAMPLE]})

    name: str = Field(min_length=1, max_length=200, pattern=NO_NUL, examples=["loyalty"])
    pass_type_id: str = Field(
        min_length=1, max_length=255, pattern=NO_NUL, examples=["pass.com.example.loyalty"]
    )
    pass_json: JsonObject = Field(description="pass.json, with {{placeholders}} for pass data")
    assets: Assets = Field(default_factory=dict)
    google: JsonObject | None = Field(
        None,
        description="Opt in to Google Wallet: {issuer_id, type?, class?, object?} (README, "
        "Google Wallet); class and object are derived from pass_json when left out. "
        "PUT without it keeps the template's current Google section",
        examples=[{"issuer_id": "3388000000012345678", "type": "loyalty"}],
    )


class TemplateReplace(_Body):
    """The body POST takes, with name and pass_type_id optional (kept when left out)."""

    model_config = ConfigDict(json_schema_extra={"examples": [_TEMPLATE_EXAMPLE]})

    name: str | None = Field(None, min_length=1, max_length=200, pattern=NO_NUL)
    pass_type_id: str | None = Field(
        None, min_length=1, max_length=255, pattern=NO_NUL, description="Must be the template's own"
    )
    pass_json: JsonObject = Field(description="pass.json, with {{placeholders}} for pass data")
    assets: Assets = Field(default_factory=dict)
    google: JsonObject | None = Field(
        None,
        description="Opt in to Google Wallet: {issuer_id, type?, class?, object?} (README, "
        "Google Wallet); class and object are derived from pass_json when left out. "
        "PUT without it keeps the template's current Google section",
        examples=[{"issuer_id": "3388000000012345678", "type": "loyalty"}],
    )


async def _template_view(conn: Any, row: sa.Row[Any]) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "pass_type_id": row.pass_type_id,
        "pass_json": row.pass_json,
        "assets": await templates.asset_names(conn, row.id),
        "revision": row.revision,
        "pass_count": await templates.count_passes(conn, row.id),
        "totals": await install_analytics.totals(
            conn, analytics.Scope(pass_type_id=row.pass_type_id, template_id=row.id)
        ),
        "google": await google_wallet.template_view(conn, row.id, row.pass_json),
        "created_at": _iso(row.created_at),
        "updated_at": _iso(row.updated_at),
    }


async def _template_by_id(conn: Any, template_id: int) -> dict[str, Any]:
    row = await templates.get_template(conn, template_id)
    assert row is not None
    return await _template_view(conn, row)


async def _read_zip(upload: UploadFile, name: str, settings: Settings) -> Template:
    data = await upload.read(MAX_ZIP_BYTES + 1)
    if len(data) > MAX_ZIP_BYTES:
        raise TooLarge(f"The template zip is larger than {MAX_ZIP_BYTES} bytes.")
    # Inflating up to the byte budget takes a while: the event loop keeps serving meanwhile.
    return await asyncio.to_thread(
        Template.from_zip, data, name=name, limits=template_limits(settings)
    )


@router.post(
    "/templates",
    status_code=status.HTTP_201_CREATED,
    tags=["templates"],
    response_model=TemplateView,
    responses={201: {"description": "Created"}, **error_responses(400, 404, 409, 413)},
)
async def create_template(body: TemplateIn, conn: WriteConn, runtime: RuntimeDep) -> dict[str, Any]:
    """Create a template from pass.json (with {{placeholders}}) and base64 assets.

    404 when the pass type is unknown, 409 when the name is taken.
    """
    template_id = await issuing.create_template(
        conn,
        name=body.name,
        pass_type_id=body.pass_type_id,
        pass_json=body.pass_json,
        assets=issuing.decode_assets(body.assets),
        max_json_depth=runtime.settings.json_max_depth,
        google=body.google,
    )
    return await _template_by_id(conn, template_id)


@router.post(
    "/templates/upload",
    status_code=status.HTTP_201_CREATED,
    tags=["templates"],
    response_model=TemplateView,
    responses={201: {"description": "Created"}, **error_responses(400, 404, 409, 413)},
)
async def upload_template(
    conn: WriteConn,
    runtime: RuntimeDep,
    name: Annotated[
        str,
        Form(
            min_length=1,
            max_length=200,
            pattern=NO_NUL,
            description="The template's name",
            examples=["loyalty"],
        ),
    ],
    pass_type_id: Annotated[
        str,
        Form(
            min_length=1,
            max_length=255,
            pattern=NO_NUL,
            description="Its pass type",
            examples=["pass.com.example.loyalty"],
        ),
    ],
    file: Annotated[UploadFile, File(description="A zip of the template folder")],
) -> dict[str, Any]:
    """Create a template from a zip (pass.json, images, xx.lproj/ folders)."""
    template = await _read_zip(file, name, runtime.settings)
    template_id = await issuing.create_template(
        conn,
        name=name,
        pass_type_id=pass_type_id,
        pass_json=template.pass_json,
        assets=template.assets,
        max_json_depth=runtime.settings.json_max_depth,
    )
    return await _template_by_id(conn, template_id)


@router.get(
    "/templates", tags=["templates"], response_model=TemplateList, responses=error_responses()
)
async def list_templates(conn: ReadConn) -> dict[str, Any]:
    """Every template."""
    return {"items": [await _template_view(conn, r) for r in await templates.list_templates(conn)]}


@router.get(
    "/templates/{ref:template_ref}",
    tags=["templates"],
    response_model=TemplateView,
    responses=error_responses(404),
)
async def get_template(ref: TemplateRef, conn: ReadConn) -> dict[str, Any]:
    """One template, by name or id."""
    row = await templates.get_template(conn, ref)
    if row is None:
        raise NotFound(f"No template {ref!r}.")
    return await _template_view(conn, row)


@router.put(
    "/templates/{ref:template_ref}",
    tags=["templates"],
    response_model=TemplateReplaced,
    responses=error_responses(400, 404, 409, 413),
)
async def replace_template(
    ref: TemplateRef, body: TemplateReplace, conn: WriteConn, runtime: RuntimeDep, actor: ActorDep
) -> dict[str, Any]:
    """Replace a template. Every pass made from it gets a new version and a push."""
    template_id, changed = await issuing.replace_template(
        conn,
        ref,
        name=body.name,
        pass_type_id=body.pass_type_id,
        pass_json=body.pass_json,
        assets=issuing.decode_assets(body.assets),
        max_json_depth=runtime.settings.json_max_depth,
        google=body.google,
        actor=actor,
    )
    return {**await _template_by_id(conn, template_id), "passes_changed": changed}


@router.put(
    "/templates/{ref:template_ref}/upload",
    tags=["templates"],
    response_model=TemplateReplaced,
    responses=error_responses(400, 404, 409, 413),
)
async def replace_template_upload(
    ref: TemplateRef,
    conn: WriteConn,
    runtime: RuntimeDep,
    actor: ActorDep,
    file: Annotated[UploadFile, File(description="A zip of the template folder")],
) -> dict[str, Any]:
    """Replace a template from a zip, keeping its name and pass type. Every pass made from
    it gets a new version and a push."""
    template = await _read_zip(file, ref, runtime.settings)
    template_id, changed = await issuing.replace_template(
        conn,
        ref,
        name=None,
        pass_json=template.pass_json,
        assets=template.assets,
        max_json_depth=runtime.settings.json_max_depth,
        actor=actor,
    )
    return {**await _template_by_id(conn, template_id), "passes_changed": changed}


@router.delete(
    "/templates/{ref:template_ref}",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["templates"],
    responses={204: {"description": "Deleted"}, **error_responses(404, 409)},
)
async def delete_template(ref: TemplateRef, conn: WriteConn) -> None:
    """Delete a template that no pass uses (409 otherwise)."""
    await issuing.delete_template(conn, ref)


# --- passes -----------------------------------------------------------------------------


class PassIn(_Body):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"template": "loyalty", "serial_number": "c0ffee-42", "data": {"name": "Ada"}}
            ]
        }
    )

    template: str = Field(
        min_length=1, pattern=NO_NUL, description="Template name or id", examples=["loyalty"]
    )
    serial_number: str | None = Field(
        None,
        min_length=1,
        max_length=issuing.MAX_SERIAL_LENGTH,
        pattern=r"^[A-Za-z0-9._~-]+$",
        description="Left out: a random one. Letters, digits and - _ . ~",
        examples=["c0ffee-42"],
    )
    data: JsonObject = Field(
        default_factory=dict,
        description="Values for the template's {{placeholders}}",
        examples=[{"name": "Ada", "balance": 12.5}],
    )


class PassData(_Body):
    model_config = ConfigDict(json_schema_extra={"examples": [{"data": {"balance": 20}}]})

    data: JsonObject = Field(
        description="PUT: the new data; PATCH: a JSON Merge Patch (null removes a key)",
        examples=[{"balance": 20}],
    )


def _pass_view(
    row: sa.Row[Any],
    public_url: str,
    template_name: str,
    installs: analytics.PassInstalls | None = None,
) -> dict[str, Any]:
    base = f"{public_url}/api/v1/passes/{row.pass_type_id}/{row.serial_number}"
    first_ms = installs.first_installed_at_ms if installs else None
    return {
        "pass_type_id": row.pass_type_id,
        "serial_number": row.serial_number,
        "template": template_name,
        "version": row.version,
        "data": row.data,
        "voided": row.voided,
        **lifecycle.pass_state(row),
        "personalized": row.personalization is not None,
        "installs": installs.installs if installs else 0,
        "first_installed_at": None if first_ms is None else _iso(first_ms // 1000),
        "created_at": _iso(row.created_at),
        "modified_at": _iso(row.modified_at),
        "urls": {"pkpass": f"{base}/pkpass", "share": f"{public_url}/p/{row.share_id}"},
    }


async def _pass_response(conn: Any, row: sa.Row[Any], runtime: Any) -> dict[str, Any]:
    template_row = await templates.get_template(conn, row.template_id)
    name = template_row.name if template_row is not None else str(row.template_id)
    installs = await analytics.pass_installs(conn, [row.id])
    view = _pass_view(row, runtime.settings.public_url, name, installs[row.id])
    view["google"] = await google_wallet.pass_view(conn, runtime.settings, runtime.sealer, row)
    if view["google"] is not None:
        view["urls"]["google"] = view["google"]["save_url"]
    return view


@router.post(
    "/passes",
    status_code=status.HTTP_201_CREATED,
    tags=["passes"],
    response_model=PassView,
    responses={201: {"description": "Issued"}, **error_responses(400, 404, 409, 413)},
)
async def issue_pass(
    body: PassIn,
    request: Request,
    conn: WriteConn,
    runtime: RuntimeDep,
    builder: BuilderDep,
    actor: ActorDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Issue a pass from a template; `data` fills its placeholders.

    404 when the template is unknown, 409 when the serial number is taken. With an
    Idempotency-Key, a retry answers the first answer again and issues nothing.
    """

    async def action() -> dict[str, Any]:
        row = await issuing.issue_pass(
            conn,
            builder,
            template_ref=body.template,
            data=body.data,
            serial_number=body.serial_number,
            actor=actor,
        )
        return await _pass_response(conn, row, runtime)

    content = body.model_dump(mode="json")
    return await answer_once(conn, request, idempotency_key, content, 201, action)


PassListCursor = Annotated[
    str | None,
    Query(
        pattern=search.CURSOR_PATTERN,
        description="next_cursor of the previous page, with the same sort; leave out for "
        "the first page",
        examples=["100"],
    ),
]


@router.get("/passes", tags=["passes"], response_model=PassList, responses=error_responses(404))
async def list_passes(
    conn: ReadConn,
    runtime: RuntimeDep,
    template: Annotated[
        str | None,
        Query(
            pattern=NO_NUL,
            description="Only the passes of this template (name or id)",
            examples=["loyalty"],
        ),
    ] = None,
    q: Annotated[
        str | None,
        Query(
            max_length=search.MAX_QUERY_LENGTH,
            pattern=NO_NUL,
            description="Search: each word must start a word of the serial number or of a "
            "data value (case-insensitive), e.g. `ada love` finds Ada Lovelace",
            examples=["ada"],
        ),
    ] = None,
    voided: Annotated[
        bool | None,
        Query(description="Only voided (true) or only active (false) passes", examples=[False]),
    ] = None,
    installed: Annotated[
        bool | None,
        Query(
            description="Only passes on at least one device (true), or on none (false)",
            examples=[True],
        ),
    ] = None,
    expired: Annotated[
        bool | None,
        Query(
            description="Only passes whose expirationDate has passed (true), or the others",
            examples=[False],
        ),
    ] = None,
    sort: Annotated[
        search.Sort,
        Query(
            description="created or updated (Last-Modified) order; a leading - for newest "
            "first (the default)",
            examples=["-created"],
        ),
    ] = "-created",
    limit: PageLimit = 100,
    cursor: PassListCursor = None,
) -> dict[str, Any]:
    """Passes, a page at a time, newest first unless `sort` says otherwise; searched with
    `q` and filtered by template, voided, installed and expired. Pages are keyset pages: follow
    `next_cursor` (404 when `template` is unknown)."""
    page = await search.find_passes(
        conn,
        template=template,
        q=q,
        voided=voided,
        installed=installed,
        expired=expired,
        now=issuing.now_seconds(),
        sort=sort,
        cursor=cursor,
        limit=limit,
    )
    public_url = runtime.settings.public_url
    return {
        "items": [
            _pass_view(
                row, public_url, page.template_names.get(row.template_id, ""), page.installs[row.id]
            )
            for row in page.rows
        ],
        "next_cursor": page.next_cursor,
    }


@router.get(
    "/passes/{pass_type_id}/{serial_number}",
    tags=["passes"],
    response_model=PassView,
    responses=error_responses(404),
)
async def get_pass(
    pass_type_id: PassTypeIdPath, serial_number: SerialPath, conn: ReadConn, runtime: RuntimeDep
) -> dict[str, Any]:
    """One pass: its data, version and links."""
    row = await issuing.get_pass_or_404(conn, pass_type_id, serial_number)
    return await _pass_response(conn, row, runtime)


async def _change(
    conn: Any,
    runtime: Any,
    builder: Any,
    ptid: str,
    serial: str,
    body: PassData,
    merge: bool,
    actor: Actor,
) -> dict[str, Any]:
    row, changed = await issuing.change_pass_data(
        conn, builder, ptid, serial, body.data, merge=merge, actor=actor
    )
    return {**await _pass_response(conn, row, runtime), "changed": changed}


@router.patch(
    "/passes/{pass_type_id}/{serial_number}",
    tags=["passes"],
    response_model=PassChanged,
    responses=error_responses(400, 404, 409, 413),
)
async def patch_pass(
    pass_type_id: PassTypeIdPath,
    serial_number: SerialPath,
    body: PassData,
    conn: WriteConn,
    runtime: RuntimeDep,
    builder: BuilderDep,
    actor: ActorDep,
) -> dict[str, Any]:
    """Apply `data` as a JSON Merge Patch (RFC 7396: objects merge, null removes a key).

    A real change makes a new version and wakes its devices.
    """
    return await _change(conn, runtime, builder, pass_type_id, serial_number, body, True, actor)


@router.put(
    "/passes/{pass_type_id}/{serial_number}",
    tags=["passes"],
    response_model=PassChanged,
    responses=error_responses(400, 404, 409, 413),
)
async def put_pass(
    pass_type_id: PassTypeIdPath,
    serial_number: SerialPath,
    body: PassData,
    conn: WriteConn,
    runtime: RuntimeDep,
    builder: BuilderDep,
    actor: ActorDep,
) -> dict[str, Any]:
    """Replace the pass's data. A real change makes a new version and wakes its devices."""
    return await _change(conn, runtime, builder, pass_type_id, serial_number, body, False, actor)


@router.post(
    "/passes/{pass_type_id}/{serial_number}/void",
    tags=["passes"],
    response_model=PassChanged,
    responses=error_responses(404),
)
async def void_pass(
    pass_type_id: PassTypeIdPath,
    serial_number: SerialPath,
    conn: WriteConn,
    runtime: RuntimeDep,
    actor: ActorDep,
) -> dict[str, Any]:
    """Void the pass: it stays in Wallet, marked void, and stops changing (a new version and
    a push). Voiding a voided pass changes nothing."""
    row, changed = await issuing.void_pass(conn, pass_type_id, serial_number, actor=actor)
    return {**await _pass_response(conn, row, runtime), "changed": changed}


@router.delete(
    "/passes/{pass_type_id}/{serial_number}",
    tags=["passes"],
    response_model=PassChanged,
    responses=error_responses(404),
    deprecated=True,
)
async def void_pass_by_delete(
    pass_type_id: PassTypeIdPath,
    serial_number: SerialPath,
    conn: WriteConn,
    runtime: RuntimeDep,
    actor: ActorDep,
) -> dict[str, Any]:
    """The same as POST .../void, kept for existing clients. It does not delete: the pass
    stays readable (voided), which is why it is deprecated."""
    return await void_pass(pass_type_id, serial_number, conn, runtime, actor)


@router.get(
    "/passes/{pass_type_id}/{serial_number}/pkpass",
    tags=["passes"],
    response_class=Response,
    responses={**PKPASS_RESPONSE, **error_responses(404)},
)
async def download_pkpass(
    pass_type_id: PassTypeIdPath,
    serial_number: SerialPath,
    runtime: RuntimeDep,
    builder: BuilderDep,
) -> Response:
    """The pass's signed .pkpass file, built for its current version."""
    async with runtime.database.reader() as conn:
        row = await issuing.get_pass_or_404(conn, pass_type_id, serial_number)
    data, _ = await builder.pkpass(runtime.database, row.id, row.version)
    return Response(
        data,
        media_type=PKPASS_MEDIA_TYPE,
        headers={"content-disposition": f'attachment; filename="{serial_number}.pkpass"'},
    )


@router.get(
    "/passes/{pass_type_id}/{serial_number}/registrations",
    tags=["passes"],
    response_model=RegistrationList,
    responses=error_responses(404),
)
async def list_registrations(
    pass_type_id: PassTypeIdPath,
    serial_number: SerialPath,
    conn: ReadConn,
    limit: PageLimit = 100,
    cursor: PageCursor = None,
) -> dict[str, Any]:
    """The devices holding this pass, a page at a time (in device id order)."""
    row = await issuing.get_pass_or_404(conn, pass_type_id, serial_number)
    items, last_id = await issuing.list_registrations(
        conn, row.id, after_device_id=_after_id(cursor), limit=limit
    )
    return {"items": items, "next_cursor": _next_cursor(last_id, len(items), limit)}


@router.get(
    "/passes/{pass_type_id}/{serial_number}/pushes",
    tags=["push"],
    response_model=PushAttemptList,
    responses=error_responses(404),
)
async def list_pushes(
    pass_type_id: PassTypeIdPath, serial_number: SerialPath, conn: ReadConn
) -> dict[str, Any]:
    """Recent push attempts to the devices holding this pass, newest first."""
    row = await issuing.get_pass_or_404(conn, pass_type_id, serial_number)
    return {"items": await issuing.recent_pushes(conn, row.id)}


@router.get(
    "/passes/{pass_type_id}/{serial_number}/versions",
    tags=["passes"],
    response_model=PassVersionList,
    # A diff entry leaves out `old` for a key added and `new` for a key removed.
    response_model_exclude_unset=True,
    responses=error_responses(404),
)
async def list_pass_versions(
    pass_type_id: PassTypeIdPath,
    serial_number: SerialPath,
    conn: ReadConn,
    limit: PageLimit = 100,
    cursor: PageCursor = None,
) -> dict[str, Any]:
    """The pass's version history, newest first, a page at a time: each version's cause,
    who made it (an API key's id and name, or the CLI, the scheduler, the server, the
    device) and what changed. The newest 100 versions of each pass are kept."""
    return await history.list_versions(
        conn, pass_type_id, serial_number, cursor=cursor, limit=limit
    )


def _iso_text(value: object) -> object:
    # Pydantic would also read a bare number as Unix seconds; the spec says ISO 8601 text.
    if isinstance(value, str) and value.strip().lstrip("+-").replace(".", "", 1).isdigit():
        raise ValueError("must be an ISO 8601 time with a zone, e.g. 2026-11-01T00:00:00Z")
    return value


IsoMoment = Annotated[AwareDatetime, BeforeValidator(_iso_text)]


@router.get(
    "/stats",
    tags=["stats"],
    response_model=StatsView,
    response_model_by_alias=True,
    responses=error_responses(404),
)
async def get_stats(
    conn: ReadConn,
    template: Annotated[
        str | None,
        Query(
            pattern=NO_NUL,
            description="Only this template's passes (name or id)",
            examples=["loyalty"],
        ),
    ] = None,
    pass_type_id: Annotated[
        str | None,
        Query(
            max_length=255,
            pattern=NO_NUL,
            description="Only this pass type's passes and pushes",
            examples=["pass.com.example.loyalty"],
        ),
    ] = None,
    start: Annotated[
        IsoMoment | None,
        Query(
            alias="from",
            description="ISO 8601 with a zone; rounded down to its hour or day. Default: "
            "the 30 days (interval=day) or 48 hours (interval=hour) up to `to`, its own included",
            examples=["2026-11-01T00:00:00Z"],
        ),
    ] = None,
    end: Annotated[
        IsoMoment | None,
        Query(
            alias="to",
            description="ISO 8601 with a zone, excluded; default now",
            examples=["2026-12-01T00:00:00Z"],
        ),
    ] = None,
    interval: Annotated[
        install_analytics.Interval,
        Query(description="One point per hour or per day (UTC)", examples=["day"]),
    ] = "day",
) -> dict[str, Any]:
    """Install analytics: passes issued, updated and voided, installs and uninstalls,
    pushes sent and failed, per hour or day, and all-time totals (active passes and
    installs). Read from counters kept as things happen; 404 for an unknown template or
    pass type, 422 for more than 2,400 points."""
    return await install_analytics.stats(
        conn,
        template=template,
        pass_type_id=pass_type_id,
        start=start,
        end=end,
        interval=interval,
        now=issuing.now_seconds(),
    )


@router.get("/push/stats", tags=["push"], response_model=PushStats, responses=error_responses())
async def push_stats(conn: ReadConn, runtime: RuntimeDep) -> dict[str, Any]:
    """The push queue: depth, due, backing off, sent, failed, stalled, blocked pass types."""
    stats = await push_jobs.push_stats(
        conn, issuing.now_ms(), stall_seconds=runtime.settings.push_stall_seconds
    )
    return {**stats, "google": await google_storage.stats(conn)}


@router.get(
    "/device-logs", tags=["devices"], response_model=DeviceLogList, responses=error_responses()
)
async def list_device_logs(
    conn: ReadConn,
    limit: Annotated[
        int, Query(ge=1, le=1000, description="Entries to return (1 to 1000)", examples=[100])
    ] = 100,
    before: Annotated[
        int | None,
        Query(
            ge=1,
            le=MAX_ID,
            description="id of the oldest entry already seen: the page before it",
            examples=[1234],
        ),
    ] = None,
) -> dict[str, Any]:
    """What devices posted to /v1/log, newest first."""
    rows = await device_logs.recent_messages(conn, limit=limit, before_id=before)
    return {
        "items": [
            {"id": r.id, "message": r.message, "remote_addr": r.remote_addr, "at": _iso(r.at)}
            for r in rows
        ]
    }
