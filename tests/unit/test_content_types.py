"""Every page and text answer says its media type once, with one charset: ``/login``
used to send ``text/html; charset=utf-8; charset=utf-8``."""

from __future__ import annotations

import pytest

from tests.helpers.world import World

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_the_login_page_is_html_in_utf_8_said_once(world: World) -> None:
    page = await world.http.get("/login")
    assert page.status_code == 200
    assert page.headers.get_list("content-type") == ["text/html; charset=utf-8"]


@pytest.mark.parametrize(
    "path",
    [
        "/static/authority.js",
        "/schema",
        "/metrics",
        "/health/live",
        "/.well-known/jwks.json",
        "/.well-known/oauth-authorization-server",
    ],
)
async def test_no_answer_names_a_charset_twice(world: World, path: str) -> None:
    answer = await world.http.get(path)
    assert answer.status_code == 200
    [content_type] = answer.headers.get_list("content-type")
    assert content_type.count("charset") <= 1, content_type
