"""Authorization codes under concurrency (README, "Log in an app on another origin"),
against real ``authority serve`` processes: one on SQLite, two sharing PostgreSQL.
Twenty simultaneous exchanges of one code give exactly one success, never a 5xx; the
others are replays, which revoke the session the code opened."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Iterator
from urllib.parse import urlencode

import pytest

from tests.helpers.browser_login import code_of, follow_authorization, signed_in_browser
from tests.helpers.deployment import PASSWORD, USERNAME, Client, Deployment
from tests.integration.test_refresh_races import deployment, simultaneously, start

__all__ = ["deployment"]  # the module's fixture, used by name
CALLBACK = "http://127.0.0.1/callback"


@pytest.fixture(scope="module")
def spa(deployment: Deployment) -> Client:
    return deployment.create_client(
        "spa",
        "--public",
        "--first-party",
        "--grant",
        "authorization_code",
        "--grant",
        "refresh_token",
        "--redirect-uri",
        CALLBACK,
        "--scope",
        "openid",
    )


@pytest.fixture
def serve(deployment: Deployment) -> Iterator[Deployment]:
    yield deployment
    deployment.stop()


def test_twenty_simultaneous_exchanges_of_one_code_have_exactly_one_winner(
    serve: Deployment, spa: Client
) -> None:
    servers = start(serve, grace=0)
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    query = urlencode(
        {
            "response_type": "code",
            "client_id": spa.client_id,
            "redirect_uri": CALLBACK,
            "scope": "openid",
            "code_challenge": challenge.rstrip(b"=").decode(),
            "code_challenge_method": "S256",
        }
    )
    browser = signed_in_browser(servers[0].url, USERNAME, PASSWORD)
    try:
        code = code_of(follow_authorization(browser, f"/oauth/authorize?{query}"))
    finally:
        browser.close()
    body = urlencode(
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": CALLBACK,
            "code_verifier": verifier,
            "client_id": spa.client_id,
        }
    ).encode()
    answers = simultaneously(
        servers,
        lambda host: (
            (
                f"POST /oauth/token HTTP/1.1\r\nHost: {host}\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            ).encode()
            + body
        ),
    )
    outcomes = [(a.status, a.body.get("error")) for a in answers]
    assert all(status < 500 for status, _ in outcomes), outcomes
    winners = [a for a in answers if a.status == 200]
    assert len(winners) == 1, outcomes
    assert all(error == "invalid_grant" for status, error in outcomes if status != 200), outcomes
    assert winners[0].body["id_token"]
    # The losers were replays: the session the code opened is revoked.
    rows = serve.query(
        "SELECT f.revoked_at FROM authorization_codes c "
        "JOIN refresh_families f ON f.id = c.family_id WHERE c.code_hash = :hash",
        hash=hashlib.sha256(code.encode()).digest(),
    )
    assert len(rows) == 1
    assert rows[0].revoked_at is not None
