"""Unmodified third-party clients drive the authorization code flow against a real
``authority serve`` process (README, "Log in an app on another origin"): Authlib's
OAuth2 client in Python (code + PKCE, refresh) and panva's ``openid-client`` in Node.js
(discovery, PKCE, ID token validation, userinfo, refresh, RP-initiated logout). The
browser's part is a cookie login followed through ``/oauth/authorize``."""

from __future__ import annotations

import secrets
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from authlib.deprecate import AuthlibDeprecationWarning
from authlib.integrations.base_client import OAuthError

from tests.helpers.browser_login import follow_authorization, signed_in_browser
from tests.helpers.deployment import PASSWORD, USERNAME, Client, Deployment, database, provision
from tests.helpers.node import run_node_json
from tests.helpers.processes import Server

with warnings.catch_warnings():
    warnings.simplefilter("ignore", AuthlibDeprecationWarning)
    from authlib.integrations.httpx_client import OAuth2Client

CALLBACK = "http://127.0.0.1/callback"  # a native app's loopback URI: any port matches
SIGNED_OUT = "http://127.0.0.1:9/signed-out"


@dataclass
class Running:
    deployment: Deployment
    server: Server
    spa: Client
    partner: Client

    def url(self, path: str) -> str:
        return f"{self.server.url}{path}"


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    workdir = tmp_path_factory.mktemp("code-clients")
    with database("sqlite", workdir) as url:
        deployment = provision(workdir, url, AUTHORITY_REFRESH_REUSE_GRACE="0")
        common = ["--grant", "authorization_code", "--grant", "refresh_token"]
        scopes = ["--scope", "openid", "--scope", "profile", "--scope", "email"]
        spa = deployment.create_client(
            "spa",
            "--public",
            "--first-party",
            *common,
            *scopes,
            "--redirect-uri",
            CALLBACK,
            "--post-logout-redirect-uri",
            SIGNED_OUT,
        )
        partner = deployment.create_client(
            "partner", *common, *scopes, "--redirect-uri", "https://partner.example/cb"
        )
        try:
            (server,) = deployment.start()
            yield Running(deployment, server, spa, partner)
        finally:
            deployment.stop()


def test_authlib_logs_in_with_code_and_pkce_then_refreshes(running: Running) -> None:
    redirect = "http://127.0.0.1:43123/callback"
    with OAuth2Client(
        client_id=running.spa.client_id,
        token_endpoint_auth_method="none",
        code_challenge_method="S256",
        redirect_uri=redirect,
        scope="openid profile",
        timeout=10,
    ) as oauth:
        verifier = secrets.token_urlsafe(48)
        url, state = oauth.create_authorization_url(
            running.url("/oauth/authorize"), code_verifier=verifier, nonce="authlib-nonce"
        )
        browser = signed_in_browser(running.server.url, USERNAME, PASSWORD)
        try:
            location = follow_authorization(browser, url)
        finally:
            browser.close()
        assert parse_qs(urlsplit(location).query)["state"] == [state]
        token = oauth.fetch_token(
            running.url("/oauth/token"), authorization_response=location, code_verifier=verifier
        )
        assert token["scope"] == "openid profile"
        claims = jwt.decode(token["id_token"], options={"verify_signature": False})
        assert claims["nonce"] == "authlib-nonce"
        assert claims["aud"] == running.spa.client_id
        assert claims["sub"] == str(running.deployment.user_id)
        refreshed = oauth.refresh_token(running.url("/oauth/token"))
        assert refreshed["refresh_token"] != token["refresh_token"]
        with pytest.raises(OAuthError) as replay:
            oauth.fetch_token(
                running.url("/oauth/token"), authorization_response=location, code_verifier=verifier
            )
    assert replay.value.error == "invalid_grant"


def test_authlib_confidential_client_exchanges_a_code_after_consent(running: Running) -> None:
    with OAuth2Client(
        client_id=running.partner.client_id,
        client_secret=running.partner.client_secret,
        code_challenge_method="S256",
        redirect_uri="https://partner.example/cb",
        scope="openid email",
        timeout=10,
    ) as oauth:
        verifier = secrets.token_urlsafe(48)
        url, _ = oauth.create_authorization_url(
            running.url("/oauth/authorize"), code_verifier=verifier
        )
        browser = signed_in_browser(running.server.url, USERNAME, PASSWORD)
        try:
            first = browser.get(url)
            assert first.status_code == 200  # the consent page
            location = follow_authorization(browser, url)
        finally:
            browser.close()
        token = oauth.fetch_token(
            running.url("/oauth/token"), authorization_response=location, code_verifier=verifier
        )
    assert token["scope"] == "openid email"
    assert "refresh_token" in token


def test_openid_client_runs_discovery_pkce_id_token_userinfo_refresh_and_logout(
    running: Running,
) -> None:
    seen = run_node_json(
        "oidc_code_flow.mjs",
        running.server.url,
        running.spa.client_id,
        "http://127.0.0.1:51000/callback",
        SIGNED_OUT,
        USERNAME,
        PASSWORD,
    )
    assert seen["metadata"]["issuer"] == running.server.url
    assert seen["callback_iss"] == running.server.url
    claims = seen["claims"]
    assert claims["sub"] == str(running.deployment.user_id)
    assert claims["aud"] == running.spa.client_id
    assert claims["preferred_username"] == USERNAME
    assert seen["userinfo"] == {
        "sub": str(running.deployment.user_id),
        "preferred_username": USERNAME,
        "email": "alice@example.com",
        "email_verified": False,
    }
    assert seen["refreshed"] == {"access": True, "rotated": True}
    assert seen["logout"]["status"] == 302
    assert seen["logout"]["location"] == SIGNED_OUT + "?state=bye"
    assert seen["refresh_after_logout"] == "invalid_grant"
