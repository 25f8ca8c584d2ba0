"""Public share links: a small page with an "Add to Apple Wallet" link, and the file."""

from __future__ import annotations

import html

from fastapi import APIRouter, Response
from fastapi.responses import HTMLResponse

from passhouse import issuing
from passhouse.errors import NotFound
from passhouse.pkpass.bundle import PKPASS_MEDIA_TYPE
from passhouse.storage import pass_types, passes
from passhouse.web.deps import BuilderDep, RuntimeDep

router = APIRouter(include_in_schema=False)

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: -apple-system, system-ui, sans-serif; max-width: 28rem; margin: 3rem auto;
       padding: 0 1rem; text-align: center; color: #1d1d1f; }}
a.add {{ display: inline-block; margin-top: 1.5rem; padding: .8rem 1.4rem; border-radius: .6rem;
        background: #000; color: #fff; text-decoration: none; font-weight: 600; }}
p.note {{ color: #6e6e73; font-size: .9rem; }}
</style></head>
<body><h1>{title}</h1><p>{organization}</p>
<a class="add" href="{href}">Add to Apple Wallet</a>
{note}
</body></html>
"""


async def _find(runtime: RuntimeDep, share_id: str) -> tuple[int, int, dict[str, str]]:
    if len(share_id) > 64:
        raise NotFound("No such pass.")
    async with runtime.database.reader() as conn:
        row = await passes.get_pass_by_share_id(conn, share_id)
        if row is None:
            raise NotFound("No such pass.")
        return row.id, row.version, {"serial": row.serial_number}


@router.get("/p/{share_id}", response_class=HTMLResponse)
async def share_page(share_id: str, runtime: RuntimeDep, builder: BuilderDep) -> HTMLResponse:
    pass_id, version, _ = await _find(runtime, share_id)
    data, _ = await builder.pkpass(runtime.database, pass_id, version)
    pass_json = issuing.pass_json_of(data)
    dev = ""
    async with runtime.database.reader() as conn:
        row = await pass_types.get_pass_type(conn, str(pass_json.get("passTypeIdentifier", "")))
    if row is not None and row.dev_mode:
        dev = (
            '<p class="note">This pass is signed with a local development certificate: '
            "Wallet on a real iPhone will not accept it.</p>"
        )
    return HTMLResponse(
        _PAGE.format(
            title=html.escape(str(pass_json.get("description", "Your pass"))),
            organization=html.escape(str(pass_json.get("organizationName", ""))),
            href=html.escape(f"/p/{share_id}/pass.pkpass"),
            note=dev,
        )
    )


@router.api_route("/p/{share_id}/pass.pkpass", methods=["GET", "HEAD"])
async def share_download(share_id: str, runtime: RuntimeDep, builder: BuilderDep) -> Response:
    pass_id, version, names = await _find(runtime, share_id)
    data, _ = await builder.pkpass(runtime.database, pass_id, version)
    return Response(
        data,
        media_type=PKPASS_MEDIA_TYPE,
        headers={"content-disposition": f'inline; filename="{names["serial"]}.pkpass"'},
    )
