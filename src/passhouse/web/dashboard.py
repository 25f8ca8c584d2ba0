"""The issuer dashboard at /dashboard: one page, one script, one stylesheet, no build step.

It holds no secrets and no state: the browser keeps the API key the user types and calls
the admin API with it like any other client.
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import Response

from passhouse.errors import NotFound

router = APIRouter(include_in_schema=False)

# Everything the page needs comes from this origin; nothing runs inline. `blob:` lets the
# script hand a downloaded .pkpass to the browser; `data:` covers the CSS's own icons.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'none'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ]
)

# A fixed list, not a directory lookup: a request names a key here or gets a 404, so no
# path the client sends ever reaches the file system.
_STATIC_TYPES = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}

_SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
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
