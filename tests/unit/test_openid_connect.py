"""OpenID Connect around the code flow (README, "Log in an app on another origin"):
discovery, ``/oauth/userinfo`` (401 with ``WWW-Authenticate``, 403 without
``openid``) and RP-initiated logout at ``/oauth/logout``, which ends the browser's
session and the sessions its codes opened, asking the user first when no
``id_token_hint`` shows which app asks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.helpers.authcode import CALLBACK, Pkce, code_for, exchange, hidden_fields, log_in
from tests.helpers.postgres import BACKENDS
from tests.helpers.world import ClientSpec, World, WorldConfig, on_backend

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


@pytest.fixture(scope="module", params=BACKENDS)
def world_config(request: pytest.FixtureRequest) -> Iterator[WorldConfig]:
    # No pruning (every 30 s by default) of the codes of earlier tests in the middle of
    # an ``unchanged`` block: a module on PostgreSQL runs for over a minute.
    base = WorldConfig(clients=CLIENTS, settings={"maintenance_interval": 3600})
    with on_backend(base, request.param) as config:
        yield config


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


@pytest.mark.parametrize(
    ("scope", "claims"),
    [
        ("openid", {"sub"}),
        ("openid profile", {"sub", "preferred_username"}),
        ("openid email", {"sub", "email", "email_verified"}),
    ],
)
async def test_email_verified_is_false_and_comes_only_with_the_email_scope(
    world: World, scope: str, claims: set[str]
) -> None:
    """The users table records no verification of addresses (README)."""
    _, granted = await tokens(world, scope)
    bearer = {"Authorization": f"Bearer {granted['access_token']}"}
    userinfo = (await world.http.get("/oauth/userinfo", headers=bearer)).json()
    id_token = world.decode(granted["id_token"], audience=world.client_id("spa"))
    assert set(userinfo) == claims
    assert claims <= set(id_token)
    assert not ({"email", "email_verified", "preferred_username"} - claims) & set(id_token)
    if "email" in claims:
        assert userinfo["email_verified"] is False
        assert id_token["email_verified"] is False


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


async def test_logout_without_a_hint_asks_the_user_and_the_confirmed_form_signs_out(
    world: World,
) -> None:
    browser, granted = await tokens(world, "openid")
    ask = {"client_id": world.client_id("spa"), "post_logout_redirect_uri": SIGNED_OUT}
    async with world.unchanged():
        page = await browser.get("/oauth/logout", params={**ask, "state": "bye"})
    assert page.status_code == 200
    assert 'id="logout-form"' in page.text
    assert "<script" not in page.text
    policy = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy
    assert "form-action 'self' https://app.example.com;" in policy
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["referrer-policy"] == "same-origin"
    assert (await browser.get("/auth/me")).status_code == 200
    fields = hidden_fields(page.text)
    assert fields.keys() == {"client_id", "post_logout_redirect_uri", "state", "csrf_token"}
    confirmed = await browser.post(
        "/oauth/logout", data=fields, headers={"Origin": "http://testserver.local"}
    )
    assert confirmed.status_code == 303
    assert confirmed.headers["location"] == SIGNED_OUT + "?state=bye"
    assert (await browser.get("/auth/me")).status_code == 401
    refreshed = await world.refresh(granted["refresh_token"], "spa")
    assert refreshed.json()["error"] == "invalid_grant"


async def test_a_bare_confirmed_logout_shows_the_signed_out_page(world: World) -> None:
    browser, _ = await tokens(world, "openid")
    page = await browser.get("/oauth/logout")
    assert page.status_code == 200
    assert "A page asks you to sign out." in page.text
    assert "form-action 'self';" in page.headers["content-security-policy"]
    done = await browser.post("/oauth/logout", data=hidden_fields(page.text))
    assert done.status_code == 200
    assert "signed out" in done.text
    assert (await browser.get("/auth/me")).status_code == 401


async def test_a_logout_confirmation_without_its_csrf_token_is_refused_and_changes_nothing(
    world: World,
) -> None:
    browser, _ = await tokens(world, "openid")
    other, _ = await tokens(world, "openid")
    page = await browser.get("/oauth/logout")
    fields = hidden_fields(page.text)
    theirs = hidden_fields((await other.get("/oauth/logout")).text)
    async with world.unchanged():
        for form in ({"csrf_token": ""}, {"csrf_token": "forged.token"}, theirs, {"state": "x"}):
            refused = await browser.post("/oauth/logout", data=form)
            assert refused.status_code == 403, form
            assert "CSRF" in refused.text
            assert "location" not in refused.headers
        cross_site = await browser.post(
            "/oauth/logout", data=fields, headers={"Origin": "https://evil.example"}
        )
        assert cross_site.status_code == 403
        # A session's token does not work for another session (cookie and form alike).
        other.cookies.delete("csrftoken")
        other.cookies.set("csrftoken", fields["csrf_token"], domain="testserver.local")
        planted = await other.post("/oauth/logout", data=fields)
        assert planted.status_code == 403
    assert (await browser.get("/auth/me")).status_code == 200
    assert (await other.get("/auth/me")).status_code == 200


async def test_a_confirmation_form_altered_to_an_unregistered_uri_is_refused(world: World) -> None:
    browser, _ = await tokens(world, "openid")
    fields = hidden_fields((await browser.get("/oauth/logout")).text)
    async with world.unchanged():
        for extra in (
            {"post_logout_redirect_uri": "https://evil.example/"},
            {
                "client_id": world.client_id("spa"),
                "post_logout_redirect_uri": "https://evil.example/",
            },
        ):
            refused = await browser.post("/oauth/logout", data={**fields, **extra})
            assert refused.status_code == 400, extra
            assert "location" not in refused.headers
    assert (await browser.get("/auth/me")).status_code == 200


async def test_logout_without_a_session_has_nothing_to_ask_and_redirects(world: World) -> None:
    browser = world.browser()
    params = {
        "client_id": world.client_id("spa"),
        "post_logout_redirect_uri": SIGNED_OUT,
        "state": "bye",
    }
    response = await browser.get("/oauth/logout", params=params)
    assert response.status_code == 302
    assert response.headers["location"] == SIGNED_OUT + "?state=bye"


async def test_an_apps_logout_post_with_id_token_hint_needs_no_confirmation(world: World) -> None:
    browser, granted = await tokens(world, "openid")
    response = await browser.post(
        "/oauth/logout",
        data={"id_token_hint": granted["id_token"], "post_logout_redirect_uri": SIGNED_OUT},
    )
    assert response.status_code == 303
    assert response.headers["location"] == SIGNED_OUT
    assert (await browser.get("/auth/me")).status_code == 401
    refreshed = await world.refresh(granted["refresh_token"], "spa")
    assert refreshed.json()["error"] == "invalid_grant"
