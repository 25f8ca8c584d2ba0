"""Admin API previews (/api/v1): draw a template draft without saving it, draw an issued
pass, and count what a template change would touch. Thin: each handler calls one use case
of passhouse.previewing."""

from __future__ import annotations

import base64
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import Field

from passhouse import issuing, previewing
from passhouse.web.admin import (
    Assets,
    PassTypeIdPath,
    SerialPath,
    TemplateRef,
    _Body,
)
from passhouse.web.admin_schema import (
    NO_NUL,
    JsonObject,
    NoNulText,
    PreviewView,
    TemplateAssets,
    TemplateImpact,
    error_responses,
)
from passhouse.web.deps import (
    BuilderDep,
    LimitedJsonRoute,
    ReadConn,
    RuntimeDep,
    require_api_key,
)

router = APIRouter(
    prefix="/api/v1",
    generate_unique_id_function=lambda route: route.name,
    dependencies=[Depends(require_api_key)],
    route_class=LimitedJsonRoute,
)

Language = Annotated[
    str | None,
    Query(
        pattern="^(en|de|fr|es)$",
        description="Language of labels, dates and numbers (en, de, fr or es; default en)",
        examples=["de"],
    ),
]

_DRAFT_EXAMPLE: dict[str, Any] = {
    "template": "loyalty",
    "pass_json": {
        "formatVersion": 1,
        "organizationName": "Example",
        "description": "Loyalty card",
        "backgroundColor": "rgb(60, 65, 76)",
        "foregroundColor": "rgb(255, 255, 255)",
        "barcodes": [
            {
                "format": "PKBarcodeFormatQR",
                "message": "{{member}}",
                "messageEncoding": "iso-8859-1",
            }
        ],
        "storeCard": {
            "primaryFields": [
                {
                    "key": "balance",
                    "label": "Balance",
                    "value": "{{balance}}",
                    "currencyCode": "EUR",
                }
            ]
        },
    },
    "data": {"member": "M-1042", "balance": 12.5},
}


class DraftIn(_Body):
    """A template draft: pass.json with {{placeholders}}, sample data, and its files."""

    model_config = {"json_schema_extra": {"examples": [_DRAFT_EXAMPLE]}}

    pass_json: JsonObject = Field(description="pass.json, with {{placeholders}} for pass data")
    data: JsonObject = Field(
        default_factory=dict,
        description="Sample pass data for the placeholders",
        examples=[{"member": "M-1042", "balance": 12.5}],
    )
    template: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        pattern=NO_NUL,
        description="Start from this template's stored files (name or id); `assets` add or "
        "replace files, `remove_assets` take them away",
        examples=["loyalty"],
    )
    pass_type_id: str | None = Field(
        None,
        min_length=1,
        max_length=255,
        pattern=NO_NUL,
        description="The pass type (default: the template's)",
        examples=["pass.com.example.loyalty"],
    )
    assets: Assets = Field(default_factory=dict)
    remove_assets: list[NoNulText] = Field(
        default_factory=list,
        max_length=1000,
        description="File names of the template to leave out of the draft",
        examples=[["strip.png"]],
    )
    google: JsonObject | None = Field(
        None,
        description="A `google` section (as a template takes it) to draw the Google Wallet "
        "card from; without it, the stored section of `template` when that template is "
        "opted in; without either, no Google card",
        examples=[{"issuer_id": "3388000000012345678", "type": "loyalty"}],
    )


@router.post(
    "/previews",
    tags=["previews"],
    response_model=PreviewView,
    responses=error_responses(404, 413),
)
async def preview_draft(
    body: DraftIn, conn: ReadConn, runtime: RuntimeDep, language: Language = None
) -> dict[str, Any]:
    """Draw a template draft filled with sample data, without saving anything.

    The answer holds the preview (HTML), the rendered pass.json and every error and warning
    the server would raise on save or issue, each with the key path it names. A draft with
    problems is still a 200: its problems are the answer. 404 when `template` or
    `pass_type_id` names nothing. With a Google section (given or stored), `google` holds
    the Google Wallet card and the class and object it is drawn from.
    """
    result = await previewing.preview_draft(
        conn,
        pass_json=body.pass_json,
        assets=issuing.decode_assets(body.assets),
        data=body.data,
        template_ref=body.template,
        pass_type_id=body.pass_type_id,
        remove_assets=body.remove_assets,
        language=language,
        web_service_url=runtime.settings.web_service_url,
        max_json_depth=runtime.settings.json_max_depth,
        google=body.google,
        public_url=runtime.settings.public_url,
    )
    return result.view()


@router.get(
    "/passes/{pass_type_id}/{serial_number}/preview",
    tags=["previews"],
    response_model=PreviewView,
    responses=error_responses(404),
)
async def preview_pass(
    pass_type_id: PassTypeIdPath,
    serial_number: SerialPath,
    runtime: RuntimeDep,
    builder: BuilderDep,
    language: Language = None,
) -> dict[str, Any]:
    """Draw an issued pass from its current signed file: the pass.json and images its devices
    get, so the preview cannot differ from the pass. For a template opted in to Google,
    `google` holds its Google Wallet card, drawn from the class and object the Google sync
    sends for it."""
    async with runtime.database.reader() as conn:
        row = await issuing.get_pass_or_404(conn, pass_type_id, serial_number)
    result = await previewing.preview_pass(
        runtime.database,
        builder,
        row,
        language=language,
        public_url=runtime.settings.public_url,
    )
    return result.view()


@router.get(
    "/templates/{ref:template_ref}/impact",
    tags=["templates"],
    response_model=TemplateImpact,
    responses=error_responses(404),
)
async def template_impact(ref: TemplateRef, conn: ReadConn) -> dict[str, Any]:
    """What saving a new version of this template touches: its passes (each gets a new
    version) and the devices that will be woken to fetch them."""
    return await previewing.template_impact(conn, ref)


@router.get(
    "/templates/{ref:template_ref}/assets",
    tags=["templates"],
    response_model=TemplateAssets,
    responses=error_responses(404),
)
async def template_assets(ref: TemplateRef, conn: ReadConn) -> dict[str, Any]:
    """The template's files (images, localizations), base64: what an editor sends back, with
    its changes, when it saves a new version."""
    files = await previewing.template_files(conn, ref)
    return {"assets": {name: base64.b64encode(data).decode() for name, data in files.items()}}
