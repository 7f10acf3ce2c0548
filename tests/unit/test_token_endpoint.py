"""The token, revocation and introspection endpoints doing what RFC 6749/7009/7662 say."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import jwt
import pytest
import pytest_asyncio

from authority.accounts.passwords import HASHER
from authority.accounts.users import find_user, set_active
from authority.settings import Settings
from tests.helpers.world import (
    PASSWORD,
    ClientSpec,
    World,
    WorldConfig,
    open_world,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")
SECRET = "s" * 40
CLIENTS = {
    "service": ClientSpec(False, ["client_credentials"], ["read", "write"], ["billing"]),
    "app": ClientSpec(True, ["password", "refresh_token"], ["profile", "email"]),  # public
}


@pytest.fixture(scope="module")
def world_config() -> WorldConfig:
    return WorldConfig(settings={"secret_key": SECRET, "refresh_reuse_grace": 0}, clients=CLIENTS)


@pytest_asyncio.fixture(loop_scope="module")
async def running_world(world_config: WorldConfig, tmp_path: Path) -> AsyncIterator[World]:
    """A new app and database for every test (tests change Alice), with a service
    and a public app client."""
    async with world_config.open(tmp_path) as opened:
        await opened.add_user("Alice", "alice@example.com")
        yield opened


def service_auth(world: World) -> dict[str, str]:
    return {"Authorization": world.basic("service")}


async def login(world: World, **extra: str) -> dict[str, object]:
    return await world.granted(
        grant_type="password",
        client_id=world.client_id("app"),
        username="alice",
        password=PASSWORD,
        **extra,
    )


async def test_client_credentials_token_follows_rfc9068(world: World) -> None:
    response = await world.http.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, headers=service_auth(world)
    )
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == world.settings.access_ttl
    assert "refresh_token" not in body
    assert jwt.get_unverified_header(body["access_token"])["typ"] == "at+jwt"
    claims = world.decode(body["access_token"], audience="billing")  # the client's default
    assert claims["sub"] == claims["client_id"] == world.client_id("service")
    assert claims["scope"] == body["scope"] == "read write"
    assert {"iss", "sub", "aud", "exp", "iat", "jti", "client_id", "scope"} <= set(claims)
    assert claims["exp"] == claims["iat"] + world.settings.access_ttl


async def test_client_secret_post_works_like_basic(world: World) -> None:
    body = await world.granted(
        grant_type="client_credentials",
        client_id=world.client_id("service"),
        client_secret=world.secrets["service"],
        scope="read",
    )
    assert body["scope"] == "read"


async def test_a_client_may_narrow_its_scope_and_name_an_allowed_audience(world: World) -> None:
    response = await world.http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "write", "audience": "billing"},
        headers=service_auth(world),
    )
    assert response.status_code == 200
    assert world.decode(response.json()["access_token"], audience="billing")["scope"] == "write"


async def test_a_foreign_audience_is_invalid_target(world: World) -> None:
    response = await world.http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "audience": "payroll"},
        headers=service_auth(world),
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_target"


async def test_password_grant_gives_user_tokens_with_username_and_a_refresh_token(
    world: World,
) -> None:
    body = await login(world, scope="profile")
    claims = world.decode(str(body["access_token"]))
    assert claims["username"] == "Alice"
    assert claims["scope"] == "profile"
    assert isinstance(body["refresh_token"], str)
    assert len(body["refresh_token"]) == 43


async def test_login_is_case_insensitive_and_accepts_the_email(world: World) -> None:
    await world.granted(
        grant_type="password",
        client_id=world.client_id("app"),
        username="ALICE@example.com",
        password=PASSWORD,
    )


async def test_wrong_password_and_unknown_user_give_the_same_answer(world: World) -> None:
    answers = []
    for username, password in (("alice", "wrong password"), ("nobody", PASSWORD)):
        response = await world.http.post(
            "/oauth/token",
            data={
                "grant_type": "password",
                "client_id": world.client_id("app"),
                "username": username,
                "password": password,
            },
        )
        answers.append((response.status_code, response.json()))
    assert (
        answers[0]
        == answers[1]
        == (400, {"error": "invalid_grant", "error_description": "invalid username or password"})
    )


async def test_old_password_hash_parameters_are_upgraded_on_login(world: World) -> None:
    from argon2 import PasswordHasher

    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    from authority.accounts.users import set_password_hash

    user = await world.db.read(find_user, "alice")
    assert user is not None
    await world.db.write(set_password_hash, user.id, weak)
    await login(world)
    upgraded = await world.db.read(find_user, "alice")
    assert upgraded is not None
    assert upgraded.password_hash != weak
    assert not HASHER.check_needs_rehash(upgraded.password_hash)


async def test_refresh_rotates_and_keeps_the_session(world: World) -> None:
    first = await login(world)
    second = await world.granted(
        grant_type="refresh_token",
        client_id=world.client_id("app"),
        refresh_token=str(first["refresh_token"]),
    )
    assert second["refresh_token"] != first["refresh_token"]
    a, b = world.decode(str(first["access_token"])), world.decode(str(second["access_token"]))
    assert a["sid"] == b["sid"]
    assert a["jti"] != b["jti"]


async def test_a_disabled_user_cannot_log_in(world: World) -> None:
    user = await world.db.read(find_user, "alice")
    assert user is not None
    await world.db.write(set_active, user.id, False)
    response = await world.http.post(
        "/oauth/token",
        data={
            "grant_type": "password",
            "client_id": world.client_id("app"),
            "username": "alice",
            "password": PASSWORD,
        },
    )
    assert response.json()["error"] == "invalid_grant"


async def introspect(world: World, token: str) -> dict[str, object]:
    response = await world.http.post(
        "/oauth/introspect", data={"token": token}, headers=service_auth(world)
    )
    assert response.status_code == 200
    return dict(response.json())


async def test_introspection_describes_an_active_access_token(world: World) -> None:
    body = await login(world)
    answer = await introspect(world, str(body["access_token"]))
    assert answer["active"] is True
    assert answer["username"] == "Alice"
    assert answer["client_id"] == world.client_id("app")


async def test_revoked_access_token_introspects_inactive(world: World) -> None:
    body = await world.granted(
        grant_type="client_credentials",
        client_id=world.client_id("service"),
        client_secret=world.secrets["service"],
    )
    token = str(body["access_token"])
    response = await world.http.post(
        "/oauth/revoke", data={"token": token}, headers=service_auth(world)
    )
    assert response.status_code == 200
    assert await introspect(world, token) == {"active": False}


async def test_revoking_a_refresh_token_ends_the_family_and_its_access_tokens(world: World) -> None:
    body = await login(world)
    response = await world.http.post(
        "/oauth/revoke", data={"token": body["refresh_token"], "client_id": world.client_id("app")}
    )
    assert response.status_code == 200
    assert await introspect(world, str(body["access_token"])) == {"active": False}
    refused = await world.http.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "client_id": world.client_id("app"),
            "refresh_token": body["refresh_token"],
        },
    )
    assert refused.json()["error"] == "invalid_grant"


async def test_reuse_revokes_the_family_so_its_access_tokens_go_inactive(world: World) -> None:
    first = await login(world)
    await world.granted(
        grant_type="refresh_token",
        client_id=world.client_id("app"),
        refresh_token=str(first["refresh_token"]),
    )
    reuse = await world.http.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "client_id": world.client_id("app"),
            "refresh_token": first["refresh_token"],
        },
    )
    assert reuse.json()["error"] == "invalid_grant"
    assert await introspect(world, str(first["access_token"])) == {"active": False}


async def test_introspection_of_a_refresh_token_is_for_its_own_client_only(world: World) -> None:
    body = await login(world)
    assert await introspect(world, str(body["refresh_token"])) == {"active": False}


async def test_metadata_lists_the_scopes_of_the_clients(world: World) -> None:
    document = (await world.http.get("/.well-known/oauth-authorization-server")).json()
    # The clients' scopes, and OpenID Connect's (README, "Log in an app on another origin").
    assert document["scopes_supported"] == [
        "email",
        "offline_access",
        "openid",
        "profile",
        "read",
        "write",
    ]


async def test_claims_hook_adds_claims_but_cannot_override_registered_ones(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(secret_key=SECRET)
    service = {"service": ClientSpec(False, ["client_credentials"], scopes=[])}

    def hook(claims: object) -> dict[str, object]:
        return {"tenant": "acme", "sub": "forged", "scope": "admin"}

    async with open_world(settings, service, claims_hook=hook) as world:
        client_id = world.client_id("service")
        response = await world.http.post(
            "/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": world.secrets["service"],
            },
        )
    claims = jwt.decode(response.json()["access_token"], options={"verify_signature": False})
    assert claims["tenant"] == "acme"
    assert claims["sub"] == client_id
    assert claims["scope"] == ""


async def test_token_requests_are_timed_in_the_metrics(world: World) -> None:
    await world.granted(
        grant_type="client_credentials",
        client_id=world.client_id("service"),
        client_secret=world.secrets["service"],
    )
    text = (await world.http.get("/metrics")).text
    assert 'authority_token_request_duration_seconds_count{status="200"}' in text
    assert 'authority_tokens_issued_total{grant="client_credentials"}' in text
