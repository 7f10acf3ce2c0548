"""``/schema``: the browsable OpenAPI page loads scripts and styles only from the
authority itself, under a CSP, so that no third-party code runs on its origin and the
page works offline (README, "HTTP API")."""

from __future__ import annotations

import re
from urllib.parse import urljoin, urlsplit

import pytest

from tests.helpers.world import World

pytestmark = pytest.mark.asyncio(loop_scope="module")
SOURCES = re.compile(r"""<(?:script|link|img)\b[^>]*?\b(?:src|href)\s*=\s*["']([^"']+)["']""")


async def test_the_schema_page_loads_only_same_origin_assets_under_a_csp(world: World) -> None:
    page = await world.http.get("/schema")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert "http" not in csp
    assert "*" not in csp
    sources = SOURCES.findall(page.text)
    assert any(s.endswith(".js") for s in sources)
    assert any(s.endswith(".css") for s in sources)
    for source in sources:
        url = urlsplit(urljoin("http://testserver.local/schema", source))
        assert url.netloc == "testserver.local", source
        asset = await world.http.get(url.path)
        assert asset.status_code == 200, source
        assert asset.content
    assert "<script>" not in page.text  # no inline script for the CSP to refuse


async def test_the_schema_document_is_still_served(world: World) -> None:
    document = await world.http.get("/schema/openapi.json")
    assert document.status_code == 200
    assert "/auth/login" in document.json()["paths"]


@pytest.mark.parametrize("name", ["index.html", "swagger-initializer.js", "..%2F__init__.py"])
async def test_only_the_pages_own_assets_are_served(world: World, name: str) -> None:
    assert (await world.http.get(f"/schema/assets/{name}")).status_code == 404
