"""CSRF on /auth (README, "HTTP API"): a signed double-submit token bound to the login
session, required for every unsafe request that relies on cookies (login included),
not for Bearer requests nor /oauth; a foreign Origin is refused. A refused request
changes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from authority.settings import Settings, SettingsError
from tests.helpers.world import PASSWORD, World, WorldConfig, csrf, open_world, settings_in

pytestmark = pytest.mark.asyncio(loop_scope="module")
REFUSED = {"detail": "CSRF token missing or incorrect"}


@pytest.fixture(scope="module")
def world_config() -> WorldConfig:
    return WorldConfig(settings={"cors_origins": ("https://app.example.com",)})


async def test_login_without_a_csrf_header_is_refused_and_changes_nothing(world: World) -> None:
    name, _ = await world.new_user()
    client = world.browser()
    await client.get("/auth/csrf")
    async with world.unchanged():
        response = await client.post("/auth/login", json={"username": name, "password": PASSWORD})
    assert response.status_code == 403
    assert response.json() == REFUSED
    assert "access_token" not in client.cookies


async def test_a_header_that_differs_from_the_cookie_is_refused(world: World) -> None:
    name, _ = await world.new_user()
    client, other = world.browser(), world.browser()
    await client.get("/auth/csrf")
    foreign = (await other.get("/auth/csrf")).json()["csrf_token"]
    async with world.unchanged():
        response = await client.post(
            "/auth/login",
            json={"username": name, "password": PASSWORD},
            headers={"X-CSRFToken": foreign},
        )
    assert (response.status_code, response.json()) == (403, REFUSED)


async def test_a_forged_token_with_a_matching_cookie_is_refused(world: World) -> None:
    name, _ = await world.new_user()
    client = world.browser()
    client.cookies.set("csrftoken", "forged.token")
    response = await client.post(
        "/auth/login",
        json={"username": name, "password": PASSWORD},
        headers={"X-CSRFToken": "forged.token"},
    )
    assert (response.status_code, response.json()) == (403, REFUSED)


async def test_a_csrf_token_of_another_session_is_refused_even_when_planted_as_cookie(
    world: World,
) -> None:
    """Cookie tossing: the attacker plants its own session's token in both places."""
    victim, attacker = await world.logged_in(), await world.logged_in()
    attacker_token = attacker.cookies["csrftoken"]
    victim.cookies.set("csrftoken", attacker_token)
    async with world.unchanged():
        response = await victim.post("/auth/logout", headers={"X-CSRFToken": attacker_token})
    assert (response.status_code, response.json()) == (403, REFUSED)
    assert (await victim.get("/auth/me")).status_code == 200


async def test_the_anonymous_token_stops_working_after_login(world: World) -> None:
    name, _ = await world.new_user()
    client = world.browser()
    anonymous = (await client.get("/auth/csrf")).json()["csrf_token"]
    login = await client.post(
        "/auth/login",
        json={"username": name, "password": PASSWORD},
        headers={"X-CSRFToken": anonymous},
    )
    assert login.status_code == 200
    assert client.cookies["csrftoken"] != anonymous
    client.cookies.set("csrftoken", anonymous)
    response = await client.post("/auth/refresh", headers={"X-CSRFToken": anonymous})
    assert (response.status_code, response.json()) == (403, REFUSED)


async def test_csrf_endpoint_keeps_a_token_that_still_fits_the_session(world: World) -> None:
    """Two tabs share the cookie: asking again must not invalidate the other's token."""
    client = await world.logged_in()
    first = (await client.get("/auth/csrf")).json()["csrf_token"]
    second = (await client.get("/auth/csrf")).json()["csrf_token"]
    assert first == second == client.cookies["csrftoken"]


@pytest.mark.parametrize("path", ["/auth/refresh", "/auth/logout", "/auth/logout-all"])
async def test_cookie_requests_need_the_token(world: World, path: str) -> None:
    client = await world.logged_in()
    async with world.unchanged():
        refused = await client.post(path)
    assert (refused.status_code, refused.json()) == (403, REFUSED)
    accepted = await client.post(path, headers=csrf(client))
    assert accepted.status_code == 200, accepted.text


async def test_a_foreign_origin_is_refused_even_with_a_valid_token(world: World) -> None:
    client = await world.logged_in()
    async with world.unchanged():
        response = await client.post(
            "/auth/logout", headers={**csrf(client), "Origin": "https://evil.example"}
        )
    assert response.status_code == 403
    assert response.json() == {"detail": "origin not allowed"}
    assert (await client.get("/auth/me")).status_code == 200


@pytest.mark.parametrize(
    "origin", ["http://testserver.local", "https://app.example.com", "http://127.0.0.1:8000"]
)
async def test_our_own_and_configured_origins_are_accepted(world: World, origin: str) -> None:
    client = await world.logged_in()
    response = await client.post("/auth/refresh", headers={**csrf(client), "Origin": origin})
    assert response.status_code == 200, response.text


async def test_bearer_requests_need_no_csrf_token_and_ignore_cookies(world: World) -> None:
    name, _ = await world.new_user()
    tokens = await world.body_login(name)
    client = world.browser()
    client.cookies.set("csrftoken", "whatever")
    done = await client.post(
        "/auth/logout-all", headers={"Authorization": f"Bearer {tokens['access']}"}
    )
    assert done.status_code == 200, done.text
    assert done.json()["revoked"] == 1


async def test_body_delivery_needs_no_csrf_token(world: World) -> None:
    name, _ = await world.new_user()
    tokens = await world.body_login(name)
    response = await world.browser().post("/auth/refresh", json={"refresh": tokens["refresh"]})
    assert response.status_code == 200, response.text
    logout = await world.browser().post(
        "/auth/logout", json={"refresh": response.json()["refresh"]}
    )
    assert logout.status_code == 200


async def test_oauth_endpoints_need_no_csrf_token(world: World) -> None:
    client = await world.logged_in()
    response = await client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(world.client_id("service"), world.secrets["service"]),
    )
    assert response.status_code == 200, response.text


async def test_cookies_take_the_configured_samesite(tmp_path: Path) -> None:
    settings = settings_in(
        tmp_path,
        cookie_samesite="strict",
    )
    async with open_world(settings) as strict:
        response = await strict.browser().get("/auth/csrf")
        assert "samesite=strict" in response.headers["set-cookie"].lower()


async def test_samesite_none_needs_secure_cookies() -> None:
    with pytest.raises(SettingsError, match="COOKIE_SECURE"):
        Settings(env="test", cookie_samesite="none")
    assert Settings(env="test", cookie_samesite="none", cookie_secure=True).cookie_samesite


@pytest.mark.parametrize("path", ["/auth/login", "/auth/register"])
async def test_a_bearer_header_does_not_spare_a_cookie_delivery_the_csrf_check(
    world: World, path: str
) -> None:
    """A Bearer header says nothing about the cookies the answer would set (login CSRF
    plants the attacker's session): cookie delivery always needs the CSRF token."""
    name, _ = await world.new_user()
    body = {"username": name, "password": PASSWORD}
    if path == "/auth/register":
        body = {"username": f"new-{name}", "email": f"new-{name}@example.org", "password": PASSWORD}
    client = world.browser()
    await client.get("/auth/csrf")
    async with world.unchanged():
        response = await client.post(path, json=body, headers={"Authorization": "Bearer x"})
    assert (response.status_code, response.json()) == (403, REFUSED)
    assert "access_token" not in response.headers.get("set-cookie", "")
