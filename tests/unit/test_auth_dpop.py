"""DPoP at ``/auth`` (RFC 9449; README, "DPoP: sender-constrained tokens"): a body
login, sign-up or refresh with a proof binds the access token (``cnf.jkt``,
``token_type`` ``DPoP``) and the session's refresh family to the proof's key; a bound
token counts only as ``Authorization: DPoP`` with a proof by that key for the request
(``ath`` included); a bad, replayed or misdirected proof issues and stores nothing;
cookie delivery refuses proofs."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from joserfc.jwk import JWKRegistry
from sqlalchemy import Connection, func, select

from authority.storage.tables import DpopProof, RefreshFamily
from authority.web.cookies import CookieNames
from tests.helpers.dpop import HOLDER, make_proof, proof_jwk
from tests.helpers.verifier import ec_key, ed_key
from tests.helpers.world import PASSWORD, World, WorldConfig, csrf

pytestmark = pytest.mark.asyncio(loop_scope="module")
OTHER_KEY = ed_key(HOLDER)  # a key the session was not bound to


@pytest.fixture(scope="module")
def world_config() -> WorldConfig:
    return WorldConfig(settings={"secret_key": "s" * 40, "login_max_failures_address": 1000})


def proof(world: World, path: str, key: Any = None, **changes: Any) -> str:
    """A fresh proof by ``key`` (the holder's P-256 key unless told) for ``path``."""
    values: dict[str, Any] = {
        "htm": "POST",
        "htu": f"{world.settings.issuer}{path}",
        "iat": int(time.time()),
        "jti": secrets.token_urlsafe(16),
    }
    return make_proof(key, **(values | changes))


def thumbprint(key: Any) -> str:
    return str(JWKRegistry.import_key(dict(proof_jwk(key).items())).thumbprint())


def dpop(world: World, access: str, path: str, key: Any = None, **changes: Any) -> dict[str, str]:
    """The headers of a request with a bound ``access`` token: the token and a proof
    with its ``ath``."""
    changes = {"htm": "GET", "token": access} | changes
    return {"Authorization": f"DPoP {access}", "DPoP": proof(world, path, key, **changes)}


async def body_login(world: World, headers: dict[str, str] | None = None) -> httpx.Response:
    name, _email = await world.new_user()
    return await world.browser().post(
        "/auth/login",
        json={"username": name, "password": PASSWORD, "delivery": "body"},
        headers=headers or {},
    )


async def bound_login(world: World, key: Any = None) -> dict[str, Any]:
    response = await body_login(world, {"DPoP": proof(world, "/auth/login", key)})
    assert response.status_code == 200, response.text
    return dict(response.json()["tokens"])


def family_key(sid: str) -> Any:
    def read(conn: Connection) -> str | None:
        return conn.execute(select(RefreshFamily.dpop_jkt).where(RefreshFamily.id == sid)).scalar()

    return read


def remembered_proofs(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(DpopProof)).scalar_one())


async def refresh(world: World, token: str, headers: dict[str, str] | None = None) -> Any:
    return await world.browser().post("/auth/refresh", json={"refresh": token}, headers=headers)


# --- issuing ---------------------------------------------------------------------------


async def test_a_body_login_with_a_proof_binds_the_token_and_the_session(world: World) -> None:
    tokens = await bound_login(world)
    assert tokens["token_type"] == "DPoP"
    claims = world.decode(tokens["access"])
    assert claims["cnf"] == {"jkt": thumbprint(ec_key(HOLDER))}
    assert await world.db.read(family_key(claims["sid"])) == thumbprint(ec_key(HOLDER))


async def test_a_body_login_without_a_proof_is_a_bearer_session_as_before(world: World) -> None:
    response = await body_login(world)
    tokens = response.json()["tokens"]
    assert tokens["token_type"] == "Bearer"
    claims = world.decode(tokens["access"])
    assert "cnf" not in claims
    assert await world.db.read(family_key(claims["sid"])) is None
    me = await world.browser().get(
        "/auth/me", headers={"Authorization": f"Bearer {tokens['access']}"}
    )
    assert me.status_code == 200


