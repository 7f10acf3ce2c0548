"""The login page and ``authority.js``, the browser client of ``/auth``, served as plain
files: no build step. The page forbids inline script and framing (CSP)."""

from __future__ import annotations

from pathlib import Path

from litestar import Response, get
from litestar.datastructures import CacheControlHeader
from litestar.handlers import HTTPRouteHandler
from litestar.router import Router
from litestar.static_files import create_static_files_router

STATIC = Path(__file__).resolve().parent / "static"
# Outside STATIC, so that the page is only ever served with PAGE_HEADERS.
PAGE = Path(__file__).resolve().parent / "templates" / "login.html"
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
}


def frontend_handlers() -> list[HTTPRouteHandler | Router]:
    page = PAGE.read_bytes()

    @get("/login", include_in_schema=False, sync_to_thread=False)
    def login_page() -> Response[bytes]:
        # Litestar adds "; charset=utf-8" to text types itself.
        return Response(page, media_type="text/html", headers=PAGE_HEADERS)

    static = create_static_files_router(
        "/static",
        directories=[STATIC],
        include_in_schema=False,
        # Revalidated on every load, so that a new release is picked up at once.
        cache_control=CacheControlHeader(no_cache=True),
    )
    return [login_page, static]
