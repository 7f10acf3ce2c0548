"""Hostile and malformed input on /auth: a clear 4xx in JSON, never a 5xx, and nothing
changed in the database."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from authority.settings import Settings
from tests.helpers.deployment import database
from tests.helpers.world import PASSWORD, World, WorldConfig, csrf, open_world

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def world_config() -> WorldConfig:
    return WorldConfig(settings={"login_max_failures_address": 1000})


def tampered(token: str) -> str:
    """The same token with its payload edited (a higher privilege), signature kept."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "1"
    claims["username"] = "admin"
    edited = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{edited}.{signature}"


async def test_a_tampered_access_cookie_is_not_authenticated(world: World) -> None:
    client = await world.logged_in()
    client.cookies.set("access_token", tampered(client.cookies["access_token"]))
    me = await client.get("/auth/me")
    assert me.status_code == 401
    assert me.json() == {"detail": "not authenticated"}
    assert (await client.get("/auth/check")).json() == {"authenticated": False}


@pytest.mark.parametrize(
    "token", ["", "garbage", "a.b.c", "eyJhbGciOiJub25lIn0.e30.", "x" * 20_000]
)
async def test_malformed_bearer_tokens_are_not_authenticated(world: World, token: str) -> None:
    response = await world.browser().get("/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


async def test_a_one_megabyte_password_is_refused_before_any_work(world: World) -> None:
    name, _ = await world.new_user()
    async with world.unchanged():
        response = await world.browser().post(
            "/auth/login",
            json={"username": name, "password": "x" * 1_000_000, "delivery": "body"},
        )
    assert response.status_code == 413
    assert response.headers["content-type"].startswith("application/json")


async def test_a_password_over_the_limit_but_under_the_body_cap_gets_the_same_401(
    world: World,
) -> None:
    name, _ = await world.new_user()
    response = await world.browser().post(
        "/auth/login", json={"username": name, "password": "x" * 5000, "delivery": "body"}
    )
    assert response.status_code == 401
    assert response.json() == {"detail": "invalid username or password"}


@pytest.mark.parametrize(
    "password", ["with\x00nul inside", "emoji 🔐🦄 passphrase", "combining é vs é", "\x00" * 12]
)
async def test_passwords_with_nul_or_emoji_are_accepted_and_hashed_exactly(
    world: World, password: str
) -> None:
    name = f"uni{abs(hash(password)) % 10**9}"
    registered = await world.browser().post(
        "/auth/register",
        json={
            "username": name,
            "email": f"{name}@example.org",
            "password": password,
            "delivery": "body",
        },
    )
    assert registered.status_code == 201, registered.text
    good = await world.browser().post(
        "/auth/login", json={"username": name, "password": password, "delivery": "body"}
    )
    assert good.status_code == 200
    for near in (password.split("\x00")[0] or "x", password[:-1], password + "\x00"):
        if near == password:
            continue
        bad = await world.browser().post(
            "/auth/login", json={"username": name, "password": near, "delivery": "body"}
        )
        assert bad.status_code == 401, near


@pytest.mark.parametrize(
    "body", ["[1, 2]", '"text"', "42", "null", "{", "", '{"username": 1, "password": "x"}']
)
async def test_a_login_body_that_is_not_the_documented_object_is_a_400(
    world: World, body: str
) -> None:
    async with world.unchanged():
        response = await world.browser().post(
            "/auth/login", content=body, headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 400, response.text
    assert response.json()["detail"]


@pytest.mark.parametrize("path", ["/auth/login", "/auth/register", "/auth/refresh"])
async def test_unknown_fields_are_refused(world: World, path: str) -> None:
    body = {
        "username": "u",
        "email": "u@example.org",
        "password": PASSWORD,
        "delivery": "body",
        "is_admin": True,
    }
    if path == "/auth/refresh":
        body = {"refresh": "x" * 43, "is_admin": True}
    async with world.unchanged():
        response = await world.browser().post(path, json=body)
    assert response.status_code == 400
    assert "is_admin" in json.dumps(response.json())


async def test_a_delivery_that_is_neither_cookie_nor_body_is_refused(world: World) -> None:
    response = await world.browser().post(
        "/auth/login", json={"username": "x", "password": PASSWORD, "delivery": "both"}
    )
    assert response.status_code == 400


async def test_login_needs_exactly_one_of_username_and_email(world: World) -> None:
    name, email = await world.new_user()
    for body in (
        {"password": PASSWORD, "delivery": "body"},
        {"username": name, "email": email, "password": PASSWORD, "delivery": "body"},
    ):
        response = await world.browser().post("/auth/login", json=body)
        assert response.status_code == 400
        assert "username" in response.json()["errors"]


async def test_the_bearer_header_wins_over_cookies_of_another_user(world: World) -> None:
    carol, _ = await world.new_user()
    dave, _ = await world.new_user()
    browser = await world.logged_in(carol)
    dave_tokens = await world.body_login(dave)
    me = await browser.get("/auth/me", headers={"Authorization": f"Bearer {dave_tokens['access']}"})
    assert me.json()["username"] == dave
    assert (await browser.get("/auth/me")).json()["username"] == carol
    # A bad header does not fall back to the cookies either.
    bad = await browser.get("/auth/me", headers={"Authorization": "Bearer nonsense"})
    assert bad.status_code == 401


async def test_a_refresh_cookie_is_never_answered_in_the_body(world: World) -> None:
    client = await world.logged_in()
    response = await client.post("/auth/refresh", json={}, headers=csrf(client))
    assert response.status_code == 200
    assert set(response.json()) == {"expires_in", "refresh_expires_in"}
    assert client.cookies["refresh_token"] not in response.text


async def test_an_unknown_or_malformed_refresh_token_is_a_401_and_changes_nothing(
    world: World,
) -> None:
    for token in ("x" * 43, "short", "\x00" * 43, "é" * 43):
        async with world.unchanged():
            response = await world.browser().post("/auth/refresh", json={"refresh": token})
        assert response.status_code == 401
        assert response.json()["error"] == "invalid_grant"


async def test_a_refresh_token_of_another_client_is_refused_and_left_intact(world: World) -> None:
    session = await world.with_session()
    async with world.unchanged():
        response = await world.browser().post(
            "/auth/refresh", json={"refresh": session.refresh_token}
        )
        logout = await world.browser().post("/auth/logout", json={"refresh": session.refresh_token})
    assert response.status_code == 401
    assert logout.status_code == 200
    await session.assert_refresh_works(session.refresh_token)


async def test_me_without_any_token_is_a_401(world: World) -> None:
    response = await world.browser().get("/auth/me")
    assert response.status_code == 401
    assert response.json() == {"detail": "not authenticated"}


async def test_logout_without_a_session_still_answers_200_and_clears_cookies(world: World) -> None:
    client = world.browser()
    await client.get("/auth/csrf")
    response = await client.post("/auth/logout", headers=csrf(client))
    assert response.status_code == 200
    cleared = [h for h in response.headers.get_list("set-cookie") if "Max-Age=0" in h]
    assert {h.split("=")[0] for h in cleared} == {"access_token", "refresh_token"}


async def test_a_bearer_request_does_not_refresh_from_the_cookie(world: World) -> None:
    name, _ = await world.new_user()
    tokens = await world.body_login(name)
    browser = await world.logged_in()
    async with world.unchanged():
        response = await browser.post(
            "/auth/refresh", headers={"Authorization": f"Bearer {tokens['access']}"}
        )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_grant"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_a_nul_byte_in_the_login_name_is_a_plain_401_on_every_backend(
    backend: str, tmp_path: Path
) -> None:
    with database(backend, tmp_path) as url:
        settings = Settings(
            database_url=url, keys_dir=tmp_path / "keys", env="test", secret_key="b" * 40
        )
        async with open_world(settings) as nul_world:
            for field in ("username", "email"):
                response = await nul_world.browser().post(
                    "/auth/login",
                    json={field: "al\x00ice@x", "password": PASSWORD, "delivery": "body"},
                )
                assert response.status_code == 401, response.text
