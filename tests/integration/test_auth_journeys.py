"""The two /auth journeys of the README, "HTTP API", end to end against a real ``authority serve``
process with a real HTTP client: cookies plus CSRF for browsers, tokens in the JSON
body for apps."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from authority.verifier import Verifier
from tests.helpers.deployment import PASSWORD, USERNAME, Deployment, database, provision


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def deployment(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    workdir = tmp_path_factory.mktemp(f"journeys-{request.param}")
    with database(request.param, workdir) as url:
        deployed = provision(workdir, url, AUTHORITY_REFRESH_REUSE_GRACE="0")
        deployed.start()
        yield deployed
        deployed.stop()


def browser(deployment: Deployment) -> httpx.Client:
    return httpx.Client(base_url=deployment.servers[0].url, timeout=10)


def csrf_header(client: httpx.Client) -> dict[str, str]:
    return {"X-CSRFToken": client.cookies["csrftoken"]}


def test_cookie_journey_logs_in_refreshes_logs_out_and_refuses_the_old_refresh_cookie(
    deployment: Deployment,
) -> None:
    with browser(deployment) as client:
        token = client.get("/auth/csrf").json()["csrf_token"]
        assert client.cookies["csrftoken"] == token

        login = client.post(
            "/auth/login",
            json={"username": USERNAME, "password": PASSWORD},
            headers={"X-CSRFToken": token},
        )
        assert login.status_code == 200, login.text
        assert login.json() == {"user": client.get("/auth/me").json()}
        assert "tokens" not in login.json()
        cookies = {c.name: c for c in client.cookies.jar}
        assert cookies["access_token"].has_nonstandard_attr("HttpOnly")
        assert cookies["refresh_token"].has_nonstandard_attr("HttpOnly")
        assert cookies["refresh_token"].path == "/auth"
        assert not cookies["csrftoken"].has_nonstandard_attr("HttpOnly")
        assert client.cookies["csrftoken"] != token  # login rotates the CSRF token

        me = client.get("/auth/me")
        assert me.status_code == 200
        assert me.json()["username"] == USERNAME
        assert set(me.json()) == {"id", "username", "email", "date_joined"}

        old_refresh = client.cookies["refresh_token"]
        refreshed = client.post("/auth/refresh", headers=csrf_header(client))
        assert refreshed.status_code == 200, refreshed.text
        assert "access" not in refreshed.json()  # a cookie token is answered in cookies
        assert client.cookies["refresh_token"] != old_refresh
        assert client.get("/auth/me").status_code == 200

        logout = client.post("/auth/logout", headers=csrf_header(client))
        assert logout.status_code == 200
        assert "access_token" not in client.cookies
        assert "refresh_token" not in client.cookies
        assert client.get("/auth/me").status_code == 401
        assert client.get("/auth/check").json() == {"authenticated": False}

        # Whoever kept the old cookie can get a CSRF token for it, and still fails.
        client.cookies.set("refresh_token", old_refresh, path="/auth")
        replay_csrf = client.get("/auth/csrf").json()["csrf_token"]
        replay = client.post("/auth/refresh", headers={"X-CSRFToken": replay_csrf})
        assert replay.status_code == 401
        assert replay.json()["error"] == "invalid_grant"


def test_body_journey_registers_refreshes_and_revokes_the_family_on_reuse(
    deployment: Deployment,
) -> None:
    with browser(deployment) as client:
        registered = client.post(
            "/auth/register",
            json={
                "username": f"mobile-{deployment.backend}",
                "email": f"mobile-{deployment.backend}@example.com",
                "password": "a long enough passphrase",
                "delivery": "body",
            },
        )
        assert registered.status_code == 201, registered.text
        assert not client.cookies.get("access_token")
        tokens = registered.json()["tokens"]
        bearer = {"Authorization": f"Bearer {tokens['access']}"}
        me = client.get("/auth/me", headers=bearer)
        assert me.status_code == 200
        assert me.json() == registered.json()["user"]

        verifier = Verifier(
            jwks_url=f"{deployment.servers[0].url}/.well-known/jwks.json",
            issuer=deployment.servers[0].url,
            audience="default",
        )
        assert verifier.verify(tokens["access"])["username"] == me.json()["username"]

        pair = client.post("/auth/refresh", json={"refresh": tokens["refresh"]})
        assert pair.status_code == 200, pair.text
        new = pair.json()
        assert new["tokens"]["refresh"] == new["refresh"] != tokens["refresh"]
        assert client.get("/auth/me", headers={"Authorization": f"Bearer {new['access']}"}).json()

        reuse = client.post("/auth/refresh", json={"refresh": tokens["refresh"]})
        assert reuse.status_code == 401
        assert reuse.json()["error"] == "invalid_grant"
        # The whole family is revoked: the newest token and its access token are dead too.
        assert client.post("/auth/refresh", json={"refresh": new["refresh"]}).status_code == 401
        after = client.get("/auth/me", headers={"Authorization": f"Bearer {new['access']}"})
        assert after.status_code == 401
        rows = deployment.query(
            "SELECT revoke_reason FROM refresh_families f JOIN users u ON u.id = f.user_id "
            "WHERE u.username = :name",
            name=me.json()["username"],
        )
        assert [row.revoke_reason for row in rows] == ["reuse"]


def test_login_with_email_and_body_delivery_sets_no_token_cookie(
    deployment: Deployment,
) -> None:
    with browser(deployment) as client:
        login = client.post(
            "/auth/login",
            json={"email": "ALICE@example.com", "password": PASSWORD, "delivery": "body"},
        )
        assert login.status_code == 200, login.text
        assert set(login.json()["tokens"]) == {
            "access",
            "refresh",
            "expires_in",
            "refresh_expires_in",
            "token_type",
        }
        assert login.json()["tokens"]["token_type"] == "Bearer"
        assert "access_token" not in login.headers.get("set-cookie", "")
        assert login.headers["cache-control"] == "no-store"


def test_logout_all_revokes_every_session_of_the_user(deployment: Deployment) -> None:
    sessions = []
    with browser(deployment) as client:
        for _ in range(3):
            login = client.post(
                "/auth/login",
                json={"username": USERNAME, "password": PASSWORD, "delivery": "body"},
            )
            sessions.append(login.json()["tokens"])
        bearer = {"Authorization": f"Bearer {sessions[0]['access']}"}
        done = client.post("/auth/logout-all", headers=bearer)
        assert done.status_code == 200, done.text
        assert done.json()["revoked"] >= 3
        for tokens in sessions:
            refused = client.post("/auth/refresh", json={"refresh": tokens["refresh"]})
            assert refused.status_code == 401
            assert (
                client.get(
                    "/auth/me", headers={"Authorization": f"Bearer {tokens['access']}"}
                ).status_code
                == 401
            )


def test_a_cross_origin_browser_gets_credentials_only_from_a_configured_origin(
    tmp_path: Path,
) -> None:
    deployed = provision(
        tmp_path,
        f"sqlite+aiosqlite:///{tmp_path / 'a.db'}",
        AUTHORITY_CORS_ORIGINS="https://app.example.com",
    )
    try:
        server = deployed.start()[0]
        with httpx.Client(base_url=server.url, timeout=10) as client:
            allowed = client.options(
                "/auth/login",
                headers={
                    "Origin": "https://app.example.com",
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "content-type, x-csrftoken",
                },
            )
            assert allowed.status_code in (200, 204)
            assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
            assert allowed.headers["access-control-allow-credentials"] == "true"
            assert "x-csrftoken" in allowed.headers["access-control-allow-headers"].lower()

            foreign = client.options(
                "/auth/login",
                headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
            )
            assert "access-control-allow-origin" not in foreign.headers
            simple = client.get("/auth/check", headers={"Origin": "https://evil.example"})
            assert "access-control-allow-origin" not in simple.headers
            ok = client.get("/auth/check", headers={"Origin": "https://app.example.com"})
            assert ok.headers["access-control-allow-origin"] == "https://app.example.com"
    finally:
        deployed.stop()
