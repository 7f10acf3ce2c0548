"""Bad input to the OAuth endpoints (RFC 6749 section 5.2, RFC 7009, RFC 7662): each gets
its RFC error with the right status, no-store and a JSON body, never a 5xx, and
changes nothing: the tables are compared through a fresh engine, and the session's
real refresh token still rotates afterwards."""

from __future__ import annotations

import base64
import hashlib
import hmac
import inspect
import json
import secrets
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from authority.accounts import clients
from authority.accounts.users import set_active
from authority.sessions import service
from authority.settings import Settings
from authority.signing.signer import AccessTokenSigner
from authority.storage.database import Database
from tests.helpers.oauth import FORM, assert_oauth_error, basic, encode_form
from tests.helpers.stores import current_signing_key
from tests.helpers.world import PASSWORD, World, WorldConfig, open_world

ONE_MB = 1 << 20


pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def world_config() -> WorldConfig:
    """One running app for the module (starting one per test would cost most of the
    run): tests stay apart because each gets a user and session of its own, and
    compares whole tables. No pruning between a test's two snapshots."""
    return WorldConfig(
        settings={"secret_key": "x" * 40, "maintenance_interval": 3600}, session_scope="read"
    )


def refresh_form(world: World, token: str | None = None) -> str:
    """A valid refresh request for the session's token, as raw form text."""
    value = world.refresh_token if token is None else token
    return f"grant_type=refresh_token&refresh_token={value}"


def sign(world: World, *, issuer: str | None = None, now: float | None = None) -> str:
    """An access token signed with the authority's own current key."""
    signer = AccessTokenSigner(issuer or world.settings.issuer, world.settings.access_ttl)
    return signer.sign(
        current_signing_key(world.settings),
        now=time.time() if now is None else now,
        sub=str(world.user_id),
        client_id=world.client_id("app"),
        scope="read",
        audience=world.settings.audience,
    ).token


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(world: World, alg: str, signature: Callable[[bytes], bytes]) -> str:
    """A token with our kid and valid-looking claims, signed by ``signature``."""
    claims = jwt.decode(world.access_token, options={"verify_signature": False})
    kid = jwt.get_unverified_header(world.access_token)["kid"]
    header = {"alg": alg, "typ": "at+jwt", "kid": kid}
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64url(signature(signing_input.encode()))}"


def signed_by_a_stranger(world: World) -> str:
    claims = jwt.decode(world.access_token, options={"verify_signature": False})
    kid = jwt.get_unverified_header(world.access_token)["kid"]
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode(claims, stranger, "RS256", headers={"kid": kid, "typ": "at+jwt"})


def hs256_with_the_public_key(world: World) -> str:
    public = current_signing_key(world.settings).private_key.public_key()
    secret = jwt.algorithms.RSAAlgorithm.to_jwk(public).encode()
    return forge(world, "HS256", lambda data: hmac.new(secret, data, hashlib.sha256).digest())


def tampered(world: World) -> str:
    header, payload, signature = world.access_token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["scope"] = "read write"
    return f"{header}.{b64url(json.dumps(claims).encode())}.{signature}"


