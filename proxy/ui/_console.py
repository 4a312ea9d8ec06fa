"""The curation console at /ui: one HTML page and its static files, all shipped in the package.

The page is a small single-page app of native ES modules with no build step. It holds no
secret: it asks for the admin key and calls the admin API with it, exactly as any client does.
Captures hold untrusted text, so the page renders data only as text, and a strict
Content-Security-Policy forbids inline script, inline style and every foreign origin.
"""

from __future__ import annotations

import re
from pathlib import Path

import anyio
from litestar import Response, Router, get
from litestar.params import FromPath

from proxy._errors import NotFound

UI_DIR = Path(__file__).parent
"""Where index.html, the modules and the stylesheet live, inside the installed package."""

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)

_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    # The files are small and change with each release; revalidating costs next to nothing.
    "cache-control": "no-cache",
}

# Litestar appends the charset to text/* types.
_MEDIA_TYPES = {".js": "text/javascript", ".css": "text/css"}

# One flat directory of plainly named files: nothing else can be asked for, so no path ever
# leaves UI_DIR.
_STATIC_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}\.(js|css)$")


async def _file(name: str, media_type: str) -> Response[bytes]:
    path = anyio.Path(UI_DIR / name)
    if not await path.is_file():
        raise NotFound(f"No console file '{name}'.", code="not_found")
    return Response(await path.read_bytes(), media_type=media_type, headers=_HEADERS)


@get(["/", "/index.html"], name="ui-index")
async def console_page() -> Response[bytes]:
    """The console itself; every page of it is the same document, routed by its URL hash."""
    return await _file("index.html", "text/html")


@get("/static/{name:str}", name="ui-static")
async def console_static(name: FromPath[str]) -> Response[bytes]:
    if _STATIC_NAME.match(name) is None:
        raise NotFound(f"No console file '{name}'.", code="not_found")
    return await _file(name, _MEDIA_TYPES[Path(name).suffix])


def ui_router() -> Router:
    """The console's routes under /ui, kept out of the admin API's OpenAPI schema."""
    return Router(
        path="/ui",
        route_handlers=[console_page, console_static],
        include_in_schema=False,
    )
