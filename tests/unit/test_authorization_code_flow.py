"""The authorization code flow in process (README, "Log in an app on another origin"):
sign-in through the cookie session and back, consent, the code's exchange with PKCE,
ID tokens, replay revoking what the code issued."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from sqlalchemy import select

from authority.storage.tables import AuditEvent, AuthorizationCode
from tests.helpers.authcode import (
    CALLBACK,
    Pkce,
    authorize_url,
    code_for,
    consent,
    exchange,
    log_in,
    query,
)
from tests.helpers.postgres import BACKENDS
from tests.helpers.world import ClientSpec, World, WorldConfig, csrf, on_backend

pytestmark = pytest.mark.asyncio(loop_scope="module")
OIDC = ("openid", "profile", "email", "read")
CLIENTS = {
    "app": ClientSpec(False, ["password", "refresh_token"]),
    "spa": ClientSpec(
        True,
        ["authorization_code", "refresh_token"],
        scopes=OIDC,
        audiences=("api://orders",),
        redirect_uris=(CALLBACK, "http://127.0.0.1/cb"),
        first_party=True,
    ),
    "partner": ClientSpec(False, ["authorization_code"], scopes=OIDC, redirect_uris=(CALLBACK,)),
}


@pytest.fixture(scope="module", params=BACKENDS)
def world_config(request: pytest.FixtureRequest) -> Iterator[WorldConfig]:
    # No pruning (every 30 s by default) of the codes of earlier tests in the middle of
    # an ``unchanged`` block: a module on PostgreSQL runs for over a minute.
    base = WorldConfig(clients=CLIENTS, settings={"maintenance_interval": 3600})
    with on_backend(base, request.param) as config:
        yield config


def decode_id_token(world: World, token: str, client: str) -> dict[str, object]:
    header = jwt.get_unverified_header(token)
    assert header["typ"] == "JWT"
    return dict(
        jwt.decode(
            token,
            world.jwks[header["kid"]].key,
            ["RS256"],
            audience=world.client_id(client),
            issuer=world.settings.issuer,
        )
    )


async def test_a_signed_in_browser_gets_a_code_that_the_app_exchanges_for_tokens(
    world: World,
) -> None:
    name, email = await world.new_user()
    browser = world.browser()
    await log_in(browser, name)
    pkce = Pkce.new()
    url = authorize_url(
        world.client_id("spa"), pkce, scope="openid profile email", nonce="n-123", state="xyz"
    )
    response = await browser.get(url)
    assert response.status_code == 302
    assert response.headers["location"].startswith(CALLBACK + "?")
    answer = query(response)
    assert answer["state"] == "xyz"
    assert answer["iss"] == world.settings.issuer
    assert len(answer["code"]) >= 22  # at least 128 bits
    tokens = await exchange(world, "spa", answer["code"], pkce.verifier)
    assert tokens.status_code == 200, tokens.text
    body = tokens.json()
    assert body["scope"] == "openid profile email"
    assert tokens.headers["cache-control"] == "no-store"
    claims = world.decode(body["access_token"], audience="api://orders")
    user_id = claims["sub"]
    assert claims["client_id"] == world.client_id("spa")
    id_claims = decode_id_token(world, body["id_token"], "spa")
    assert id_claims["sub"] == user_id
    assert id_claims["nonce"] == "n-123"
    assert id_claims["preferred_username"] == name
    assert id_claims["email"] == email
    assert id_claims["email_verified"] is False
    digest = hashlib.sha256(body["access_token"].encode()).digest()[:16]
    assert id_claims["at_hash"] == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert isinstance(id_claims["auth_time"], int)
    assert isinstance(id_claims["sid"], str)
    refreshed = await world.refresh(body["refresh_token"], "spa")
    assert refreshed.status_code == 200, refreshed.text


async def test_no_session_goes_to_login_and_comes_back_to_the_request(world: World) -> None:
    name, _ = await world.new_user()
    browser = world.browser()
    pkce = Pkce.new()
    response = await browser.get(
        authorize_url(world.client_id("spa"), pkce, state="s1", login_hint=name)
    )
    assert response.status_code == 302
    location = urlsplit(response.headers["location"])
    assert location.path == "/login"
    assert parse_qs(location.query)["login_hint"] == [name]  # prefills the form
    sealed = parse_qs(location.query)["continue"][0]
    assert world.client_id("spa") not in response.headers["location"]  # sealed, not readable
    page = await browser.get("/login?" + location.query)
    assert page.status_code == 200
    await log_in(browser, name)
    back = await browser.get("/oauth/authorize", params={"continue": sealed})
    assert back.status_code == 302
    answer = query(back)
    assert answer["state"] == "s1"
    assert (await exchange(world, "spa", answer["code"], pkce.verifier)).status_code == 200


async def test_prompt_none_without_a_session_is_login_required(world: World) -> None:
    response = await world.browser().get(
        authorize_url(world.client_id("spa"), Pkce.new(), prompt="none", state="p")
    )
    assert response.status_code == 302
    assert query(response) == {
        "error": "login_required",
        "error_description": "the user must sign in",
        "state": "p",
        "iss": world.settings.issuer,
    }


async def test_prompt_login_asks_for_the_password_again(world: World) -> None:
    name, _ = await world.new_user()
    browser = world.browser()
    await log_in(browser, name)
    pkce = Pkce.new()
    response = await browser.get(authorize_url(world.client_id("spa"), pkce, prompt="login"))
    location = urlsplit(response.headers["location"])
    assert location.path == "/login"
    assert parse_qs(location.query)["fresh"] == ["1"]
    sealed = parse_qs(location.query)["continue"][0]
    # Coming back without a new login is sent to /login again...
    again = await browser.get("/oauth/authorize", params={"continue": sealed})
    assert urlsplit(again.headers["location"]).path == "/login"
    # ... and after one, gets its code.
    await log_in(browser, name)
    back = await browser.get("/oauth/authorize", params={"continue": sealed})
    assert "code" in query(back)


async def test_a_third_party_client_asks_consent_once_and_denial_is_access_denied(
    world: World,
) -> None:
    name, _ = await world.new_user()
    browser = world.browser()
    await log_in(browser, name)
    pkce = Pkce.new()
    url = authorize_url(world.client_id("partner"), pkce, scope="openid read", state="c")
    none = await browser.get(url + "&prompt=none")
    assert query(none)["error"] == "consent_required"
    page = await browser.get(url)
    assert page.status_code == 200
    assert "partner" in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "form-action 'self' https://app.example.com" in csp
    assert page.headers["x-frame-options"] == "DENY"
    denied = await consent(browser, page, "deny")
    assert query(denied)["error"] == "access_denied"
    assert query(denied)["state"] == "c"
    allowed = await consent(browser, await browser.get(url), "allow")
    code = query(allowed)["code"]
    assert (await exchange(world, "partner", code, pkce.verifier)).status_code == 200
    # Remembered: the same scopes again need no page; more scope asks again.
    assert "code" in query(await browser.get(url))
    assert (await browser.get(url.replace("openid+read", "openid+read+email"))).status_code == 200
    listed = (await browser.get("/auth/consents")).json()["consents"]
    assert [(c["client_id"], c["scopes"]) for c in listed] == [
        (world.client_id("partner"), ["openid", "read"])
    ]
    path = f"/auth/consents/{world.client_id('partner')}"
    assert (await browser.delete(path)).status_code == 403  # no CSRF token
    assert (await browser.delete(path, headers=csrf(browser))).status_code == 204
    assert (await browser.delete(path, headers=csrf(browser))).status_code == 404
    assert (await browser.get(url)).status_code == 200  # asked again


async def test_a_replayed_code_is_refused_and_revokes_what_it_issued(world: World) -> None:
    name, _ = await world.new_user()
    browser = world.browser()
    await log_in(browser, name)
    pkce = Pkce.new()
    code = await code_for(world, browser, "spa", pkce)
    first = await exchange(world, "spa", code, pkce.verifier)
    assert first.status_code == 200
    again = await exchange(world, "spa", code, pkce.verifier)
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"
    refresh = await world.refresh(first.json()["refresh_token"], "spa")
    assert refresh.json()["error"] == "invalid_grant"
    introspected = await world.introspect(first.json()["access_token"])
    assert introspected.json() == {"active": False}
    rows = await world.db.read(
        lambda c: list(c.execute(select(AuditEvent.type, AuditEvent.detail)))
    )
    replays = [json.loads(d) for t, d in rows if t == "code.replayed"]
    assert any(r["revoked"] for r in replays)


async def test_codes_are_stored_only_as_hashes(world: World) -> None:
    name, _ = await world.new_user()
    browser = world.browser()
    await log_in(browser, name)
    code = await code_for(world, browser, "spa", Pkce.new())
    stored = await world.db.read(
        lambda c: list(c.execute(select(AuthorizationCode.code_hash)).scalars())
    )
    assert hashlib.sha256(code.encode()).digest() in stored
    dump = repr(await world.db.read(lambda c: list(c.execute(select(AuthorizationCode)))))
    assert code not in dump
