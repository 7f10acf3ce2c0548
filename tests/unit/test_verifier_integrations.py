"""The ASGI middleware and the Litestar plugin: claims on the request, and RFC 6750
answers (401 with ``WWW-Authenticate``, 400, 403 ``insufficient_scope``, 503)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from litestar import Litestar, Request, get

from authority.verifier import CachePolicy, Verifier
from authority.verifier.asgi import BearerAuthMiddleware, Message, Receive, Scope, Send
from authority.verifier.litestar import BearerAuth, requires_scope
from tests.helpers.processes import free_port
from tests.helpers.verifier import AUDIENCE, ISSUER, NOW, claims, header, jwks, rsa_key, sign

GOOD = sign(claims())
READ_ONLY = GOOD  # its scope is "orders:read"


def verifier() -> Verifier:
    return Verifier(ISSUER, AUDIENCE, jwks=jwks(rsa_key()), clock=lambda: NOW)


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    body = json.dumps(scope.get("auth")).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://rs")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def asgi() -> AsyncIterator[httpx.AsyncClient]:
    app = BearerAuthMiddleware(echo, verifier(), exclude_paths=["/public/"], realm="orders")
    async with client(app) as c:
        yield c


async def test_asgi_middleware_puts_the_claims_in_scope_auth(asgi: httpx.AsyncClient) -> None:
    response = await asgi.get("/orders", headers=bearer(GOOD))
    assert response.status_code == 200
    assert response.json() == claims()


async def test_the_bearer_scheme_is_case_insensitive(asgi: httpx.AsyncClient) -> None:
    response = await asgi.get("/orders", headers={"Authorization": f"bearer {GOOD}"})
    assert response.status_code == 200


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Basic c3ZjOnNlY3JldA=="}])
async def test_no_bearer_credentials_get_a_challenge_without_error_code(
    asgi: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await asgi.get("/orders", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="orders"'
    assert "error" not in response.json()


async def test_invalid_token_gets_401_invalid_token(asgi: httpx.AsyncClient) -> None:
    response = await asgi.get("/orders", headers=bearer(sign(claims(aud="api://other"))))
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="orders", error="invalid_token", error_description=')
    assert response.json()["error"] == "invalid_token"


async def test_token_that_is_no_jwt_at_all_gets_401_invalid_token(asgi: httpx.AsyncClient) -> None:
    response = await asgi.get("/orders", headers=bearer('x"y\\z'))
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


@pytest.mark.parametrize(
    "headers",
    [
        [("Authorization", "Bearer")],
        [("Authorization", "Bearer  ")],
        [("Authorization", f"Bearer {GOOD} {GOOD}")],
        [("Authorization", f"Bearer {GOOD}"), ("Authorization", f"Bearer {GOOD}")],
    ],
)
async def test_malformed_authorization_gets_400_invalid_request(
    asgi: httpx.AsyncClient, headers: list[tuple[str, str]]
) -> None:
    response = await asgi.get("/orders", headers=headers)
    assert response.status_code == 400
    assert 'error="invalid_request"' in response.headers["www-authenticate"]


async def test_excluded_paths_need_no_token_but_only_under_that_path(
    asgi: httpx.AsyncClient,
) -> None:
    assert (await asgi.get("/public")).status_code == 200
    assert (await asgi.get("/public/health")).status_code == 200
    assert (await asgi.get("/publicity")).status_code == 401


async def test_required_scopes_missing_get_403_insufficient_scope() -> None:
    app = BearerAuthMiddleware(echo, verifier(), scopes=["orders:read", "orders:write"])
    async with client(app) as c:
        response = await c.get("/orders", headers=bearer(READ_ONLY))
        allowed = await c.get(
            "/orders", headers=bearer(sign(claims(scope="orders:write orders:read")))
        )
    assert response.status_code == 403
    assert response.headers["www-authenticate"] == (
        'Bearer error="insufficient_scope", error_description="the token lacks a required '
        'scope", scope="orders:read orders:write"'
    )
    assert response.json()["error"] == "insufficient_scope"
    assert allowed.status_code == 200


async def test_keys_that_cannot_be_fetched_give_503_not_401() -> None:
    down = Verifier(
        ISSUER,
        AUDIENCE,
        jwks_url=f"http://127.0.0.1:{free_port()}/jwks.json",
        clock=lambda: NOW,
        cache=CachePolicy(timeout=1),
    )
    async with client(BearerAuthMiddleware(echo, down)) as c:
        response = await c.get("/orders", headers=bearer(GOOD))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json()["error"] == "temporarily_unavailable"


async def test_websocket_without_a_token_is_closed_before_it_is_accepted() -> None:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "websocket.connect"}

    async def send(message: Message) -> None:
        sent.append(message)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise AssertionError("the app must not be reached")

    scope = {"type": "websocket", "path": "/ws", "headers": []}
    await BearerAuthMiddleware(app, verifier())(scope, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": ""}]


async def test_lifespan_events_pass_through() -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    async def nothing() -> Message:
        return {}

    async def ignore(message: Message) -> None:
        pass

    await BearerAuthMiddleware(app, verifier())({"type": "lifespan"}, nothing, ignore)
    assert seen == ["lifespan"]


# --- Litestar ------------------------------------------------------------------------


@get("/me")
async def me(request: Request[Any, dict[str, Any], Any]) -> dict[str, Any]:
    return request.auth


@get("/orders", guards=[requires_scope("orders:read")])
async def orders() -> list[str]:
    return ["o-1"]


@get("/refunds", guards=[requires_scope("orders:write")])
async def refunds() -> list[str]:
    return []


@get("/health", opt={"no_auth": True})
async def health() -> dict[str, str]:
    return {"status": "ok"}


@get("/public-but-guarded", opt={"no_auth": True}, guards=[requires_scope("orders:read")])
async def misconfigured() -> None:
    return None


@pytest.fixture
async def litestar() -> AsyncIterator[httpx.AsyncClient]:
    app = Litestar([me, orders, refunds, health, misconfigured], plugins=[BearerAuth(verifier())])
    async with client(app) as c:
        yield c


async def test_litestar_routes_see_the_claims_as_request_auth(litestar: httpx.AsyncClient) -> None:
    response = await litestar.get("/me", headers=bearer(GOOD))
    assert response.status_code == 200
    assert response.json()["sub"] == "svc"


async def test_litestar_without_token_is_401_with_a_bare_challenge(
    litestar: httpx.AsyncClient,
) -> None:
    response = await litestar.get("/me")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


async def test_litestar_with_a_bad_token_is_401_invalid_token(litestar: httpx.AsyncClient) -> None:
    response = await litestar.get("/me", headers=bearer(sign(claims(), header(typ="JWT"))))
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith('Bearer error="invalid_token"')


async def test_requires_scope_admits_a_token_with_the_scope(litestar: httpx.AsyncClient) -> None:
    response = await litestar.get("/orders", headers=bearer(READ_ONLY))
    assert response.status_code == 200
    assert response.json() == ["o-1"]


async def test_requires_scope_refuses_a_token_without_it_with_403(
    litestar: httpx.AsyncClient,
) -> None:
    response = await litestar.get("/refunds", headers=bearer(READ_ONLY))
    assert response.status_code == 403
    assert response.headers["www-authenticate"].startswith('Bearer error="insufficient_scope"')
    assert 'scope="orders:write"' in response.headers["www-authenticate"]
    assert response.json()["error"] == "insufficient_scope"
    assert response.json()["scope"] == "orders:write"


async def test_routes_marked_no_auth_are_public(litestar: httpx.AsyncClient) -> None:
    assert (await litestar.get("/health")).json() == {"status": "ok"}


async def test_a_scope_guard_on_a_public_route_still_refuses_without_a_token(
    litestar: httpx.AsyncClient,
) -> None:
    response = await litestar.get("/public-but-guarded", headers=bearer(GOOD))
    assert response.status_code == 401


# --- typ: RFC 9068 section 4, RFC 7515 section 4.1.9 ----------------------------------

ACCESS_TOKEN_TYPES = ["at+jwt", "application/at+jwt", "Application/AT+JWT", "AT+JWT"]


@pytest.mark.parametrize("typ", ACCESS_TOKEN_TYPES)
def test_the_verifier_accepts_the_access_token_media_type_with_or_without_its_prefix(
    typ: str,
) -> None:
    assert verifier().verify(sign(claims(), header(typ=typ)))["sub"] == "svc"


@pytest.mark.parametrize("typ", ACCESS_TOKEN_TYPES)
async def test_the_asgi_middleware_accepts_the_access_token_media_type_with_its_prefix(
    asgi: httpx.AsyncClient, typ: str
) -> None:
    response = await asgi.get("/orders", headers=bearer(sign(claims(), header(typ=typ))))
    assert response.status_code == 200
    assert response.json()["sub"] == "svc"


@pytest.mark.parametrize("typ", ACCESS_TOKEN_TYPES)
async def test_the_litestar_plugin_accepts_the_access_token_media_type_with_its_prefix(
    litestar: httpx.AsyncClient, typ: str
) -> None:
    response = await litestar.get("/me", headers=bearer(sign(claims(), header(typ=typ))))
    assert response.status_code == 200
    assert response.json()["sub"] == "svc"
