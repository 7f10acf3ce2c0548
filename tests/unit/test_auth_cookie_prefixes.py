"""With ``Secure`` cookies the /auth cookies carry the prefixes of RFC 6265bis section
4.1.3, so that a sibling subdomain cannot plant a session or a CSRF token:
``__Host-access_token`` and ``__Host-csrftoken`` (Path ``/``, no Domain) and
``__Secure-refresh_token`` (Path ``/auth``). Cookies under the plain names are then
ignored. ``/auth/csrf`` names the CSRF cookie, so scripts need not guess it (README,
"Logging in users")."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.helpers.world import PASSWORD, World, WorldConfig, asgi_client

pytestmark = pytest.mark.asyncio(loop_scope="module")
HTTPS = "https://testserver.local"


@pytest.fixture(scope="module")
def world_config() -> WorldConfig:
    return WorldConfig(settings={"cookie_secure": True, "issuer": HTTPS})


@pytest.fixture
async def browser(world: World) -> AsyncIterator[httpx.AsyncClient]:
    """A cookie jar on https, which keeps and sends Secure cookies."""
    client = asgi_client(world.app, "203.0.113.9")
    client.base_url = httpx.URL(HTTPS)
    async with client:
        yield client


def set_cookies(response: httpx.Response) -> dict[str, str]:
    """Each cookie the answer sets: its name and its lowercased attributes."""
    cookies = {}
    for header in response.headers.get_list("set-cookie"):
        name, _, rest = header.partition("=")
        cookies[name] = rest.lower()
    return cookies


async def log_in(browser: httpx.AsyncClient, world: World) -> httpx.Response:
    name, _ = await world.new_user()
    answer = (await browser.get("/auth/csrf")).json()
    assert answer["cookie_name"] == "__Host-csrftoken"
    return await browser.post(
        "/auth/login",
        json={"username": name, "password": PASSWORD},
        headers={"X-CSRFToken": answer["csrf_token"]},
    )


async def test_secure_cookies_carry_host_and_secure_prefixes(
    world: World, browser: httpx.AsyncClient
) -> None:
    login = await log_in(browser, world)
    assert login.status_code == 200, login.text
    cookies = set_cookies(login)
    assert set(cookies) == {"__Host-access_token", "__Secure-refresh_token", "__Host-csrftoken"}
    for name in ("__Host-access_token", "__Host-csrftoken"):
        assert "path=/;" in cookies[name]
        assert "secure" in cookies[name]
        assert "domain=" not in cookies[name]
    assert "path=/auth" in cookies["__Secure-refresh_token"]
    assert "secure" in cookies["__Secure-refresh_token"]
    assert (await browser.get("/auth/me")).status_code == 200
    refreshed = await browser.post(
        "/auth/refresh", headers={"X-CSRFToken": browser.cookies["__Host-csrftoken"]}
    )
    assert refreshed.status_code == 200, refreshed.text
    logout = await browser.post(
        "/auth/logout", headers={"X-CSRFToken": browser.cookies["__Host-csrftoken"]}
    )
    assert logout.status_code == 200
    assert set(set_cookies(logout)) == set(cookies)


async def test_cookies_under_the_plain_names_are_ignored(
    world: World, browser: httpx.AsyncClient
) -> None:
    """What a sibling subdomain could plant (it cannot set a ``__Host-`` cookie)."""
    login = await log_in(browser, world)
    access = browser.cookies["__Host-access_token"]
    token = browser.cookies["__Host-csrftoken"]
    planted = asgi_client(world.app)
    planted.base_url = httpx.URL(HTTPS)
    async with planted:
        planted.cookies.set("access_token", access)
        planted.cookies.set("csrftoken", token)
        assert login.status_code == 200
        assert (await planted.get("/auth/me")).status_code == 401
        async with world.unchanged():
            logout_all = await planted.post("/auth/logout-all", headers={"X-CSRFToken": token})
        # Under the real names there is no access cookie: not authenticated.
        assert logout_all.status_code == 401
