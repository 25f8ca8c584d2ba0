"""PassNinja's REST API (/v1/...) as its official SDKs call it, over passhouse's use cases.

An issuer moving off PassNinja points its SDK's base URL at `{PUBLIC_URL}/v1` and keeps
its code. PassNinja's "pass type" (`ptk_0x14`) is a passhouse template, named by its name
(or id); the Apple pass type behind it is the template's. A pass is named by template and
serial; serials are unique per Apple pass type, which several templates may share.
Errors carry `{"error": {"code", "message", "status_code"}}` (web/errors.py).
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Header, Path, Request, Response, Security, status
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy.ext.asyncio import AsyncConnection

from passhouse import issuing
from passhouse.errors import InvalidInput, Unauthorized
from passhouse.pkpass.template import Template
from passhouse.storage import passes, templates
from passhouse.storage.pass_versions import Actor
from passhouse.web.deps import (
    BuilderDep,
    LimitedJsonRoute,
    ReadConn,
    RuntimeDep,
    WriteConn,
    authenticate,
    get_runtime,
)
from passhouse.web.errors import error_response

TAG = "PassNinja-compatible API"
_PAGE = 500  # passes read per query when listing a template's passes

_api_key = APIKeyHeader(
    name="X-API-KEY",
    auto_error=False,
    scheme_name="PassNinjaApiKey",
    description="A passhouse API key (the same keys as the admin API).",
)


async def require_passninja_key(
    request: Request,
    api_key: Annotated[str | None, Security(_api_key)],
    account_id: Annotated[
        str | None,
        Header(
            alias="X-ACCOUNT-ID",
            description="Accepted with any value, unless PASSHOUSE_PASSNINJA_ACCOUNT_ID is set.",
        ),
    ] = None,
) -> Actor:
    if not api_key:
        raise Unauthorized("Send a passhouse API key in the X-API-KEY header.")
    runtime = get_runtime(request)
    expected = runtime.settings.passninja_account_id
    if expected is not None and not secrets.compare_digest(
        (account_id or "").encode(), expected.encode()
    ):
        raise Unauthorized("X-ACCOUNT-ID is not this server's account id.")
    actor = await authenticate(runtime, api_key)
    if actor is None:
        raise Unauthorized("The API key is not valid.")
    return actor


# The key's actor for the version history (the router's dependency, run once).
PassNinjaActor = Annotated[Actor, Depends(require_passninja_key)]


class PassNinjaErrorDetail(BaseModel):
    code: str = Field(examples=["not_found"])
    message: str = Field(examples=["No template 'ptk_0x14'."])
    status_code: int = Field(examples=[404])


class PassNinjaError(BaseModel):
    error: PassNinjaErrorDetail


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": PassNinjaError, "description": description}
    for code, description in (
        (400, "The body is not valid JSON"),
        (401, "No X-API-KEY, or one that is not valid"),
        (404, "No such template or pass"),
        (422, "The body or the pass data is not acceptable"),
    )
}

router = APIRouter(
    prefix="/v1",
    tags=[TAG],
    dependencies=[Depends(require_passninja_key)],
    responses=_ERRORS,
    route_class=LimitedJsonRoute,
)

TemplateRef = Annotated[
    str,
    Path(
        description="PassNinja's pass type: a passhouse template name (or id)",
        examples=["ptk_0x14"],
    ),
]
SerialNumber = Annotated[str, Path(description="The pass's serial number")]


# --- models -----------------------------------------------------------------------------


class PassNinjaPassIn(BaseModel):
    """What the SDKs send: the template as passType or passTemplate, and the pass's data."""

    model_config = ConfigDict(extra="forbid", populate_by_name=False)

    pass_type: str | None = Field(None, alias="passType", min_length=1, max_length=200)
    pass_template: str | None = Field(None, alias="passTemplate", min_length=1, max_length=200)
    serial_number: str | None = Field(
        None,
        alias="serialNumber",
        min_length=1,
        max_length=issuing.MAX_SERIAL_LENGTH,
        description="passhouse extension: the serial to issue under (default: a random one)",
    )
    pass_data: dict[str, Any] = Field(
        default_factory=dict,
        alias="pass",
        description="Values for the template's placeholders",
        examples=[{"discount": "50%", "memberName": "John"}],
    )

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        problem = issuing.storable_problem(value, "body")
        if problem:
            raise ValueError(problem)
        return value

    def template(self) -> str | None:
        if self.pass_type and self.pass_template and self.pass_type != self.pass_template:
            raise InvalidInput("passType and passTemplate name different templates.")
        return self.pass_type or self.pass_template