async def test_a_body_sign_up_with_a_proof_is_bound_too(world: World) -> None:
    name = f"signup{secrets.token_hex(4)}"
    response = await world.browser().post(
        "/auth/register",
        json={
            "username": name,
            "email": f"{name}@example.org",
            "password": "a long enough passphrase",
            "delivery": "body",
        },
        headers={"DPoP": proof(world, "/auth/register", OTHER_KEY)},
    )
    assert response.status_code == 201, response.text
    tokens = response.json()["tokens"]
    assert tokens["token_type"] == "DPoP"
    assert world.decode(tokens["access"])["cnf"] == {"jkt": thumbprint(OTHER_KEY)}


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"htm": "GET"}, id="wrong-htm"),
        pytest.param({"path": "/auth/refresh"}, id="wrong-htu"),
        pytest.param({"htu": "http://elsewhere.example/auth/login"}, id="foreign-htu"),
        pytest.param({"iat": int(time.time()) - 3600}, id="stale-iat"),
        pytest.param({"header": {"typ": "JWT"}}, id="wrong-typ"),
    ],
)
async def test_a_bad_proof_at_login_issues_and_stores_nothing(
    world: World, changes: dict[str, Any]
) -> None:
    name, _email = await world.new_user()
    client = world.browser()
    before = await world.db.read(remembered_proofs)
    changes = dict(changes)
    path = changes.pop("path", "/auth/login")
    async with world.unchanged():
        response = await client.post(
            "/auth/login",
            json={"username": name, "password": PASSWORD, "delivery": "body"},
            headers={"DPoP": proof(world, path, **changes)},
        )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_dpop_proof"
    assert "tokens" not in response.json()
    assert await world.db.read(remembered_proofs) == before


async def test_a_replayed_proof_at_login_issues_and_stores_nothing(world: World) -> None:
    sent = proof(world, "/auth/login")
    assert (await body_login(world, {"DPoP": sent})).status_code == 200
    name, _email = await world.new_user()
    async with world.unchanged():
        again = await world.browser().post(
            "/auth/login",
            json={"username": name, "password": PASSWORD, "delivery": "body"},
            headers={"DPoP": sent},
        )
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_dpop_proof"
    assert "used before" in again.json()["detail"]


async def test_cookie_delivery_refuses_a_proof_with_a_clear_message(world: World) -> None:
    name, _email = await world.new_user()
    client = world.browser()
    token = (await client.get("/auth/csrf")).json()["csrf_token"]
    async with world.unchanged():
        login = await client.post(
            "/auth/login",
            json={"username": name, "password": PASSWORD},
            headers={"X-CSRFToken": token, "DPoP": proof(world, "/auth/login")},
        )
    assert login.status_code == 400
    assert login.json()["error"] == "invalid_dpop_proof"
    assert "body" in login.json()["detail"]
    assert "access_token" not in login.cookies
    browser = await world.logged_in()
    cookie_refresh = await browser.post(
        "/auth/refresh", headers={**csrf(browser), "DPoP": proof(world, "/auth/refresh")}
    )
    assert cookie_refresh.status_code == 400
    assert cookie_refresh.json()["error"] == "invalid_dpop_proof"


# --- refreshing ------------------------------------------------------------------------


async def test_a_bound_session_refreshes_only_with_a_proof_by_its_key(world: World) -> None:
    tokens = await bound_login(world)
    for refused in (None, proof(world, "/auth/refresh", OTHER_KEY)):
        async with world.unchanged():
            response = await refresh(world, tokens["refresh"], {"DPoP": refused} if refused else {})
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "invalid_dpop_proof"
    renewed = await refresh(world, tokens["refresh"], {"DPoP": proof(world, "/auth/refresh")})
    assert renewed.status_code == 200, renewed.text
    pair = renewed.json()["tokens"]
    assert pair["token_type"] == "DPoP"
    assert world.decode(pair["access"])["cnf"] == {"jkt": thumbprint(ec_key(HOLDER))}
    # the rotated refresh token keeps the binding
    again = await refresh(world, pair["refresh"])
    assert again.json()["error"] == "invalid_dpop_proof"


