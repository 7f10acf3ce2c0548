"""OpenID Connect around the code flow (README, "Log in an app on another origin"):
discovery, ``/oauth/userinfo`` (401 with ``WWW-Authenticate``, 403 without
``openid``) and RP-initiated logout at ``/oauth/logout``, which ends the browser's
session and the sessions its codes opened."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.helpers.authcode import CALLBACK, Pkce, code_for, exchange, log_in
from tests.helpers.world import ClientSpec, World, WorldConfig

pytestmark = pytest.mark.asyncio(loop_scope="module")
SIGNED_OUT = "https://app.example.com/signed-out"
CLIENTS = {
    "app": ClientSpec(False, ["password", "refresh_token"]),
    "spa": ClientSpec(
        True,
        ["authorization_code", "refresh_token"],
        scopes=("openid", "profile", "email", "read"),
        redirect_uris=(CALLBACK,),
        first_party=True,
        post_logout_redirect_uris=(SIGNED_OUT,),
    ),
}


@pytest.fixture(scope="module")
def world_config() -> WorldConfig:
    return WorldConfig(clients=CLIENTS)


async def tokens(world: World, scope: str) -> tuple[Any, dict[str, Any]]:
    name, _ = await world.new_user()
    browser = world.browser()
    await log_in(browser, name)
    pkce = Pkce.new()
    code = await code_for(world, browser, "spa", pkce, scope=scope)
    response = await exchange(world, "spa", code, pkce.verifier)
    assert response.status_code == 200, response.text
    return browser, dict(response.json())


async def test_both_metadata_documents_advertise_the_code_flow(world: World) -> None:
    issuer = world.settings.issuer
    oauth = (await world.http.get("/.well-known/oauth-authorization-server")).json()
    oidc = (await world.http.get("/.well-known/openid-configuration")).json()
    assert oauth == oidc
    assert oidc["authorization_endpoint"] == f"{issuer}/oauth/authorize"
    assert oidc["userinfo_endpoint"] == f"{issuer}/oauth/userinfo"
    assert oidc["end_session_endpoint"] == f"{issuer}/oauth/logout"
    assert oidc["response_types_supported"] == ["code"]
    assert oidc["response_modes_supported"] == ["query"]
    assert oidc["code_challenge_methods_supported"] == ["S256"]
    assert oidc["subject_types_supported"] == ["public"]
    assert "RS256" in oidc["id_token_signing_alg_values_supported"]
    assert {"sub", "nonce", "at_hash", "email"} <= set(oidc["claims_supported"])
    assert oidc["authorization_response_iss_parameter_supported"] is True
    assert {"openid", "profile", "email", "offline_access"} <= set(oidc["scopes_supported"])
    assert "authorization_code" in oidc["grant_types_supported"]


async def test_userinfo_answers_the_claims_of_the_granted_scopes(world: World) -> None:
    _, granted = await tokens(world, "openid profile")
    bearer = {"Authorization": f"Bearer {granted['access_token']}"}
    got = await world.http.get("/oauth/userinfo", headers=bearer)
    assert got.status_code == 200
    claims = got.json()
    assert set(claims) == {"sub", "preferred_username"}
    posted = await world.http.post("/oauth/userinfo", headers=bearer)
    assert posted.json() == claims


async def test_userinfo_refuses_missing_bad_and_openid_less_tokens(world: World) -> None:
    missing = await world.http.get("/oauth/userinfo")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    bad = await world.http.get("/oauth/userinfo", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401
    assert 'error="invalid_token"' in bad.headers["www-authenticate"]
    _, granted = await tokens(world, "read")
    scoped = await world.http.get(
        "/oauth/userinfo", headers={"Authorization": f"Bearer {granted['access_token']}"}
    )
    assert scoped.status_code == 403
    assert 'error="insufficient_scope"' in scoped.headers["www-authenticate"]


async def test_logout_ends_the_browser_session_and_the_apps_sessions(world: World) -> None:
    browser, granted = await tokens(world, "openid")
    response = await browser.get(
        "/oauth/logout",
        params={
            "id_token_hint": granted["id_token"],
            "post_logout_redirect_uri": SIGNED_OUT,
            "state": "bye",
        },
    )
    assert response.status_code == 302
    location = urlsplit(response.headers["location"])
    assert location._replace(query="").geturl() == SIGNED_OUT
    assert parse_qs(location.query) == {"state": ["bye"]}
    assert (await browser.get("/auth/me")).status_code == 401
    refreshed = await world.refresh(granted["refresh_token"], "spa")
    assert refreshed.json()["error"] == "invalid_grant"
    userinfo = await world.http.get(
        "/oauth/userinfo", headers={"Authorization": f"Bearer {granted['access_token']}"}
    )
    assert userinfo.status_code == 401


async def test_logout_never_redirects_to_an_unregistered_uri(world: World) -> None:
    browser, granted = await tokens(world, "openid")
    for params in (
        {"id_token_hint": granted["id_token"], "post_logout_redirect_uri": "https://evil.example/"},
        {"post_logout_redirect_uri": SIGNED_OUT},  # no client named
        {"client_id": "nope", "post_logout_redirect_uri": SIGNED_OUT},
        {"id_token_hint": "not.a.token"},
        {"id_token_hint": granted["access_token"]},  # an access token is not an ID token
    ):
        async with world.unchanged():
            response = await browser.get("/oauth/logout", params=params)
        assert response.status_code == 400, params
        assert "location" not in response.headers
    assert (await browser.get("/auth/me")).status_code == 200
    plain = await browser.get("/oauth/logout")
    assert plain.status_code == 200
    assert "signed out" in plain.text
    assert (await browser.get("/auth/me")).status_code == 401
