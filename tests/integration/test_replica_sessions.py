"""Two ``authority serve`` replicas on one database (PostgreSQL, and a SQLite file),
keys in the database: what one replica does to a session, the other knows at once;
a key rotated with the command line signs on both within seconds, and what either
signs verifies against the JWKS of either.

"Log in" is the OAuth ``password`` grant; reuse is strict (``REFRESH_REUSE_GRACE=0``).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from authority.verifier import Verifier
from tests.helpers.deployment import PASSWORD, USERNAME, Client, Deployment, database, provision

ISSUER = "http://authority.test"


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
def deployment(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    workdir = tmp_path_factory.mktemp(f"replicas-{request.param}")
    with database(request.param, workdir) as url:
        deployment = provision(
            workdir,
            url,
            AUTHORITY_KEYSTORE="database",
            AUTHORITY_ISSUER=ISSUER,
            AUTHORITY_REFRESH_REUSE_GRACE="0",
            AUTHORITY_KEYSTORE_POLL_INTERVAL="1",
        )
        deployment.start(2)
        yield deployment
        deployment.stop()


@pytest.fixture(scope="module")
def app(deployment: Deployment) -> Client:
    return deployment.create_client(
        "app", "--grant", "password", "--grant", "refresh_token", "--grant", "client_credentials"
    )


@pytest.fixture
def replicas(deployment: Deployment, app: Client) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    """An HTTP client of ``app`` for each replica, A and B."""
    assert app.client_secret is not None
    clients = [
        httpx.Client(base_url=server.url, timeout=10, auth=(app.client_id, app.client_secret))
        for server in deployment.servers
    ]
    assert len(clients) == 2
    yield clients[0], clients[1]
    for client in clients:
        client.close()


def token(http: httpx.Client, **form: str) -> dict[str, Any]:
    response = http.post("/oauth/token", data=form)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def login(http: httpx.Client) -> dict[str, Any]:
    return token(http, grant_type="password", username=USERNAME, password=PASSWORD)


def refresh(http: httpx.Client, refresh_token: str) -> httpx.Response:
    return http.post(
        "/oauth/token", data={"grant_type": "refresh_token", "refresh_token": refresh_token}
    )


def introspect(http: httpx.Client, value: str) -> dict[str, Any]:
    response = http.post("/oauth/introspect", data={"token": value})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def refused(response: httpx.Response, said: str) -> None:
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_grant"
    assert said in response.json()["error_description"], response.text


def kid_of(jwt: str) -> str:
    header = jwt.split(".")[0]
    return str(json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"])


def test_a_token_refreshed_on_one_replica_and_replayed_on_the_other_revokes_the_family_everywhere(
    replicas: tuple[httpx.Client, httpx.Client],
) -> None:
    a, b = replicas
    first = login(a)
    second = refresh(b, first["refresh_token"])
    assert second.status_code == 200, second.text
    rotated = second.json()
    assert introspect(a, rotated["access_token"])["active"] is True
    assert introspect(a, rotated["refresh_token"])["active"] is True

    refused(refresh(a, first["refresh_token"]), "already used")
    # The thief's replay on A ended the session that B had just rotated, on both.
    for http in (a, b):
        refused(refresh(http, rotated["refresh_token"]), "revoked")
        for value in (first["access_token"], rotated["access_token"], rotated["refresh_token"]):
            assert introspect(http, value) == {"active": False}


def test_a_token_revoked_on_one_replica_is_inactive_on_the_other(
    replicas: tuple[httpx.Client, httpx.Client],
) -> None:
    a, b = replicas
    session = login(a)
    service = token(b, grant_type="client_credentials")
    for value in (session["access_token"], session["refresh_token"], service["access_token"]):
        assert introspect(b, value)["active"] is True
        assert introspect(a, value)["active"] is True

    assert a.post("/oauth/revoke", data={"token": session["refresh_token"]}).status_code == 200
    assert b.post("/oauth/revoke", data={"token": service["access_token"]}).status_code == 200
    for http in (a, b):
        for value in (session["access_token"], session["refresh_token"], service["access_token"]):
            assert introspect(http, value) == {"active": False}
    refused(refresh(b, session["refresh_token"]), "revoked")


def test_a_key_rotated_with_the_cli_signs_on_both_replicas_within_seconds_and_every_token_verifies_everywhere(  # noqa: E501
    deployment: Deployment, replicas: tuple[httpx.Client, httpx.Client]
) -> None:
    before = [token(http, grant_type="client_credentials")["access_token"] for http in replicas]
    assert kid_of(before[0]) == kid_of(before[1])

    rotated_at = time.monotonic()
    new = deployment.cli("keys", "rotate", "--now")
    assert new["outcome"] == "created"
    assert new["kid"] != kid_of(before[0])
    after: list[str] = []
    for http in replicas:
        while (
            kid_of(signed := token(http, grant_type="client_credentials")["access_token"])
            != new["kid"]
        ):
            assert time.monotonic() - rotated_at < 10, f"{http.base_url} signs with an old key"
            time.sleep(0.05)
        after.append(signed)
    print(
        f"both replicas sign with the new key {time.monotonic() - rotated_at:.2f}s "
        "after the command started"
    )

    for http in replicas:
        # Keys only: the tokens' status list lives at the fictional shared issuer.
        jwks = http.get("/.well-known/jwks.json").content
        verifier = Verifier(ISSUER, "default", jwks=jwks, check_status=False)
        for signed in before + after:
            assert verifier.verify(signed)["iss"] == ISSUER
    for server_tokens in (before, after):
        assert {kid_of(t) for t in server_tokens} == {kid_of(server_tokens[0])}