def unknown_refresh_token(_world: World) -> str:
    return secrets.token_urlsafe(32)


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every database call, password verification and client secret check."""
    calls: list[str] = []

    def recording(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.iscoroutinefunction(original):

            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                calls.append(name)
                return await original(*args, **kwargs)

            return wrapper

        def plain(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            return original(*args, **kwargs)

        return plain

    for owner, name in [
        (Database, "read"),
        (Database, "write"),
        (service, "averify_password"),
        (clients, "secret_matches"),
    ]:
        monkeypatch.setattr(owner, name, recording(name, getattr(owner, name)))
    return calls


# --- grant_type -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("refresh_token={token}", id="absent"),
        pytest.param("grant_type=&refresh_token={token}", id="empty"),
    ],
)
async def test_a_token_request_without_grant_type_is_invalid_request(
    world: World, body: str
) -> None:
    async with world.unchanged():
        response = await world.token(body.format(token=world.refresh_token))
    assert_oauth_error(response, 400, "invalid_request")
    await world.assert_refresh_works(world.refresh_token)


@pytest.mark.parametrize(
    "grant_type",
    [
        "magic",
        "implicit",
        "urn:ietf:params:oauth:grant-type:device_code",
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "REFRESH_TOKEN",
        "refresh_token ",
        "refresh_token\x00",
    ],
)
async def test_an_unknown_grant_type_is_unsupported_grant_type(
    world: World, grant_type: str
) -> None:
    async with world.unchanged():
        response = await world.token(
            {"grant_type": grant_type, "refresh_token": world.refresh_token}
        )
    assert_oauth_error(response, 400, "unsupported_grant_type")
    await world.assert_refresh_works(world.refresh_token)


# --- refresh_token values -----------------------------------------------------------------

BAD_REFRESH_TOKENS: list[Any] = [
    pytest.param(lambda w: "garbage", 400, "invalid_grant", id="garbage"),
    pytest.param(lambda w: "", 400, "invalid_request", id="empty, so omitted"),
    pytest.param(lambda w: "%00", 400, "invalid_grant", id="NUL"),
    pytest.param(lambda w: quote_plus("' OR 1=1--"), 400, "invalid_grant", id="SQL injection"),
    pytest.param(
        lambda w: quote_plus("' OR '1'='1' -- ".ljust(43, "x")),
        400,
        "invalid_grant",
        id="SQL injection of token length",
    ),
    pytest.param(lambda w: "%ff%fe", 400, "invalid_request", id="invalid UTF-8"),
    pytest.param(lambda w: "%C3%A9" * 43, 400, "invalid_grant", id="43 non-ASCII letters"),
    pytest.param(
        lambda w: "a" * ONE_MB, (400, 413), "invalid_request", id="1 MB, over the body limit"
    ),
    pytest.param(lambda w: w.access_token, 400, "invalid_grant", id="the access token"),
    pytest.param(unknown_refresh_token, 400, "invalid_grant", id="well-formed but unknown"),
    pytest.param(
        lambda w: w.refresh_token[:-1] + ("A" if w.refresh_token[-1] != "A" else "B"),
        400,
        "invalid_grant",
        id="the real token with one character changed",
    ),
    pytest.param(lambda w: w.refresh_token + "%3D", 400, "invalid_grant", id="padded with ="),
    pytest.param(lambda w: w.refresh_token + "%00", 400, "invalid_grant", id="followed by NUL"),
    pytest.param(lambda w: w.refresh_token + "+", 400, "invalid_grant", id="followed by space"),
    pytest.param(
        lambda w: w.refresh_token[:-1] + "%00", 400, "invalid_grant", id="43 chars ending in NUL"
    ),
]


@pytest.mark.parametrize(("value", "status", "error"), BAD_REFRESH_TOKENS)
async def test_a_bad_refresh_token_is_refused_and_the_real_family_is_untouched(
    world: World,
    value: Callable[[World], str],
    status: int | tuple[int, ...],
    error: str,
) -> None:
    async with world.unchanged():
        response = await world.token(refresh_form(world, value(world)))
    assert_oauth_error(response, status, error)
    await world.assert_refresh_works(world.refresh_token)


# --- body size ----------------------------------------------------------------------------


@pytest.mark.parametrize("size", [16 * 1024 + 1, ONE_MB], ids=["16 KiB + 1", "1 MB"])
@pytest.mark.parametrize(
    ("path", "form"),
    [
        pytest.param("/oauth/token", refresh_form, id="token"),
        pytest.param("/oauth/revoke", lambda w: f"token={w.refresh_token}", id="revoke"),
        pytest.param("/oauth/introspect", lambda w: f"token={w.refresh_token}", id="introspect"),
    ],
)
async def test_an_oversized_body_is_rejected_before_any_hashing_or_database_work(
    world: World, spy: list[str], path: str, form: Callable[[World], str], size: int
) -> None:
    body = f"{form(world)}&padding=".encode()
    body += b"a" * (size - len(body))
    async with world.unchanged():
        spy.clear()
        response = await world.post(path, body, auth=world.basic("app"))
        assert spy == []
    assert_oauth_error(response, (413, 400), "invalid_request")
    await world.assert_refresh_works(world.refresh_token)


async def test_a_one_megabyte_password_is_rejected_before_it_is_hashed(
    world: World, spy: list[str]
) -> None:
    form = {"grant_type": "password", "username": world.username, "password": "p" * ONE_MB}
    async with world.unchanged():
        spy.clear()
        response = await world.token(form)
        assert spy == []
    assert_oauth_error(response, (413, 400), "invalid_request")


async def test_a_streamed_body_without_a_length_is_cut_off_at_the_limit(world: World) -> None:
    chunks = [f"{refresh_form(world)}&padding=".encode()] + [b"a" * 4096] * 256
    received = 0

    async def receive() -> dict[str, Any]:
        nonlocal received
        if received == len(chunks):
            return {"type": "http.disconnect"}
        received += 1
        return {
            "type": "http.request",
            "body": chunks[received - 1],
            "more_body": received < len(chunks),
        }

    messages: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/oauth/token",
        "raw_path": b"/oauth/token",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"testserver"),
            (b"content-type", FORM.encode()),
            (b"transfer-encoding", b"chunked"),
            (b"authorization", world.basic("app").encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "state": {},
    }
    async with world.unchanged():
        await world.http.app(scope, receive, send)
    start = messages[0]
    response = httpx.Response(
        start["status"],
        headers=start["headers"],
        content=b"".join(m.get("body", b"") for m in messages[1:]),
    )
    assert_oauth_error(response, (413, 400), "invalid_request")
    assert received < len(chunks) // 4  # stopped reading soon after 16 KiB
    await world.assert_refresh_works(world.refresh_token)


# --- whose token --------------------------------------------------------------------------


@pytest.mark.parametrize("thief", ["other", "spa"], ids=["confidential", "public"])
async def test_a_refresh_token_presented_by_another_client_is_invalid_grant(
    world: World, thief: str
) -> None:
    async with world.unchanged():
        response = await world.refresh(world.refresh_token, thief)
    assert_oauth_error(response, 400, "invalid_grant")
    await world.assert_refresh_works(world.refresh_token, "app")


async def test_another_client_replaying_a_consumed_token_does_not_revoke_the_owners_session(
    world: World,
) -> None:
    rotated = await world.refresh(world.refresh_token)
    assert rotated.status_code == 200
    async with world.unchanged():
        response = await world.refresh(world.refresh_token, "other")
    assert_oauth_error(response, 400, "invalid_grant")
    await world.assert_refresh_works(rotated.json()["refresh_token"])


# --- scope, disabled user, grant not allowed ----------------------------------------------


@pytest.mark.parametrize("scope", ["read write", "write", "admin", "read admin", 'read"'])
async def test_a_refresh_asking_for_more_scope_is_invalid_scope_and_consumes_nothing(
    world: World, scope: str
) -> None:
    async with world.unchanged():
        response = await world.refresh(world.refresh_token, scope=scope)
    assert_oauth_error(response, 400, "invalid_scope")
    await world.assert_refresh_works(world.refresh_token)


async def test_a_disabled_users_refresh_token_is_invalid_grant(world: World) -> None:
    await world.db.write(set_active, world.user_id, False)
    async with world.unchanged():
        response = await world.refresh(world.refresh_token)
    assert_oauth_error(response, 400, "invalid_grant")


@pytest.mark.parametrize(
    "form",
    [
        pytest.param(
            lambda w: {"grant_type": "password", "username": w.username, "password": "x"},
            id="password grant, wrong password",
        ),
        pytest.param(
            lambda w: {"grant_type": "password", "username": w.username, "password": PASSWORD},
            id="password grant, right password",
        ),
        pytest.param(refresh_form, id="refresh_token grant"),
    ],
)
async def test_a_grant_the_client_was_not_created_with_is_unauthorized_client(
    world: World, form: Callable[[World], Any]
) -> None:
    async with world.unchanged():
        response = await world.token(form(world), client="service")  # client_credentials only
    assert_oauth_error(response, 400, "unauthorized_client")
    await world.assert_refresh_works(world.refresh_token)


# --- repeated parameters ------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(
            "grant_type=refresh_token&grant_type=refresh_token&refresh_token={t}",
            id="grant_type twice",
        ),
        pytest.param(
            "grant_type=refresh_token&refresh_token={t}&grant_type=password",
            id="grant_type twice, different",
        ),
        pytest.param(
            "grant_type=&grant_type=refresh_token&refresh_token={t}",
            id="grant_type empty, then set",
        ),
        pytest.param(
            "grant_type=refresh_token&refresh_token={t}&refresh_token={t}", id="refresh_token twice"
        ),
        pytest.param(
            "grant_type=refresh_token&refresh_token={t}&refresh_token=",
            id="refresh_token then an empty duplicate",
        ),
        pytest.param(
            "grant_type=refresh_token&refresh_token=&refresh_token={t}",
            id="an empty refresh_token then the real one",
        ),
        pytest.param(
            "grant_type=refresh_token&refresh_token={t}&scope=read&scope=read", id="scope twice"
        ),
        pytest.param(
            "grant_type=refresh_token&refresh_token={t}&client_id={a}&client_id={a}",
            id="client_id twice",
        ),
        pytest.param(
            "grant_type=refresh_token&refresh_token={t}&extra=&extra=",
            id="an unknown parameter twice, both empty",
        ),
    ],
)
async def test_a_repeated_parameter_is_invalid_request_and_consumes_nothing(
    world: World, body: str
) -> None:
    form = body.format(t=world.refresh_token, a=world.client_id("app"))
    async with world.unchanged():
        response = await world.token(form)
    assert_oauth_error(response, 400, "invalid_request")
    await world.assert_refresh_works(world.refresh_token)


@pytest.mark.parametrize("path", ["/oauth/token", "/oauth/revoke", "/oauth/introspect"])
@pytest.mark.parametrize(
    "name",
    [
        pytest.param("x" * 200, id="long name"),
        pytest.param("a'", id="quote"),
        pytest.param('a"', id="double quote"),
        pytest.param("a\\", id="backslash"),
        pytest.param("\x00", id="NUL"),
        pytest.param("é", id="non-ASCII"),
    ],
)
async def test_a_repeated_parameter_with_any_name_is_invalid_request(
    world: World, path: str, name: str
) -> None:
    body = f"token={world.refresh_token}&{refresh_form(world)}&{quote(name)}=1&{quote(name)}=2"
    async with world.unchanged():
        response = await world.post(path, body, auth=world.basic("app"))
    assert_oauth_error(response, 400, "invalid_request")


# --- client authentication ----------------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param(lambda w: {"client_secret": w.secrets["app"]}, id="secret in both"),
        pytest.param(
            lambda w: {"client_id": w.client_id("app"), "client_secret": w.secrets["app"]},
            id="id and secret in both",
        ),
        pytest.param(
            lambda w: {"client_id": w.client_id("other"), "client_secret": w.secrets["other"]},
            id="another client in the body",
        ),
        pytest.param(lambda w: {"client_id": w.client_id("other")}, id="another client_id"),
    ],
)
async def test_two_client_authentication_methods_at_once_are_invalid_request(
    world: World, extra: Callable[[World], dict[str, str]]
) -> None:
    form = {"grant_type": "refresh_token", "refresh_token": world.refresh_token, **extra(world)}
    async with world.unchanged():
        response = await world.token(form, client="app")
    assert_oauth_error(response, 400, "invalid_request")
    await world.assert_refresh_works(world.refresh_token)


def b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


BAD_BASIC: list[Any] = [
    pytest.param(lambda w: "Basic !!!not-base64***", id="not base64"),
    pytest.param(lambda w: "Basic " + b64("ab:c").rstrip("="), id="base64 without padding"),
    pytest.param(lambda w: "Basic " + b64(w.client_id("app") + w.secrets["app"]), id="no colon"),
    pytest.param(lambda w: "Basic ", id="empty credentials"),
    pytest.param(lambda w: "Basic", id="scheme only"),
    pytest.param(lambda w: "", id="empty header"),
    pytest.param(lambda w: "Basic " + b64(":" + w.secrets["app"]), id="empty id"),
    pytest.param(lambda w: "Basic " + b64(w.client_id("app") + ":"), id="empty secret"),
    pytest.param(lambda w: "Basic " + b64(":"), id="colon only"),
    pytest.param(lambda w: "Bearer " + w.access_token, id="Bearer scheme"),
    pytest.param(lambda w: "Digest " + b64(f"{w.client_id('app')}:x"), id="Digest scheme"),
    pytest.param(lambda w: "Basic " + b64(b"\xff\xfe:\xff"), id="not UTF-8 inside"),
    pytest.param(lambda w: basic("no-such-client", w.secrets["app"]), id="unknown client"),
    pytest.param(lambda w: basic("x" * 65, w.secrets["app"]), id="over-long client id"),
    pytest.param(lambda w: basic(w.client_id("app"), "wrong"), id="wrong secret"),
    pytest.param(lambda w: basic(w.client_id("app"), w.secrets["other"]), id="other's secret"),
    pytest.param(
        lambda w: basic(w.client_id("app"), w.secrets["app"] + "\x00"), id="secret followed by NUL"
    ),
    pytest.param(
        lambda w: basic(w.client_id("app"), w.secrets["app"][:-1]), id="secret one character short"
    ),
    pytest.param(lambda w: basic(w.client_id("spa"), "anything"), id="public client, a secret"),
]


@pytest.mark.parametrize("header", BAD_BASIC)
async def test_a_malformed_or_wrong_basic_header_is_invalid_client(
    world: World, header: Callable[[World], str]
) -> None:
    async with world.unchanged():
        response = await world.token(refresh_form(world), auth=header(world))
    assert_oauth_error(response, 401, "invalid_client")
    await world.assert_refresh_works(world.refresh_token)


async def test_a_basic_header_with_raw_non_ascii_bytes_is_invalid_client(world: World) -> None:
    async with world.unchanged():
        response = await world.token(
            refresh_form(world), client=None, headers={"authorization": b"Basic \xff\xfe=="}
        )
    assert_oauth_error(response, 401, "invalid_client")


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param(lambda w: {}, id="no client authentication"),
        pytest.param(
            lambda w: {"client_id": "no-such-client", "client_secret": "x"}, id="unknown client"
        ),
        pytest.param(
            lambda w: {"client_id": w.client_id("app"), "client_secret": "wrong"}, id="wrong secret"
        ),
        pytest.param(lambda w: {"client_id": w.client_id("app")}, id="confidential, no secret"),
        pytest.param(
            lambda w: {"client_id": w.client_id("spa"), "client_secret": "x"},
            id="public client, a secret",
        ),
        pytest.param(lambda w: {"client_secret": w.secrets["app"]}, id="secret without id"),
    ],
)
async def test_failed_client_secret_post_authentication_is_invalid_client(
    world: World, extra: Callable[[World], dict[str, str]]
) -> None:
    form = {"grant_type": "refresh_token", "refresh_token": world.refresh_token, **extra(world)}
    async with world.unchanged():
        response = await world.token(form, client=None)
    assert_oauth_error(response, 401, "invalid_client")
    await world.assert_refresh_works(world.refresh_token)


# --- content type -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "encode"),
    [
        pytest.param("application/json", lambda form: json.dumps(form), id="JSON"),
        pytest.param("text/plain", encode_form, id="form text labelled text/plain"),
        pytest.param(None, encode_form, id="no content type"),
        pytest.param(
            "multipart/form-data; boundary=x",
            lambda form: (
                "".join(
                    f'--x\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
                    for k, v in form.items()
                )
                + "--x--"
            ),
            id="multipart",
        ),
    ],
)
async def test_a_body_that_is_not_form_encoded_is_invalid_request(
    world: World, content_type: str | None, encode: Callable[[dict[str, str]], Any]
) -> None:
    form = {"grant_type": "refresh_token", "refresh_token": world.refresh_token}
    async with world.unchanged():
        response = await world.token(encode(form), content_type=content_type)
    assert_oauth_error(response, 400, "invalid_request")
    await world.assert_refresh_works(world.refresh_token)


# --- revocation (RFC 7009) ----------------------------------------------------------------


@pytest.mark.parametrize("body", ["", "token=", "token_type_hint=refresh_token"])
async def test_revocation_without_a_token_is_invalid_request(world: World, body: str) -> None:
    async with world.unchanged():
        response = await world.post("/oauth/revoke", body, auth=world.basic("app"))
    assert_oauth_error(response, 400, "invalid_request")


async def test_revocation_without_client_authentication_is_invalid_client(world: World) -> None:
    async with world.unchanged():
        response = await world.post("/oauth/revoke", {"token": world.refresh_token})
    assert_oauth_error(response, 401, "invalid_client")
    await world.assert_refresh_works(world.refresh_token)


@pytest.mark.parametrize("kind", ["refresh", "access"])
@pytest.mark.parametrize("thief", ["other", "spa"], ids=["confidential", "public"])
async def test_revoking_another_clients_token_is_refused_and_revokes_nothing(
    world: World, thief: str, kind: str
) -> None:
    form = {"token": world.refresh_token if kind == "refresh" else world.access_token}
    if world.clients[thief].is_public:
        form["client_id"] = world.client_id(thief)
    auth = None if world.clients[thief].is_public else world.basic(thief)
    async with world.unchanged():
        response = await world.post("/oauth/revoke", form, auth=auth)
    assert 400 <= response.status_code < 500
    assert_oauth_error(
        response,
        response.status_code,
        ("unauthorized_client", "invalid_request", "invalid_grant", "unsupported_token_type"),
    )
    assert (await world.introspect(world.access_token)).json()["active"] is True
    await world.assert_refresh_works(world.refresh_token)


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(unknown_refresh_token, id="well-formed unknown refresh token"),
        pytest.param(lambda w: "garbage", id="garbage"),
        pytest.param(lambda w: "a.b.c", id="three dots of garbage"),
        pytest.param(lambda w: "\x00", id="NUL"),
        pytest.param(lambda w: sign(w, now=time.time() - 3600), id="expired access token"),
        pytest.param(lambda w: sign(w, issuer="https://elsewhere.example"), id="foreign issuer"),
        pytest.param(signed_by_a_stranger, id="signed by an unknown key"),
    ],
)
async def test_revoking_an_unknown_token_answers_200_and_changes_nothing(
    world: World, token: Callable[[World], str]
) -> None:
    form = {"token": token(world)}
    async with world.unchanged():
        response = await world.post("/oauth/revoke", form, auth=world.basic("app"))
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    await world.assert_refresh_works(world.refresh_token)


# --- introspection (RFC 7662) -------------------------------------------------------------


@pytest.mark.parametrize(
    "auth",
    [
        pytest.param(lambda w: {}, id="none"),
        pytest.param(lambda w: {"auth": basic(w.client_id("app"), "wrong")}, id="wrong secret"),
        pytest.param(lambda w: {"auth": "Basic !!!"}, id="malformed Basic"),
        pytest.param(lambda w: {"body": {"client_id": w.client_id("app")}}, id="id, no secret"),
    ],
)
async def test_introspection_without_valid_client_authentication_is_invalid_client(
    world: World, auth: Callable[[World], dict[str, Any]]
) -> None:
    options = auth(world)
    body = {"token": world.access_token, **options.get("body", {})}
    async with world.unchanged():
        response = await world.post("/oauth/introspect", body, auth=options.get("auth"))
    assert_oauth_error(response, 401, "invalid_client")


@pytest.mark.parametrize("how", ["client_id only", "Basic with a made-up secret"])
async def test_introspection_by_a_public_client_is_invalid_client(world: World, how: str) -> None:
    spa = world.client_id("spa")
    async with world.unchanged():
        if how == "client_id only":
            response = await world.post(
                "/oauth/introspect", {"token": world.access_token, "client_id": spa}
            )
        else:
            response = await world.post(
                "/oauth/introspect", {"token": world.access_token}, auth=basic(spa, "made-up")
            )
    assert_oauth_error(response, 401, "invalid_client")


async def test_the_sessions_own_tokens_introspect_as_active(world: World) -> None:
    """The control for the inactive cases below: the same request with a good token."""
    for token in (world.access_token, world.refresh_token):
        response = await world.introspect(token)
        assert response.status_code == 200
        assert response.json()["active"] is True


INACTIVE_TOKENS: list[Any] = [
    pytest.param(lambda w: "garbage", "app", id="garbage"),
    pytest.param(lambda w: "\x00", "app", id="NUL"),
    pytest.param(lambda w: "a" * 9000, "app", id="over 8 KiB"),
    pytest.param(lambda w: "a.b.c", "app", id="three dots of garbage"),
    pytest.param(unknown_refresh_token, "app", id="unknown refresh token"),
    pytest.param(lambda w: sign(w, now=time.time() - 3600), "app", id="expired"),
    pytest.param(lambda w: sign(w, issuer="https://elsewhere.example"), "app", id="foreign issuer"),
    pytest.param(signed_by_a_stranger, "app", id="signed by an unknown key with our kid"),
    pytest.param(tampered, "app", id="payload changed after signing"),
    pytest.param(lambda w: forge(w, "none", lambda data: b""), "app", id="alg none"),
    pytest.param(hs256_with_the_public_key, "app", id="HS256 keyed with the public key"),
    pytest.param(lambda w: w.refresh_token, "other", id="another client's refresh token"),
    pytest.param(lambda w: w.access_token + "A", "app", id="access token with a byte more"),
]


@pytest.mark.parametrize(("token", "client"), INACTIVE_TOKENS)
async def test_introspecting_a_bad_token_gives_exactly_active_false(
    world: World, token: Callable[[World], str], client: str
) -> None:
    value = token(world)
    async with world.unchanged():
        response = await world.introspect(value, client)
    assert response.status_code == 200, response.text
    assert response.json() == {"active": False}
    assert response.headers["cache-control"] == "no-store"


async def test_introspecting_a_consumed_refresh_token_gives_exactly_active_false(
    world: World,
) -> None:
    assert (await world.refresh(world.refresh_token)).status_code == 200
    async with world.unchanged():
        response = await world.introspect(world.refresh_token)
    assert response.json() == {"active": False}


# --- NUL on every backend -----------------------------------------------------------------


NUL_CASES = [
    pytest.param(
        "/oauth/token",
        "grant_type=refresh_token&refresh_token=x&client_id=%00&client_secret=x",
        None,
        401,
        "invalid_client",
        id="token, NUL client_id in the body",
    ),
    pytest.param(
        "/oauth/token",
        "grant_type=refresh_token&refresh_token=x",
        basic("\x00", "x"),
        401,
        "invalid_client",
        id="token, NUL client_id in Basic",
    ),
    pytest.param(
        "/oauth/token",
        "grant_type=password&username={user}%00&password=x&client_id={app}&client_secret={secret}",
        None,
        400,
        "invalid_grant",
        id="token, NUL username",
    ),
    pytest.param(
        "/oauth/revoke",
        "token=x&client_id=%00&client_secret=x",
        None,
        401,
        "invalid_client",
        id="revoke, NUL client_id",
    ),
    pytest.param(
        "/oauth/introspect",
        "token=x&client_id=%00&client_secret=x",
        None,
        401,
        "invalid_client",
        id="introspect, NUL client_id",
    ),
]


@pytest.mark.parametrize(("path", "body", "auth", "status", "error"), NUL_CASES)
async def test_a_nul_byte_in_a_client_id_or_username_is_a_client_error_on_every_backend(
    make_settings: Callable[..., Settings],
    database_url: str,
    path: str,
    body: str,
    auth: str | None,
    status: int,
    error: str,
) -> None:
    """PostgreSQL text cannot hold NUL; SQLite can. Either way it is the client's mistake."""
    settings = make_settings(secret_key="x" * 40, database_url=database_url)
    async with open_world(settings) as authority:
        world = await authority.with_session()
        form = body.format(
            app=world.client_id("app"), secret=quote_plus(world.secrets["app"]), user=world.username
        )
        async with world.unchanged():
            response = await world.post(path, form, auth=auth)
        assert_oauth_error(response, status, error)
