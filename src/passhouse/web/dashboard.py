"""The issuer dashboard at /dashboard: one page, one script, one stylesheet, no build step.

It holds no secrets and no state: the browser keeps the API key the user types and calls
the admin API with it like any other client.
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import Response

from passhouse.errors import NotFound
from passhouse.web.pages import security_headers

router = APIRouter(include_in_schema=False)

# Everything the page needs comes from this origin; nothing runs inline. `data:` is the
# page's empty favicon, so the browser asks for no /favicon.ico, and the pass previews'
# images. Pass previews are standalone pages shown in sandboxed srcdoc frames, which take
# this policy: their inline <style> needs 'unsafe-inline' for styles (never for scripts,
# and the sandbox runs none); ADR 0022.
_SECURITY_HEADERS = security_headers(
    script_src="'self'",
    style_src="'self' 'unsafe-inline'",
    img_src="'self' data:",
    connect_src="'self'",
)

# A fixed list, not a directory lookup: a request names a key here or gets a 404, so no
# path the client sends ever reaches the file system.
_STATIC_TYPES = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}


def _read(name: str) -> bytes:
    return resources.files("passhouse.web").joinpath("static", name).read_bytes()


@router.get("/dashboard")
async def dashboard_page() -> Response:
    return Response(
        _read("dashboard.html"),
        media_type="text/html; charset=utf-8",
        headers=_SECURITY_HEADERS,
    )


@router.get("/dashboard/static/{name}")
async def dashboard_static(name: str) -> Response:
    media_type = _STATIC_TYPES.get(name)
    if media_type is None:
        raise NotFound(f"No dashboard file {name!r}.")
    return Response(_read(name), media_type=media_type, headers=_SECURITY_HEADERS)