class PassNinjaUrls(BaseModel):
    landing: str = Field(description="The share page, with an Add to Apple Wallet button")
    apple: str = Field(description="The signed .pkpass file (no API key needed)")


class PassNinjaPass(BaseModel):
    model_config = ConfigDict(populate_by_name=False)

    pass_type: str = Field(alias="passType", description="The template's name")
    pass_template: str = Field(alias="passTemplate", description="The same as passType")
    serial_number: str = Field(alias="serialNumber")
    pass_data: dict[str, Any] = Field(alias="pass", description="The pass's data")
    urls: PassNinjaUrls
    status: Literal["active", "voided"]
    issued_date: str = Field(alias="issuedDate", description="ISO 8601, UTC")
    updated_date: str = Field(alias="updatedDate", description="ISO 8601, UTC")


class PassNinjaPassList(BaseModel):
    passes: list[PassNinjaPass]


class PassNinjaKeys(BaseModel):
    pass_type: str = Field(alias="passType")
    pass_template: str = Field(alias="passTemplate")
    keys: list[str] = Field(description="Data keys every pass of the template must carry")


class PassNinjaTemplate(BaseModel):
    id: str = Field(description="The template's name: what the other calls take as passType")
    name: str
    pass_type_id: str = Field(description="The Apple pass type identifier")
    platform: Literal["apple"]
    style: str = Field(description="storeCard, coupon, eventTicket, boardingPass or generic")
    issued_pass_count: int
    installed_pass_count: int = Field(description="Passes registered on at least one device")


class PassNinjaTemplateList(BaseModel):
    pass_templates: list[PassNinjaTemplate]


# --- views ------------------------------------------------------------------------------


def _pass_view(row: sa.Row[Any], template_name: str, public_url: str) -> dict[str, Any]:
    landing = f"{public_url}/p/{row.share_id}"
    return {
        "passType": template_name,
        "passTemplate": template_name,
        "serialNumber": row.serial_number,
        "pass": row.data,
        "urls": {"landing": landing, "apple": f"{landing}/pass.pkpass"},
        "status": "voided" if row.voided else "active",
        "issuedDate": issuing.iso_time(row.created_at),
        "updatedDate": issuing.iso_time(row.modified_at),
    }


async def _template_view(conn: AsyncConnection, row: sa.Row[Any]) -> dict[str, Any]:
    issued, installed = await issuing.template_counts(conn, row.id)
    return {
        "id": row.name,
        "name": row.name,
        "pass_type_id": row.pass_type_id,
        "platform": "apple",
        "style": Template(dict(row.pass_json), {}).style or "",
        "issued_pass_count": issued,
        "installed_pass_count": installed,
    }


# --- routes -----------------------------------------------------------------------------


@router.get("/passtypes/keys/{pass_type}", response_model=PassNinjaKeys)
async def template_keys(pass_type: TemplateRef, conn: ReadConn, builder: BuilderDep) -> Any:
    """The keys a new pass's data must hold: the template's placeholders."""
    row, keys = await issuing.template_keys(conn, builder, pass_type)
    return {"passType": row.name, "passTemplate": row.name, "keys": keys}


@router.post(
    "/passes",
    status_code=status.HTTP_201_CREATED,
    response_model=PassNinjaPass,
    responses={409: {"model": PassNinjaError, "description": "That serial number is taken"}},
)
async def create_pass(
    body: PassNinjaPassIn,
    conn: WriteConn,
    runtime: RuntimeDep,
    builder: BuilderDep,
    actor: PassNinjaActor,
) -> Any:
    """Issue a pass from a template."""
    template_ref = body.template()
    if template_ref is None:
        raise InvalidInput("Name the template as passType or passTemplate.")
    template_row = await issuing.get_template_or_404(conn, template_ref)
    row = await issuing.issue_pass(
        conn,
        builder,
        template_ref=template_ref,
        data=body.pass_data,
        serial_number=body.serial_number,
        actor=actor,
    )
    return _pass_view(row, template_row.name, runtime.settings.public_url)


@router.get("/passes/{pass_type}", response_model=PassNinjaPassList)
async def list_passes(pass_type: TemplateRef, conn: ReadConn, runtime: RuntimeDep) -> Any:
    """Every pass issued from the template, voided ones included, oldest first."""
    template_row = await issuing.get_template_or_404(conn, pass_type)
    public_url = runtime.settings.public_url
    found: list[dict[str, Any]] = []
    after_id = None
    while True:
        rows = await passes.list_passes(
            conn, template_id=template_row.id, after_id=after_id, limit=_PAGE
        )
        found.extend(_pass_view(row, template_row.name, public_url) for row in rows)
        if len(rows) < _PAGE:
            return {"passes": found}
        after_id = rows[-1].id


