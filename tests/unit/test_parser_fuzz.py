"""Hypothesis against the token parsers (issue 7): the offline verifier and the refresh
token format with arbitrary bytes and text, valid tokens mutated (bit flips, truncation,
segments swapped between tokens), and the service's own parsers (the ``/oauth`` form,
the ``/auth`` JSON bodies) with arbitrary bodies through the real app.

Every run is the same run: ``derandomize=True`` and no example database.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar.testing import TestClient

from authority.sessions.refresh_tokens import REFRESH_TOKEN, parse_refresh_token, refresh_token_hash
from authority.settings import Settings
from authority.verifier import InvalidToken, Verifier
from authority.verifier.jws import parse_access_token
from authority.web.app import create_app
from tests.helpers.world import open_world, snapshot

ISSUER = "https://authority.example"
AUDIENCE = "api://orders"
NOW = 1_800_000_000
KID = "fuzz-key-1"

FAST = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=300,
    suppress_health_check=[HealthCheck.too_slow],
)
THROUGH_APP = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=60,
    # The client is shared by every example: it is the app under test, not state.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_int(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


@cache
def private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwks() -> dict[str, Any]:
    numbers = private_key().public_key().public_numbers()
    key = {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": KID}
    return {"keys": [{**key, "n": b64url_int(numbers.n), "e": b64url_int(numbers.e)}]}


def sign(header: dict[str, Any], claims: dict[str, Any]) -> str:
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    signature = private_key().sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64url(signature)}"


def claims(**changes: Any) -> dict[str, Any]:
    base = {
        "iss": ISSUER,
        "sub": "42",
        "aud": AUDIENCE,
        "exp": NOW + 600,
        "iat": NOW - 5,
        "jti": "j-1",
        "client_id": "app",
        "scope": "read",
    }
    return {**base, **changes}


HEADER = {"alg": "RS256", "typ": "at+jwt", "kid": KID}


@cache
def valid_tokens() -> tuple[str, ...]:
    return (
        sign(HEADER, claims()),
        sign(HEADER, claims(sub="7", jti="j-2", scope="write")),
        sign(HEADER, claims(aud=[AUDIENCE, "other"], jti="j-3")),
    )


@pytest.fixture(scope="module")
def verifier() -> Verifier:
    return Verifier(ISSUER, AUDIENCE, jwks=jwks(), clock=lambda: NOW)


def test_the_unmutated_tokens_are_valid(verifier: Verifier) -> None:
    """The mutation tests below mean something only if their starting points pass."""
    for token in valid_tokens():
        assert verifier.verify(token)["iss"] == ISSUER


def rejected(verifier: Verifier, token: str | bytes) -> InvalidToken:
    """The token is refused, with the library's own exception and nothing else."""
    with pytest.raises(InvalidToken) as refused:
        verifier.verify(token)
    return refused.value


# --- arbitrary input --------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
JSON_OBJECTS = st.dictionaries(
    st.sampled_from(["alg", "typ", "kid", "crit", "jku", "iss", "aud", "exp", "sub"])
    | st.text(max_size=8),
    JSON_VALUES,
    max_size=8,
)
SEGMENTS = st.one_of(
    st.binary(max_size=64).map(b64url),
    JSON_OBJECTS.map(lambda value: b64url(json.dumps(value).encode())),
    st.text(max_size=40),
)


@FAST
@given(token=st.binary(max_size=10_000) | st.text(max_size=2_000))
def test_arbitrary_bytes_and_text_are_refused_only_with_invalid_token(
    verifier: Verifier, token: bytes | str
) -> None:
    rejected(verifier, token)
    with pytest.raises(InvalidToken):
        verifier.verify_signature(token)


@pytest.mark.slow  # seconds of examples
@FAST
@given(header=SEGMENTS, payload=SEGMENTS, signature=SEGMENTS)
def test_well_formed_looking_tokens_not_signed_by_the_key_are_refused(
    verifier: Verifier, header: str, payload: str, signature: str
) -> None:
    token = f"{header}.{payload}.{signature}"
    try:
        result = parse_access_token(token)
        kid, parsed = result.kid, result.claims
    except InvalidToken:
        pass
    else:  # every check before the crypto passed: the parse is what it says
        assert isinstance(kid, str)
        assert isinstance(parsed, dict)
    rejected(verifier, token)


@pytest.mark.slow  # seconds of examples
@FAST
@given(header=JSON_OBJECTS, body=JSON_OBJECTS)
def test_tokens_with_arbitrary_headers_and_claims_but_a_foreign_signature_are_refused(
    verifier: Verifier, header: dict[str, Any], body: dict[str, Any]
) -> None:
    header = {**HEADER, **header}
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(body).encode())}"
    # A signature made with the real key over something else.
    other = valid_tokens()[0].rsplit(".", 1)[1]
    rejected(verifier, f"{signing_input}.{other}")


# --- mutated valid tokens ----------------------------------------------------------


@FAST
@given(which=st.integers(0, 2), data=st.data())
def test_a_valid_token_with_one_bit_flipped_is_refused(
    verifier: Verifier, which: int, data: st.DataObject
) -> None:
    token = valid_tokens()[which].encode()
    index = data.draw(st.integers(0, len(token) - 1), label="byte")
    bit = data.draw(st.integers(0, 7), label="bit")
    mutated = bytearray(token)
    mutated[index] ^= 1 << bit
    rejected(verifier, bytes(mutated))
    if mutated.isascii():
        rejected(verifier, mutated.decode())


