"""DPoP at ``POST /oauth/token`` (RFC 9449 section 5): a valid proof binds the access
token (``cnf.jkt``, ``token_type`` ``DPoP``) for every grant; a bad, replayed or
misdirected proof is ``invalid_dpop_proof`` and issues nothing; with ``DPOP_NONCE``
a proof without the server's nonce is ``use_dpop_nonce`` with a ``DPoP-Nonce``."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import pytest_asyncio
from joserfc.jwk import JWKRegistry
from sqlalchemy import Connection, select

from authority.storage.tables import AuditEvent
from authority.verifier import InvalidToken, Verifier
from tests.helpers.dpop import HOLDER, make_proof, proof_jwk
from tests.helpers.verifier import ec_key, ed_key, rsa_key
from tests.helpers.world import PASSWORD, ClientSpec, World, WorldConfig

pytestmark = pytest.mark.asyncio(loop_scope="module")
CLIENTS = {
    "service": ClientSpec(False, ["client_credentials"], ["read"], []),
    "app": ClientSpec(True, ["password", "refresh_token"], ["read"]),
}


@pytest.fixture(scope="module")
def world_config() -> WorldConfig:
    return WorldConfig(settings={"secret_key": "s" * 40}, clients=CLIENTS)


def proof(world: World, key: Any = None, **changes: Any) -> str:
    values: dict[str, Any] = {
        "htu": f"{world.settings.issuer}/oauth/token",
        "iat": int(time.time()),
        "jti": secrets.token_urlsafe(16),
    }
    return make_proof(key, **(values | changes))


def thumbprint(key: Any) -> str:
    return str(JWKRegistry.import_key(dict(proof_jwk(key).items())).thumbprint())


async def client_credentials(world: World, dpop: str | None) -> Any:
    headers = {"DPoP": dpop} if dpop is not None else {}
    return await world.token(
        {"grant_type": "client_credentials"}, client="service", headers=headers
    )


@pytest.mark.parametrize("key", [ec_key(HOLDER), ed_key(HOLDER), rsa_key(HOLDER)])
async def test_client_credentials_with_a_proof_gives_a_bound_dpop_token(
    world: World, key: Any
) -> None:
    response = await client_credentials(world, proof(world, key))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "DPoP"
    claims = world.decode(body["access_token"])
    assert claims["cnf"] == {"jkt": thumbprint(key)}


async def test_without_a_proof_the_token_is_a_plain_bearer_token(world: World) -> None:
    body = (await client_credentials(world, None)).json()
    assert body["token_type"] == "Bearer"
    assert "cnf" not in world.decode(body["access_token"])


async def test_the_password_grant_of_a_public_client_binds_its_access_token(world: World) -> None:
    username, _email = await world.new_user()
    form = {
        "grant_type": "password",
        "client_id": world.client_id("app"),
        "username": username,
        "password": PASSWORD,
    }
    response = await world.token(form, client=None, headers={"DPoP": proof(world, ed_key(HOLDER))})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "DPoP"
    assert world.decode(body["access_token"])["cnf"] == {"jkt": thumbprint(ed_key(HOLDER))}


async def test_a_resource_server_accepts_the_bound_token_only_with_a_proof_by_the_key(
    world: World,
) -> None:
    token = (await client_credentials(world, proof(world))).json()["access_token"]
    jwks = (await world.http.get("/.well-known/jwks.json")).json()
    verifier = Verifier(
        world.settings.issuer, world.settings.audience, jwks=jwks, check_status=False
    )
    url = "https://api.example.com/orders"
    resource_proof = make_proof(
        htm="GET", htu=url, iat=int(time.time()), jti=secrets.token_urlsafe(8), token=token
    )
    assert verifier.verify(token, dpop=resource_proof, method="GET", url=url)["cnf"]
    with pytest.raises(InvalidToken) as refused:
        verifier.verify(token)
    assert refused.value.reason == "dpop_required"


def dpop_replays(conn: Connection) -> int:
    rows = conn.execute(select(AuditEvent.type).where(AuditEvent.type == "dpop.replayed"))
    return len(rows.all())


async def test_a_replayed_proof_is_refused_and_audited(world: World) -> None:
    sent = proof(world)
    assert (await client_credentials(world, sent)).status_code == 200
    before = await world.db.read(dpop_replays)
    again = await client_credentials(world, sent)
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_dpop_proof"
    assert await world.db.read(dpop_replays) == before + 1


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"htm": "GET"}, id="wrong-htm"),
        pytest.param({"htu": "http://elsewhere.example/oauth/token"}, id="wrong-htu"),
        pytest.param({"iat": int(time.time()) - 3600}, id="stale-iat"),
        pytest.param({"header": {"typ": "JWT"}}, id="wrong-typ"),
        pytest.param({"header": {"alg": "HS256"}}, id="symmetric-alg"),
    ],
)
async def test_a_bad_proof_is_invalid_dpop_proof_and_issues_nothing(
    world: World, changes: dict[str, Any]
) -> None:
    response = await client_credentials(world, proof(world, **changes))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_dpop_proof"
    assert "access_token" not in response.json()


async def test_two_dpop_headers_are_refused(world: World) -> None:
    response = await world.http.post(
        "/oauth/token",
        content=b"grant_type=client_credentials",
        headers=[
            (b"content-type", b"application/x-www-form-urlencoded"),
            (b"authorization", world.basic("service").encode()),
            (b"dpop", proof(world).encode()),
            (b"dpop", proof(world).encode()),
        ],
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_dpop_proof"


async def test_metadata_lists_the_dpop_signing_algorithms(world: World) -> None:
    document = (await world.http.get("/.well-known/oauth-authorization-server")).json()
    assert {"ES256", "EdDSA", "RS256"} <= set(document["dpop_signing_alg_values_supported"])


@pytest_asyncio.fixture(loop_scope="module")
async def nonce_world(tmp_path: Path) -> AsyncIterator[World]:
    config = WorldConfig(settings={"secret_key": "s" * 40, "dpop_nonce": True}, clients=CLIENTS)
    async with config.open(tmp_path) as opened:
        yield opened


async def test_with_dpop_nonce_a_proof_needs_the_servers_nonce(nonce_world: World) -> None:
    world = nonce_world
    first = await client_credentials(world, proof(world))
    assert first.status_code == 400
    assert first.json()["error"] == "use_dpop_nonce"
    nonce = first.headers["DPoP-Nonce"]
    wrong = await client_credentials(world, proof(world, nonce="not-the-nonce"))
    assert wrong.json()["error"] == "use_dpop_nonce"
    bound = await client_credentials(world, proof(world, nonce=nonce))
    assert bound.status_code == 200, bound.text
    assert jwt.decode(bound.json()["access_token"], options={"verify_signature": False})["cnf"]


async def bound_login(world: World, key: Any) -> dict[str, Any]:
    username, _email = await world.new_user()
    form = {
        "grant_type": "password",
        "client_id": world.client_id("app"),
        "username": username,
        "password": PASSWORD,
    }
    response = await world.token(form, client=None, headers={"DPoP": proof(world, key)})
    assert response.status_code == 200, response.text
    return dict(response.json())


async def refresh_with(world: World, refresh_token: str, dpop: str | None) -> Any:
    form = {
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
        "client_id": world.client_id("app"),
    }
    headers = {"DPoP": dpop} if dpop is not None else {}
    return await world.token(form, client=None, headers=headers)


async def test_a_public_clients_bound_refresh_token_refreshes_only_with_a_proof_by_its_key(
    world: World,
) -> None:
    tokens = await bound_login(world, ec_key(HOLDER))
    for refused_proof in (None, proof(world, ed_key(HOLDER))):
        refused = await refresh_with(world, tokens["refresh_token"], refused_proof)
        assert refused.status_code == 400
        assert refused.json()["error"] == "invalid_dpop_proof"
    refreshed = await refresh_with(world, tokens["refresh_token"], proof(world))
    assert refreshed.status_code == 200, refreshed.text
    body = refreshed.json()
    assert body["token_type"] == "DPoP"
    assert world.decode(body["access_token"])["cnf"] == {"jkt": thumbprint(ec_key(HOLDER))}
    # the rotated refresh token keeps the binding
    again = await refresh_with(world, body["refresh_token"], None)
    assert again.json()["error"] == "invalid_dpop_proof"
    assert (await refresh_with(world, body["refresh_token"], proof(world))).status_code == 200


async def test_an_unbound_refresh_token_refreshes_as_before(world: World) -> None:
    tokens = await world.granted(
        grant_type="password",
        client_id=world.client_id("app"),
        username=(await world.new_user())[0],
        password=PASSWORD,
    )
    refreshed = await refresh_with(world, tokens["refresh_token"], None)
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["token_type"] == "Bearer"