@router.get("/passes/{pass_type}/{serial_number}", response_model=PassNinjaPass)
async def get_pass(
    pass_type: TemplateRef, serial_number: SerialNumber, conn: ReadConn, runtime: RuntimeDep
) -> Any:
    template_row, row = await issuing.get_template_pass_or_404(conn, pass_type, serial_number)
    return _pass_view(row, template_row.name, runtime.settings.public_url)


async def _change(
    conn: AsyncConnection,
    builder: BuilderDep,
    public_url: str,
    template_ref: str,
    serial_number: str,
    body: PassNinjaPassIn,
    *,
    merge: bool,
    actor: Actor,
) -> dict[str, Any]:
    named = body.template()
    template_row, _ = await issuing.get_template_pass_or_404(conn, template_ref, serial_number)
    if named is not None and named not in (template_row.name, str(template_row.id)):
        raise InvalidInput(f"The body names template {named!r}, the URL {template_ref!r}.")
    if body.serial_number is not None and body.serial_number != serial_number:
        raise InvalidInput("A pass's serialNumber cannot change.")
    row, _ = await issuing.change_pass_data(
        conn,
        builder,
        template_row.pass_type_id,
        serial_number,
        body.pass_data,
        merge=merge,
        actor=actor,
    )
    return _pass_view(row, template_row.name, public_url)


_CHANGE_ERRORS: dict[int | str, dict[str, Any]] = {
    409: {"model": PassNinjaError, "description": "The pass is voided"}
}


@router.put(
    "/passes/{pass_type}/{serial_number}", response_model=PassNinjaPass, responses=_CHANGE_ERRORS
)
async def replace_pass(
    pass_type: TemplateRef,
    serial_number: SerialNumber,
    body: PassNinjaPassIn,
    conn: WriteConn,
    runtime: RuntimeDep,
    builder: BuilderDep,
    actor: PassNinjaActor,
) -> Any:
    """Replace the pass's data. A real change makes a new version and pushes its devices."""
    url = runtime.settings.public_url
    return await _change(
        conn, builder, url, pass_type, serial_number, body, merge=False, actor=actor
    )


@router.patch(
    "/passes/{pass_type}/{serial_number}", response_model=PassNinjaPass, responses=_CHANGE_ERRORS
)
async def merge_pass(
    pass_type: TemplateRef,
    serial_number: SerialNumber,
    body: PassNinjaPassIn,
    conn: WriteConn,
    runtime: RuntimeDep,
    builder: BuilderDep,
    actor: PassNinjaActor,
) -> Any:
    """Merge data into the pass; keys not sent keep their values. Pushes its devices."""
    url = runtime.settings.public_url
    return await _change(
        conn, builder, url, pass_type, serial_number, body, merge=True, actor=actor
    )


@router.delete("/passes/{pass_type}/{serial_number}", response_model=PassNinjaPass)
async def void_pass(
    pass_type: TemplateRef,
    serial_number: SerialNumber,
    conn: WriteConn,
    runtime: RuntimeDep,
    actor: PassNinjaActor,
) -> Any:
    """Void the pass: it stays in Wallet marked void and stops changing (not erased)."""
    template_row, _ = await issuing.get_template_pass_or_404(conn, pass_type, serial_number)
    row, _ = await issuing.void_pass(conn, template_row.pass_type_id, serial_number, actor=actor)
    return _pass_view(row, template_row.name, runtime.settings.public_url)


# Excluded from the OpenAPI description: it only ever answers 501, and a client generated
# from the description should not offer a call that cannot work.
@router.post("/passes/{pass_type}/decrypt", include_in_schema=False)
async def decrypt_pass(pass_type: str) -> Response:
    """PassNinja decrypts NFC payloads; passhouse issues no NFC passes."""
    return error_response(
        501,
        "passhouse issues no NFC passes, so it has nothing to decrypt.",
        code="not_implemented",
        status_in_body=True,
    )


@router.get("/pass_templates", response_model=PassNinjaTemplateList)
async def list_pass_templates(conn: ReadConn) -> Any:
    rows = await templates.list_templates(conn)
    return {"pass_templates": [await _template_view(conn, row) for row in rows]}


@router.get("/pass_templates/{template_id}", response_model=PassNinjaTemplate)
async def get_pass_template(
    template_id: Annotated[str, Path(description="The template's name (or id)")],
    conn: ReadConn,
) -> Any:
    row = await issuing.get_template_or_404(conn, template_id)
    return await _template_view(conn, row)