async def test_a_bound_refresh_token_sent_as_a_cookie_is_refused_and_changes_nothing(
    world: World,
) -> None:
    """A cookie takes no proof, so a stolen bound token cannot be laundered through one."""
    tokens = await bound_login(world)
    browser = world.browser()
    browser.cookies.set(
        CookieNames.for_secure(world.settings.secure_cookies).refresh, tokens["refresh"]
    )
    # the CSRF token of the session the cookie names
    token = (await browser.get("/auth/csrf")).json()["csrf_token"]
    async with world.unchanged():
        response = await browser.post("/auth/refresh", headers={"X-CSRFToken": token})
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_dpop_proof"
    renewed = await refresh(world, tokens["refresh"], {"DPoP": proof(world, "/auth/refresh")})
    assert renewed.status_code == 200, renewed.text


async def test_a_replayed_proof_at_refresh_is_refused(world: World) -> None:
    tokens = await bound_login(world)
    sent = proof(world, "/auth/refresh")
    first = await refresh(world, tokens["refresh"], {"DPoP": sent})
    assert first.status_code == 200
    async with world.unchanged():
        again = await refresh(world, first.json()["refresh"], {"DPoP": sent})
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_dpop_proof"


async def test_a_bound_auth_session_needs_its_key_at_the_token_endpoint_too(world: World) -> None:
    tokens = await bound_login(world)
    response = await world.refresh(tokens["refresh"])
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_dpop_proof"


async def test_an_unbound_body_session_is_bound_by_its_first_refresh_with_a_proof(
    world: World,
) -> None:
    tokens = (await body_login(world)).json()["tokens"]
    renewed = await refresh(world, tokens["refresh"], {"DPoP": proof(world, "/auth/refresh")})
    assert renewed.json()["tokens"]["token_type"] == "DPoP"
    assert (await refresh(world, renewed.json()["refresh"])).status_code == 400


# --- using a bound token ---------------------------------------------------------------


async def test_a_bound_token_with_a_proof_by_its_key_reaches_me_and_the_sessions(
    world: World,
) -> None:
    tokens = await bound_login(world)
    client = world.browser()
    me = await client.get("/auth/me", headers=dpop(world, tokens["access"], "/auth/me"))
    assert me.status_code == 200, me.text
    sid = world.decode(tokens["access"])["sid"]
    assert me.json()["id"] == int(world.decode(tokens["access"])["sub"])
    listed = await client.get(
        "/auth/sessions", headers=dpop(world, tokens["access"], "/auth/sessions")
    )
    assert [s["id"] for s in listed.json()["sessions"] if s["current"]] == [sid]
    check = await client.get("/auth/check", headers=dpop(world, tokens["access"], "/auth/check"))
    assert check.json() == {"authenticated": True}


async def test_a_bound_token_sent_as_bearer_is_refused(world: World) -> None:
    tokens = await bound_login(world)
    client = world.browser()
    as_bearer = {"Authorization": f"Bearer {tokens['access']}"}
    me = await client.get("/auth/me", headers=as_bearer)
    assert me.status_code == 401
    assert me.json()["error"] == "invalid_token"
    assert me.headers["WWW-Authenticate"].startswith("DPoP ")
    assert 'algs="' in me.headers["WWW-Authenticate"]
    check = await client.get("/auth/check", headers=as_bearer)
    assert check.json() == {"authenticated": False}
    client.cookies.set("access_token", tokens["access"])  # nor in a cookie
    assert (await client.get("/auth/me")).status_code == 401


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"token": None}, id="no-ath"),
        pytest.param({"token": "another.access.token"}, id="ath-of-another-token"),
        pytest.param({"key": OTHER_KEY}, id="another-key"),
        pytest.param({"htm": "POST"}, id="wrong-htm"),
        pytest.param({"path": "/auth/check"}, id="wrong-htu"),
        pytest.param({"iat": int(time.time()) - 3600}, id="stale-iat"),
    ],
)
async def test_a_bound_token_with_a_wrong_proof_is_refused(
    world: World, changes: dict[str, Any]
) -> None:
    tokens = await bound_login(world)
    changes = dict(changes)
    key, path = changes.pop("key", None), changes.pop("path", "/auth/me")
    headers = dpop(world, tokens["access"], path, key, **changes)
    me = await world.browser().get("/auth/me", headers=headers)
    assert me.status_code == 401, me.text
    assert me.json()["error"] == "invalid_dpop_proof"
    assert me.headers["WWW-Authenticate"].startswith('DPoP error="invalid_dpop_proof"')


