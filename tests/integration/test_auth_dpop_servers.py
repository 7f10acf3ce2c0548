"""DPoP body sessions at ``/auth`` against two real ``authority serve`` replicas behind
one issuer, on SQLite and PostgreSQL: a bound login, refresh and ``/auth/me`` work at
either replica, and a proof used at one is refused at the other (the replay memory is
the shared ``dpop_proofs`` table, not a per-process one)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.helpers.deployment import PASSWORD, USERNAME, Deployment, database, provision
from tests.helpers.dpop import make_proof

ISSUER = "http://auth.example"  # both replicas answer for it, as behind a proxy


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def deployment(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    workdir = tmp_path_factory.mktemp(f"dpop-{request.param}")
    with database(request.param, workdir) as url:
        deployed = provision(workdir, url, AUTHORITY_ISSUER=ISSUER)
        deployed.start(2)
        yield deployed
        deployed.stop()


def proof(path: str, method: str = "POST", token: str | None = None) -> str:
    return make_proof(
        htm=method,
        htu=f"{ISSUER}{path}",
        iat=int(time.time()),
        jti=secrets.token_urlsafe(16),
        token=token,
    )


def replica(deployment: Deployment, n: int) -> httpx.Client:
    return httpx.Client(base_url=deployment.servers[n].url, timeout=10)


def bound_login(deployment: Deployment) -> dict[str, Any]:
    with replica(deployment, 0) as client:
        response = client.post(
            "/auth/login",
            json={"username": USERNAME, "password": PASSWORD, "delivery": "body"},
            headers={"DPoP": proof("/auth/login")},
        )
    assert response.status_code == 200, response.text
    return dict(response.json()["tokens"])


def test_a_bound_session_works_at_both_replicas(deployment: Deployment) -> None:
    tokens = bound_login(deployment)
    assert tokens["token_type"] == "DPoP"
    with replica(deployment, 1) as other:
        refused = other.post("/auth/refresh", json={"refresh": tokens["refresh"]})
        assert refused.status_code == 400
        assert refused.json()["error"] == "invalid_dpop_proof"
        renewed = other.post(
            "/auth/refresh",
            json={"refresh": tokens["refresh"]},
            headers={"DPoP": proof("/auth/refresh")},
        )
        assert renewed.status_code == 200, renewed.text
        access = renewed.json()["tokens"]["access"]
        me = other.get(
            "/auth/me",
            headers={"Authorization": f"DPoP {access}", "DPoP": proof("/auth/me", "GET", access)},
        )
        assert me.status_code == 200, me.text
        assert me.json()["username"] == USERNAME


def test_a_proof_used_at_one_replica_is_refused_at_the_other(deployment: Deployment) -> None:
    access = bound_login(deployment)["access"]
    headers = {"Authorization": f"DPoP {access}", "DPoP": proof("/auth/me", "GET", access)}
    with replica(deployment, 0) as first, replica(deployment, 1) as second:
        assert first.get("/auth/me", headers=headers).status_code == 200
        again = second.get("/auth/me", headers=headers)
    assert again.status_code == 401
    assert again.json()["error"] == "invalid_dpop_proof"
    assert again.headers["www-authenticate"].startswith('DPoP error="invalid_dpop_proof"')
    login_proof = proof("/auth/login")
    body = {"username": USERNAME, "password": PASSWORD, "delivery": "body"}
    with replica(deployment, 0) as first, replica(deployment, 1) as second:
        assert first.post("/auth/login", json=body, headers={"DPoP": login_proof}).is_success
        replayed = second.post("/auth/login", json=body, headers={"DPoP": login_proof})
    assert replayed.status_code == 400
    assert replayed.json()["error"] == "invalid_dpop_proof"
