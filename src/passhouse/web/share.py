"""Public share links: a small page with an "Add to Apple Wallet" link, and the file."""

from __future__ import annotations

import base64
import hashlib
import html
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse

from passhouse import previewing
from passhouse.issuing import google_wallet
from passhouse.pkpass.bundle import PKPASS_MEDIA_TYPE
from passhouse.storage import pass_types, passes
from passhouse.web import landing
from passhouse.web.deps import BuilderDep, RuntimeDep
from passhouse.web.errors import error_response
from passhouse.web.pages import prefers_html, security_headers

router = APIRouter(include_in_schema=False)

_STYLE = """
body { font-family: -apple-system, system-ui, sans-serif; max-width: 28rem; margin: 3rem auto;
       padding: 0 1rem; text-align: center; color: #1d1d1f; }
a.add { display: inline-block; margin-top: 1.5rem; padding: .8rem 1.4rem; border-radius: .6rem;
        background: #000; color: #fff; text-decoration: none; font-weight: 600; }
p.note { color: #6e6e73; font-size: .9rem; }
p.void { margin-top: 1.5rem; padding: .8rem 1rem; border-radius: .6rem; background: #f5f5f7;
         font-weight: 600; }
"""

# The page's one inline style is allowed by its hash; nothing else may load or run.
_HEADERS = security_headers(
    style_src=f"'sha256-{base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()}'"
)

_PAGE = """<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{style}</style></head>
<body>
{body}
</body></html>
"""

_NOT_FOUND_BODY = (
    "<p>This link does not lead to a pass. Check that it was copied whole, "
    "or ask whoever sent it for a new one.</p>"
)


def _page(title: str, body: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(
        _PAGE.format(
            lang="en",
            title=html.escape(title),
            style=_STYLE,
            body=f"<h1>{html.escape(title)}</h1>\n{body}",
        ),
        status_code=status_code,
        headers=_HEADERS,
    )


def _not_found(request: Request) -> Response:
    if prefers_html(request.headers.get("accept", "")):
        return _page("Pass not found", _NOT_FOUND_BODY, 404)
    return error_response(404, "No such pass.", headers=_HEADERS)


async def _find(runtime: RuntimeDep, share_id: str) -> sa.Row[Any] | None:
    if len(share_id) > 64:
        return None
    async with runtime.database.reader() as conn:
        return await passes.get_pass_by_share_id(conn, share_id)


@router.get("/p/{share_id}", response_class=HTMLResponse)
async def share_page(
    share_id: str, request: Request, runtime: RuntimeDep, builder: BuilderDep
) -> Response:
    row = await _find(runtime, share_id)
    if row is None:
        return _not_found(request)
    data, _ = await builder.pkpass(runtime.database, row.id, row.version)
    settings = runtime.settings
    async with runtime.database.reader() as conn:
        pass_type = await pass_types.get_pass_type(conn, row.pass_type_id)
        google = await google_wallet.pass_view(conn, settings, runtime.sealer, row)
    language = landing.language_of(request.headers.get("accept-language", ""))
    page_url = f"{settings.public_url}/p/{share_id}"
    pass_json, files = previewing.signed_files(data)
    page = landing.landing_page(
        pass_json=pass_json,
        files=files,
        page_url=page_url,
        download_url=f"/p/{share_id}/pass.pkpass",
        google_url=None if google is None else google["save_url"],
        voided=bool(row.voided),
        dev_mode=pass_type is not None and bool(pass_type.dev_mode),
        platform=landing.platform_of(request.headers.get("user-agent", "")),
        language=language,
        brand=landing.Brand(
            logo=landing.image_data_url(settings.landing_logo_file),
            name=settings.landing_brand_name,
            background=settings.landing_background_color,
            text=settings.landing_text_color,
        ),
        apple_art=landing.button_artwork(settings.wallet_button_dir, "apple", language),
        google_art=landing.button_artwork(settings.wallet_button_dir, "google", language),
    )
    headers = security_headers(style_src=f"'sha256-{page.style_hash}'", img_src="data:")
    body = _PAGE.format(
        lang=language,
        title=html.escape(str(pass_json.get("description") or "Pass")),
        style=page.style,
        body=page.html,
    )
    vary = {"vary": "Accept-Language, User-Agent", "content-language": language}
    return HTMLResponse(body, headers={**headers, **vary})


@router.api_route("/p/{share_id}/pass.pkpass", methods=["GET", "HEAD"])
async def share_download(
    share_id: str, request: Request, runtime: RuntimeDep, builder: BuilderDep
) -> Response:
    row = await _find(runtime, share_id)
    if row is None:
        return _not_found(request)
    data, _ = await builder.pkpass(runtime.database, row.id, row.version)
    return Response(
        data,
        media_type=PKPASS_MEDIA_TYPE,
        headers={
            **_HEADERS,
            "content-disposition": f'inline; filename="{row.serial_number}.pkpass"',
        },
    )