@FAST
@given(which=st.integers(0, 2), data=st.data())
def test_a_valid_token_cut_short_or_extended_is_refused(
    verifier: Verifier, which: int, data: st.DataObject
) -> None:
    token = valid_tokens()[which]
    cut = data.draw(st.integers(0, len(token) - 1), label="cut")
    rejected(verifier, token[:cut])
    rejected(verifier, token[cut:] if cut else token[1:])
    extra = data.draw(st.text(min_size=1, max_size=8), label="extra")
    rejected(verifier, token + extra)
    rejected(verifier, extra + token)


@FAST
@given(
    first=st.integers(0, 2),
    second=st.integers(0, 2),
    order=st.permutations([0, 1, 2]),
    take=st.lists(st.booleans(), min_size=3, max_size=3),
)
def test_segments_swapped_between_valid_tokens_are_refused(
    verifier: Verifier, first: int, second: int, order: list[int], take: list[bool]
) -> None:
    a = valid_tokens()[first].split(".")
    b = valid_tokens()[second].split(".")
    mixed = [b[i] if use_b else a[i] for i, use_b in zip(order, take, strict=True)]
    token = ".".join(mixed)
    if token in valid_tokens():
        return  # the identity permutation of one token is that token
    rejected(verifier, token)


# --- refresh tokens -----------------------------------------------------------------


@pytest.mark.slow  # seconds of examples
@FAST
@given(value=st.text(max_size=100) | st.from_regex(r"[A-Za-z0-9_-]{40,46}", fullmatch=True))
def test_refresh_token_parsing_never_raises_and_hashes_only_well_formed_tokens(
    value: str,
) -> None:
    parsed = parse_refresh_token(value)
    if len(value) == 43 and REFRESH_TOKEN.fullmatch(value):
        assert parsed == refresh_token_hash(value)
        assert isinstance(parsed, bytes)
        assert len(parsed) == 32
    else:
        assert parsed is None


@pytest.mark.slow  # seconds of examples
@FAST
@given(value=st.from_regex(re.compile(r"[A-Za-z0-9_-]{43}\n"), fullmatch=True))
def test_a_refresh_token_with_a_trailing_newline_is_not_a_refresh_token(value: str) -> None:
    assert parse_refresh_token(value) is None


# --- the service's own parsers, through the app -------------------------------------


@dataclass
class Running:
    client: TestClient  # type: ignore[type-arg]
    settings: Settings
    basic: str

    def tables(self) -> Any:
        """Every row of the token, user and throttle tables, through a fresh engine."""
        return asyncio.run(snapshot(self.settings.database_url))


async def _seed(settings: Settings) -> str:
    async with open_world(settings) as world:
        await world.with_session()
        return world.basic("app")


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    tmp = tmp_path_factory.mktemp("parser-fuzz")
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp / 'authority.db'}",
        keys_dir=tmp / "keys",
        env="test",
    )
    client_basic = asyncio.run(_seed(settings))
    with TestClient(create_app(settings), base_url="http://testserver.local") as client:
        yield Running(client, settings, client_basic)


BODIES = st.one_of(
    st.binary(max_size=2_000),
    st.text(max_size=500).map(str.encode),
    JSON_VALUES.map(lambda value: json.dumps(value).encode()),
    st.lists(st.tuples(st.text(max_size=12), st.text(max_size=12)), max_size=6).map(
        lambda pairs: "&".join(f"{k}={v}" for k, v in pairs).encode()
    ),
)
CONTENT_TYPES = st.sampled_from(
    [
        None,
        "application/x-www-form-urlencoded",
        "application/x-www-form-urlencoded; charset=utf-8",
        "application/json",
        "text/plain",
        "multipart/form-data; boundary=x",
    ]
)


def assert_client_error(response: Any) -> None:
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    assert isinstance(response.json(), dict)


@pytest.mark.parametrize("path", ["/oauth/token", "/oauth/revoke", "/oauth/introspect"])
def test_arbitrary_oauth_bodies_get_a_client_error_and_change_nothing(
    running: Running, path: str
) -> None:
    before = running.tables()

    @THROUGH_APP
    @given(body=BODIES, content_type=CONTENT_TYPES, authenticated=st.booleans())
    def send(body: bytes, content_type: str | None, authenticated: bool) -> None:
        headers = {"content-type": content_type} if content_type else {}
        if authenticated:
            headers["authorization"] = running.basic
        response = running.client.post(path, content=body, headers=headers)
        if response.status_code == 200:  # an empty revocation or introspection form
            assert path != "/oauth/token"
            assert response.json() in ({}, {"active": False}), response.text
            return
        assert_client_error(response)
        assert set(response.json()) == {"error", "error_description"}

    send()
    assert running.tables() == before


@pytest.mark.parametrize("path", ["/auth/login", "/auth/register", "/auth/refresh"])
def test_arbitrary_auth_bodies_get_a_client_error_and_change_nothing(
    running: Running, path: str
) -> None:
    before = running.tables()

    @THROUGH_APP
    @given(body=BODIES, content_type=CONTENT_TYPES)
    def send(body: bytes, content_type: str | None) -> None:
        headers = {"content-type": content_type} if content_type else {}
        response = running.client.post(path, content=body, headers=headers)
        assert_client_error(response)
        assert "detail" in response.json()

    send()
    assert running.tables() == before
