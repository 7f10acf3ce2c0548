"""The token, revocation and introspection endpoints doing what RFC 6749/7009/7662 say."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import jwt
import pytest
from litestar.testing import AsyncTestClient

from authority.accounts.clients import ClientRecord, create_client, hash_secret
from authority.accounts.passwords import HASHER, hash_password
from authority.accounts.users import create_user, find_user, set_active
from authority.settings import Settings
from authority.signing.file_store import FileKeyStore
from authority.signing.manager import ensure_key
from authority.storage.database import Database
from authority.storage.migrate import upgrade
from authority.web.app import create_app

SECRET = "s" * 40
PASSWORD = "correct horse battery"


@dataclass
class World:
    client: AsyncTestClient  # type: ignore[type-arg]
    settings: Settings
    db: Database
    service: ClientRecord
    service_secret: str
    app_client: ClientRecord  # public, password + refresh_token
    jwks: jwt.PyJWKSet

    async def token(self, **form: str) -> dict[str, object]:
        response = await self.client.post("/oauth/token", data=form)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def basic(self) -> dict[str, str]:
        raw = f"{self.service.client_id}:{self.service_secret}".encode()
        return {"Authorization": "Basic " + base64.b64encode(raw).decode()}

    def decode(self, token: str, audience: str = "default") -> dict[str, object]:
        kid = jwt.get_unverified_header(token)["kid"]
        return dict(jwt.decode(token, self.jwks[kid].key, ["RS256"], audience=audience,
                               issuer=self.settings.issuer))


@pytest.fixture
async def world(make_settings: Callable[..., Settings]) -> AsyncIterator[World]:
    settings = make_settings(secret_key=SECRET, refresh_reuse_grace=0)
    await asyncio.to_thread(upgrade, settings.database_url)
    settings.keys_dir.mkdir()
    await ensure_key(FileKeyStore(settings.keys_dir), settings)
    db = Database(settings.database_url)
    key = settings.secret_key_bytes()
    now = time.time()
    service = await db.write(create_client, name="svc", secret_hash=hash_secret(key, "svc-secret"),
                             grant_types=["client_credentials"], scopes=["read", "write"],
                             audiences=["billing"], now=now)
    app_client = await db.write(create_client, name="app", secret_hash=None,
                                grant_types=["password", "refresh_token"],
                                scopes=["profile", "email"], audiences=[], now=now)
    await db.write(create_user, username="Alice", email="alice@example.com",
                   password_hash=hash_password(PASSWORD), now=now)
    async with AsyncTestClient(create_app(settings)) as client:
        jwks = jwt.PyJWKSet.from_dict((await client.get("/.well-known/jwks.json")).json())
        yield World(client, settings, db, service, "svc-secret", app_client, jwks)
    await db.dispose()


async def login(world: World, **extra: str) -> dict[str, object]:
    return await world.token(grant_type="password", client_id=world.app_client.client_id,
                             username="alice", password=PASSWORD, **extra)


async def test_client_credentials_token_follows_rfc9068(world: World) -> None:
    response = await world.client.post("/oauth/token", data={"grant_type": "client_credentials"},
                                       headers=world.basic())
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == world.settings.access_ttl
    assert "refresh_token" not in body
    assert jwt.get_unverified_header(body["access_token"])["typ"] == "at+jwt"
    claims = world.decode(body["access_token"])
    assert claims["sub"] == claims["client_id"] == world.service.client_id
    assert claims["scope"] == body["scope"] == "read write"
    assert {"iss", "sub", "aud", "exp", "iat", "jti", "client_id", "scope"} <= set(claims)
    assert claims["exp"] == claims["iat"] + world.settings.access_ttl  # type: ignore[operator]


async def test_client_secret_post_works_like_basic(world: World) -> None:
    body = await world.token(grant_type="client_credentials", client_id=world.service.client_id,
                             client_secret="svc-secret", scope="read")
    assert body["scope"] == "read"


async def test_a_client_may_narrow_its_scope_and_name_an_allowed_audience(world: World) -> None:
    response = await world.client.post(
        "/oauth/token", data={"grant_type": "client_credentials", "scope": "write",
                              "audience": "billing"}, headers=world.basic())
    assert response.status_code == 200
    assert world.decode(response.json()["access_token"], audience="billing")["scope"] == "write"


async def test_a_foreign_audience_is_invalid_target(world: World) -> None:
    response = await world.client.post(
        "/oauth/token", data={"grant_type": "client_credentials", "audience": "payroll"},
        headers=world.basic())
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_target"


async def test_password_grant_gives_user_tokens_with_username_and_a_refresh_token(
        world: World) -> None:
    body = await login(world, scope="profile")
    claims = world.decode(str(body["access_token"]))
    assert claims["username"] == "Alice"
    assert claims["scope"] == "profile"
    assert isinstance(body["refresh_token"], str)
    assert len(body["refresh_token"]) == 43


async def test_login_is_case_insensitive_and_accepts_the_email(world: World) -> None:
    await world.token(grant_type="password", client_id=world.app_client.client_id,
                      username="ALICE@example.com", password=PASSWORD)


async def test_wrong_password_and_unknown_user_give_the_same_answer(world: World) -> None:
    answers = []
    for username, password in (("alice", "wrong password"), ("nobody", PASSWORD)):
        response = await world.client.post("/oauth/token", data={
            "grant_type": "password", "client_id": world.app_client.client_id,
            "username": username, "password": password})
        answers.append((response.status_code, response.json()))
    assert answers[0] == answers[1] == (400, {"error": "invalid_grant",
                                              "error_description": "invalid username or password"})


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
    second = await world.token(grant_type="refresh_token", client_id=world.app_client.client_id,
                               refresh_token=str(first["refresh_token"]))
    assert second["refresh_token"] != first["refresh_token"]
    a, b = world.decode(str(first["access_token"])), world.decode(str(second["access_token"]))
    assert a["sid"] == b["sid"]
    assert a["jti"] != b["jti"]


async def test_a_disabled_user_cannot_log_in(world: World) -> None:
    user = await world.db.read(find_user, "alice")
    assert user is not None
    await world.db.write(set_active, user.id, False)
    response = await world.client.post("/oauth/token", data={
        "grant_type": "password", "client_id": world.app_client.client_id,
        "username": "alice", "password": PASSWORD})
    assert response.json()["error"] == "invalid_grant"


async def introspect(world: World, token: str) -> dict[str, object]:
    response = await world.client.post("/oauth/introspect", data={"token": token},
                                       headers=world.basic())
    assert response.status_code == 200
    return dict(response.json())


async def test_introspection_describes_an_active_access_token(world: World) -> None:
    body = await login(world)
    answer = await introspect(world, str(body["access_token"]))
    assert answer["active"] is True
    assert answer["username"] == "Alice"
    assert answer["client_id"] == world.app_client.client_id


async def test_revoked_access_token_introspects_inactive(world: World) -> None:
    body = await world.token(grant_type="client_credentials", client_id=world.service.client_id,
                             client_secret="svc-secret")
    token = str(body["access_token"])
    response = await world.client.post("/oauth/revoke", data={"token": token},
                                       headers=world.basic())
    assert response.status_code == 200
    assert await introspect(world, token) == {"active": False}


async def test_revoking_a_refresh_token_ends_the_family_and_its_access_tokens(
        world: World) -> None:
    body = await login(world)
    response = await world.client.post("/oauth/revoke", data={
        "token": body["refresh_token"], "client_id": world.app_client.client_id})
    assert response.status_code == 200
    assert await introspect(world, str(body["access_token"])) == {"active": False}
    refused = await world.client.post("/oauth/token", data={
        "grant_type": "refresh_token", "client_id": world.app_client.client_id,
        "refresh_token": body["refresh_token"]})
    assert refused.json()["error"] == "invalid_grant"


async def test_reuse_revokes_the_family_so_its_access_tokens_go_inactive(world: World) -> None:
    first = await login(world)
    await world.token(grant_type="refresh_token", client_id=world.app_client.client_id,
                      refresh_token=str(first["refresh_token"]))
    reuse = await world.client.post("/oauth/token", data={
        "grant_type": "refresh_token", "client_id": world.app_client.client_id,
        "refresh_token": first["refresh_token"]})
    assert reuse.json()["error"] == "invalid_grant"
    assert await introspect(world, str(first["access_token"])) == {"active": False}


async def test_introspection_of_a_refresh_token_is_for_its_own_client_only(world: World) -> None:
    body = await login(world)
    assert await introspect(world, str(body["refresh_token"])) == {"active": False}


async def test_metadata_lists_the_scopes_of_the_clients(world: World) -> None:
    document = (await world.client.get("/.well-known/oauth-authorization-server")).json()
    assert document["scopes_supported"] == ["email", "profile", "read", "write"]


async def test_claims_hook_adds_claims_but_cannot_override_registered_ones(
        make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(secret_key=SECRET)
    await asyncio.to_thread(upgrade, settings.database_url)
    settings.keys_dir.mkdir()
    await ensure_key(FileKeyStore(settings.keys_dir), settings)
    db = Database(settings.database_url)
    client_id = (await db.write(
        create_client, name="svc",
        secret_hash=hash_secret(settings.secret_key_bytes(), "svc-secret"),
        grant_types=["client_credentials"], scopes=[], audiences=[], now=time.time(),
    )).client_id
    await db.dispose()

    def hook(claims: object) -> dict[str, object]:
        return {"tenant": "acme", "sub": "forged", "scope": "admin"}

    async with AsyncTestClient(create_app(settings, claims_hook=hook)) as client:
        response = await client.post("/oauth/token", data={
            "grant_type": "client_credentials", "client_id": client_id,
            "client_secret": "svc-secret"})
    claims = jwt.decode(response.json()["access_token"], options={"verify_signature": False})
    assert claims["tenant"] == "acme"
    assert claims["sub"] == client_id
    assert claims["scope"] == ""


async def test_token_requests_are_timed_in_the_metrics(world: World) -> None:
    await world.token(grant_type="client_credentials", client_id=world.service.client_id,
                      client_secret="svc-secret")
    text = (await world.client.get("/metrics")).text
    assert 'authority_token_request_duration_seconds_count{status="200"}' in text
    assert 'authority_tokens_issued_total{grant="client_credentials"}' in text
