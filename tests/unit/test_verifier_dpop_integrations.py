"""DPoP at resource servers (RFC 9449 section 7): the ASGI middleware and the Litestar
plugin accept ``Authorization: DPoP`` with a ``DPoP`` proof for this request, answer
``WWW-Authenticate: DPoP error=...``, and refuse a bound token sent as ``Bearer``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from litestar import Litestar, Request, get

from authority.verifier import Verifier
from authority.verifier.asgi import BearerAuthMiddleware, Receive, Scope, Send
from authority.verifier.litestar import BearerAuth
from tests.helpers.dpop import JKT, make_proof
from tests.helpers.verifier import AUDIENCE, ISSUER, NOW, claims, curve_jwk, ec_key, sign_curve

URL = "http://rs/orders"
BOUND = sign_curve(claims() | {"cnf": {"jkt": JKT}}, ec_key())
UNBOUND = sign_curve(claims(), ec_key())


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    body = json.dumps(scope.get("auth")).encode()
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://rs")


def verifier() -> Verifier:
    return Verifier(ISSUER, AUDIENCE, jwks={"keys": [curve_jwk(ec_key())]}, clock=lambda: NOW)


def dpop(token: str, proof: str | None = None, **changes: Any) -> dict[str, str]:
    proof = proof or make_proof(token=token, **({"htm": "GET", "htu": URL} | changes))
    return {"Authorization": f"DPoP {token}", "DPoP": proof}


@get("/orders", sync_to_thread=False)
def orders(request: Request[Any, dict[str, Any], Any]) -> dict[str, Any]:
    return dict(request.auth)


@get("/orders/7", sync_to_thread=False)
def order(request: Request[Any, dict[str, Any], Any]) -> dict[str, Any]:
    return dict(request.auth)


@pytest.fixture(params=["asgi", "litestar"])
async def rs(request: pytest.FixtureRequest) -> AsyncIterator[httpx.AsyncClient]:
    if request.param == "asgi":
        app: Any = BearerAuthMiddleware(echo, verifier())
    else:
        app = Litestar([orders, order], plugins=[BearerAuth(verifier())])
    async with client(app) as c:
        yield c


async def test_a_bound_token_with_its_proof_is_accepted(rs: httpx.AsyncClient) -> None:
    response = await rs.get("/orders", headers=dpop(BOUND))
    assert response.status_code == 200, response.text
    assert response.json()["cnf"] == {"jkt": JKT}


async def test_a_bound_token_sent_as_bearer_is_refused_with_a_dpop_challenge(
    rs: httpx.AsyncClient,
) -> None:
    response = await rs.get("/orders", headers={"Authorization": f"Bearer {BOUND}"})
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('DPoP error="invalid_token"')
    algs = challenge.split('algs="')[1].split('"')[0]
    assert sorted(algs.split()) == ["ES256", "EdDSA", "RS256"]


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"htm": "POST"}, id="wrong-htm"),
        pytest.param({"htu": "http://rs/admin"}, id="wrong-htu"),
        pytest.param({"iat": int(NOW) - 3600}, id="stale-iat"),
    ],
)
async def test_a_bad_proof_is_invalid_dpop_proof(
    rs: httpx.AsyncClient, changes: dict[str, Any]
) -> None:
    response = await rs.get("/orders", headers=dpop(BOUND, **changes))
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith('DPoP error="invalid_dpop_proof"')


async def test_a_replayed_proof_is_refused(rs: httpx.AsyncClient) -> None:
    headers = dpop(BOUND, jti="once")
    assert (await rs.get("/orders", headers=headers)).status_code == 200
    again = await rs.get("/orders", headers=headers)
    assert again.status_code == 401
    assert again.json()["error"] == "invalid_dpop_proof"


async def test_dpop_without_a_proof_header_or_with_two_is_refused(rs: httpx.AsyncClient) -> None:
    missing = await rs.get("/orders", headers={"Authorization": f"DPoP {BOUND}"})
    assert missing.status_code == 401
    assert missing.json()["error"] == "invalid_dpop_proof"
    proof = make_proof(token=BOUND, htm="GET", htu=URL)
    two = await rs.get(
        "/orders",
        headers=[("Authorization", f"DPoP {BOUND}"), ("DPoP", proof), ("DPoP", proof)],
    )
    assert two.status_code == 401
    assert two.json()["error"] == "invalid_dpop_proof"


async def test_an_unbound_token_still_works_as_bearer_but_not_with_a_proof(
    rs: httpx.AsyncClient,
) -> None:
    ok = await rs.get("/orders", headers={"Authorization": f"Bearer {UNBOUND}"})
    assert ok.status_code == 200
    assert ok.headers.get("www-authenticate") is None
    refused = await rs.get("/orders", headers=dpop(UNBOUND))
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith('DPoP error="invalid_token"')


async def test_a_proof_for_another_path_of_this_server_is_refused(rs: httpx.AsyncClient) -> None:
    """The proof's htu is compared with the URL this request was made to."""
    response = await rs.get("/orders/7", headers=dpop(BOUND))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_dpop_proof"
