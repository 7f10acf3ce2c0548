"""DPoP and the authorization code (RFC 9449 section 10): a request's ``dpop_jkt``
binds the code to a key, whose proof its exchange must then carry; a code without it
is exchanged as before. Python-made proofs (``tests.helpers.dpop``)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from joserfc.jwk import JWKRegistry
from sqlalchemy import select

from authority.storage.tables import AuthorizationCode
from tests.helpers.authcode import CALLBACK, Pkce, authorize_url, log_in, query
from tests.helpers.dpop import HOLDER, make_proof, proof_jwk
from tests.helpers.postgres import BACKENDS
from tests.helpers.verifier import ec_key, ed_key, rsa_key
from tests.helpers.world import ClientSpec, World, WorldConfig, on_backend

pytestmark = pytest.mark.asyncio(loop_scope="module")
CLIENTS = {
    "spa": ClientSpec(
        True,
        ["authorization_code", "refresh_token"],
        scopes=("openid", "read"),
        redirect_uris=(CALLBACK,),
        first_party=True,
    ),
}


@pytest.fixture(scope="module", params=BACKENDS)
def world_config(request: pytest.FixtureRequest) -> Iterator[WorldConfig]:
    base = WorldConfig(clients=CLIENTS, settings={"maintenance_interval": 3600})
    with on_backend(base, request.param) as config:
        yield config


def thumbprint(key: Any) -> str:
    return str(JWKRegistry.import_key(dict(proof_jwk(key).items())).thumbprint())


def proof(world: World, key: Any) -> str:
    return make_proof(
        key,
        htu=f"{world.settings.issuer}/oauth/token",
        iat=int(time.time()),
        jti=secrets.token_urlsafe(16),
    )


async def exchange(world: World, code: str, pkce: Pkce, key: Any = None) -> httpx.Response:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": CALLBACK,
        "code_verifier": pkce.verifier,
        "client_id": world.client_id("spa"),
    }
    headers = {"DPoP": proof(world, key)} if key is not None else {}
    return await world.token(form, client=None, headers=headers)


async def bound_code(world: World, pkce: Pkce, jkt: str) -> str:
    name, _ = await world.new_user()
    browser = world.browser()
    await log_in(browser, name)
    response = await browser.get(authorize_url(world.client_id("spa"), pkce, dpop_jkt=jkt))
    assert response.status_code == 302, response.text
    return query(response)["code"]


async def test_a_code_bound_by_dpop_jkt_is_exchanged_only_with_a_proof_by_that_key(
    world: World,
) -> None:
    pkce = Pkce.new()
    jkt = thumbprint(ec_key(HOLDER))
    code = await bound_code(world, pkce, jkt)
    async with world.unchanged():
        for key in (None, ed_key(HOLDER), rsa_key(HOLDER)):  # other keys than the bound one
            refused = await exchange(world, code, pkce, key)
            assert refused.status_code == 400, key
            assert refused.json()["error"] == "invalid_grant"
            assert "dpop_jkt" in refused.json()["error_description"]
    granted = await exchange(world, code, pkce, ec_key(HOLDER))
    assert granted.status_code == 200, granted.text
    body = granted.json()
    assert body["token_type"] == "DPoP"
    assert world.decode(body["access_token"])["cnf"] == {"jkt": jkt}


async def test_the_binding_survives_the_login_detour(world: World) -> None:
    """A browser that is not signed in goes to /login; the sealed request it comes back
    with still binds the code."""
    name, _ = await world.new_user()
    browser = world.browser()
    pkce = Pkce.new()
    jkt = thumbprint(ed_key(HOLDER))
    sent = await browser.get(authorize_url(world.client_id("spa"), pkce, dpop_jkt=jkt))
    assert urlsplit(sent.headers["location"]).path == "/login"
    await log_in(browser, name)
    back = await browser.get("/oauth/authorize?" + urlsplit(sent.headers["location"]).query)
    code = query(back)["code"]
    async with world.db.engine.connect() as conn:
        stored = (await conn.execute(select(AuthorizationCode.dpop_jkt))).scalars().all()
    assert jkt in stored
    assert (await exchange(world, code, pkce)).json()["error"] == "invalid_grant"
    assert (await exchange(world, code, pkce, ed_key(HOLDER))).status_code == 200


@pytest.mark.parametrize("jkt", ["short", "x" * 44, "+" * 43, "é" * 43])
async def test_a_malformed_dpop_jkt_goes_back_as_invalid_request_and_stores_nothing(
    world: World, jkt: str
) -> None:
    name, _ = await world.new_user()
    browser = world.browser()
    await log_in(browser, name)
    async with world.unchanged():
        response = await browser.get(
            authorize_url(world.client_id("spa"), Pkce.new(), dpop_jkt=jkt, state="s")
        )
    assert response.status_code == 302
    answer = query(response)
    assert answer["error"] == "invalid_request"
    assert answer["state"] == "s"
    assert "code" not in answer


async def test_a_code_without_dpop_jkt_is_exchanged_with_or_without_a_proof(
    world: World,
) -> None:
    plain, bound = Pkce.new(), Pkce.new()
    name, _ = await world.new_user()
    browser = world.browser()
    await log_in(browser, name)
    codes = []
    for pkce in (plain, bound):
        response = await browser.get(authorize_url(world.client_id("spa"), pkce))
        codes.append(query(response)["code"])
    bearer = await exchange(world, codes[0], plain)
    assert bearer.json()["token_type"] == "Bearer"
    dpop = await exchange(world, codes[1], bound, ec_key(HOLDER))
    assert dpop.json()["token_type"] == "DPoP"