async def test_a_proof_replayed_with_a_bound_token_is_refused(world: World) -> None:
    tokens = await bound_login(world)
    headers = dpop(world, tokens["access"], "/auth/me")
    assert (await world.browser().get("/auth/me", headers=headers)).status_code == 200
    again = await world.browser().get("/auth/me", headers=headers)
    assert again.status_code == 401
    assert again.json()["error"] == "invalid_dpop_proof"


async def test_an_unbound_token_sent_as_dpop_is_refused(world: World) -> None:
    tokens = (await body_login(world)).json()["tokens"]
    me = await world.browser().get("/auth/me", headers=dpop(world, tokens["access"], "/auth/me"))
    assert me.status_code == 401
    assert me.json()["error"] == "invalid_token"


async def test_a_password_change_with_a_bound_token_keeps_the_session_bound(world: World) -> None:
    tokens = await bound_login(world)
    headers = dpop(world, tokens["access"], "/auth/password", htm="POST")
    changed = await world.browser().post(
        "/auth/password",
        json={"current_password": PASSWORD, "new_password": "a brand new passphrase"},
        headers=headers,
    )
    assert changed.status_code == 200, changed.text
    pair = changed.json()["tokens"]
    assert pair["token_type"] == "DPoP"
    assert world.decode(pair["access"])["cnf"] == {"jkt": thumbprint(ec_key(HOLDER))}


async def test_logout_with_a_bound_token_needs_its_proof(world: World) -> None:
    tokens = await bound_login(world)
    sid = world.decode(tokens["access"])["sid"]
    client = world.browser()
    async with world.unchanged():
        refused = await client.post(
            "/auth/logout", headers={"Authorization": f"Bearer {tokens['access']}"}
        )
        assert refused.status_code == 401
        stolen_refresh = await client.post("/auth/logout", json={"refresh": tokens["refresh"]})
        assert stolen_refresh.status_code == 400
        assert stolen_refresh.json()["error"] == "invalid_dpop_proof"
    done = await client.post(
        "/auth/logout", headers=dpop(world, tokens["access"], "/auth/logout", htm="POST")
    )
    assert done.status_code == 200, done.text
    revoked = await world.db.read(
        lambda conn: conn.execute(
            select(RefreshFamily.revoked_at).where(RefreshFamily.id == sid)
        ).scalar()
    )
    assert revoked is not None


async def test_logout_all_with_a_bound_token_as_bearer_is_refused(world: World) -> None:
    tokens = await bound_login(world)
    async with world.unchanged():
        refused = await world.browser().post(
            "/auth/logout-all", headers={"Authorization": f"Bearer {tokens['access']}"}
        )
    assert refused.status_code == 401
    done = await world.browser().post(
        "/auth/logout-all", headers=dpop(world, tokens["access"], "/auth/logout-all", htm="POST")
    )
    assert done.status_code == 200, done.text
    assert done.json()["revoked"] == 1


# --- the server's nonce ----------------------------------------------------------------


@pytest_asyncio.fixture(loop_scope="module")
async def nonce_world(tmp_path: Path) -> AsyncIterator[World]:
    config = WorldConfig(settings={"secret_key": "s" * 40, "dpop_nonce": True})
    async with config.open(tmp_path) as opened:
        yield opened


async def test_with_dpop_nonce_login_and_refresh_need_the_servers_nonce(
    nonce_world: World,
) -> None:
    world = nonce_world
    first = await body_login(world, {"DPoP": proof(world, "/auth/login")})
    assert first.status_code == 400
    assert first.json()["error"] == "use_dpop_nonce"
    nonce = first.headers["DPoP-Nonce"]
    login = await body_login(world, {"DPoP": proof(world, "/auth/login", nonce=nonce)})
    assert login.status_code == 200, login.text
    tokens = login.json()["tokens"]
    assert tokens["token_type"] == "DPoP"
    no_nonce = await refresh(world, tokens["refresh"], {"DPoP": proof(world, "/auth/refresh")})
    assert no_nonce.json()["error"] == "use_dpop_nonce"
    renewed = await refresh(
        world, tokens["refresh"], {"DPoP": proof(world, "/auth/refresh", nonce=nonce)}
    )
    assert renewed.status_code == 200, renewed.text
