"""``/schema``: the OpenAPI document and its browsable page (Swagger UI), whose scripts
and styles the authority serves itself under a CSP, so that no third-party code runs on
its origin and the page works offline (README, "HTTP API").

The Swagger UI files are vendored in ``vendor/swagger-ui`` (its README says which
version, from where, and the licence, Apache-2.0); only the three the page needs are
served, under ``/schema/assets``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar import Request, Router, get
from litestar.exceptions import NotFoundException
from litestar.openapi.plugins import OpenAPIRenderPlugin
from litestar.params import FromPath
from litestar.response import File

ASSETS = Path(__file__).resolve().parent / "vendor" / "swagger-ui"
SERVED = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
# Swagger UI sets styles through the DOM (which a CSP allows) and shows data: images.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


class SwaggerPage(OpenAPIRenderPlugin):
    """Swagger UI from our own origin; ``/static/schema.js`` starts it."""

    def __init__(self, schema_path: str) -> None:
        super().__init__(path="/", favicon="")
        self.assets = f"{schema_path}/assets"

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        title = request.app.openapi_config.title if request.app.openapi_config else ""
        return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<link rel="icon" type="image/png" href="{self.assets}/favicon-32x32.png">
<link rel="stylesheet" href="{self.assets}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui" data-url="{self.get_openapi_json_route(request)}"></div>
<script src="{self.assets}/swagger-ui-bundle.js"></script>
<script src="/static/schema.js"></script>
</body>
</html>
""".encode()


@get("/assets/{name:str}", include_in_schema=False, sync_to_thread=False)
def schema_asset(name: FromPath[str]) -> File:
    if name not in SERVED:
        raise NotFoundException()
    return File(ASSETS / name, content_disposition_type="inline", media_type=SERVED[name])


def schema_router(path: str) -> Router:
    """The router Litestar's OpenAPI plugin fills in: the page, the document and the
    assets, all with the page's security headers."""
    return Router(
        path,
        route_handlers=[schema_asset],
        include_in_schema=False,
        response_headers=PAGE_HEADERS,
    )
