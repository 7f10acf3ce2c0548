"""A published key verifies only under the algorithm it names, and only when its
``kty`` and ``crv`` are that algorithm's (RFC 7518 sections 6.2 and 6.3, RFC 8037):
a JWKS key whose members disagree, or that names no ``alg``, is skipped, so a token
that points at it finds no key."""

from __future__ import annotations

from typing import Any

import pytest

from authority.verifier import InvalidToken, Verifier
from authority.verifier.jwks import parse_jwks
from tests.helpers.verifier import (
    AUDIENCE,
    ISSUER,
    NOW,
    b64,
    claims,
    curve_jwk,
    ec_key,
    ed_key,
    public_jwk,
    rsa_key,
    sign_curve,
)

P256, ED25519 = curve_jwk(ec_key()), curve_jwk(ed_key())
OFF_CURVE_Y = b64((int.from_bytes(b"\x01" * 32, "big")).to_bytes(32, "big"))

DISAGREEING: list[tuple[str, dict[str, Any]]] = [
    ("p384-key-named-es256", curve_jwk(ec_key(0, "P-384"))),
    ("p256-key-named-eddsa", P256 | {"alg": "EdDSA"}),
    ("p256-key-named-rs256", P256 | {"alg": "RS256"}),
    ("p256-key-with-crv-p384", P256 | {"crv": "P-384"}),
    ("p256-key-with-crv-ed25519", P256 | {"crv": "Ed25519"}),
    ("ed25519-key-named-es256", ED25519 | {"alg": "ES256"}),
    ("ed25519-key-named-Ed25519", ED25519 | {"alg": "Ed25519"}),
    ("x25519-key-named-eddsa", ED25519 | {"crv": "X25519"}),
    ("ed448-key-named-eddsa", ED25519 | {"crv": "Ed448"}),
    ("rsa-key-named-es256", public_jwk(rsa_key()) | {"alg": "ES256"}),
    ("p256-key-without-alg", {k: v for k, v in P256.items() if k != "alg"}),
    ("ed25519-key-without-alg", {k: v for k, v in ED25519.items() if k != "alg"}),
    ("rsa-key-without-alg", {k: v for k, v in public_jwk(rsa_key()).items() if k != "alg"}),
    ("p256-point-off-the-curve", P256 | {"y": OFF_CURVE_Y}),
    ("p256-coordinate-of-33-bytes", P256 | {"x": b64(b"\x00" + b"\x01" * 32)}),
    ("ed25519-key-of-31-bytes", ED25519 | {"x": b64(b"\x01" * 31)}),
    ("p256-key-with-private-d", P256 | {"d": b64(b"\x01" * 32)}),
    ("ed25519-key-for-encryption", ED25519 | {"use": "enc"}),
]


@pytest.mark.parametrize("jwk", [pytest.param(j, id=n) for n, j in DISAGREEING])
def test_a_key_whose_alg_kty_and_crv_disagree_is_skipped(jwk: dict[str, Any]) -> None:
    assert parse_jwks({"keys": [jwk]}) == {}


@pytest.mark.parametrize("jwk", [pytest.param(j, id=n) for n, j in DISAGREEING[:9]])
def test_a_token_pointing_at_a_skipped_key_is_refused(jwk: dict[str, Any]) -> None:
    verifier = Verifier(ISSUER, AUDIENCE, jwks={"keys": [jwk]}, clock=lambda: NOW)
    key = ed_key() if jwk["kty"] == "OKP" else ec_key()
    head = {"alg": jwk["alg"], "typ": "at+jwt", "kid": jwk["kid"]}
    with pytest.raises(InvalidToken) as refused:
        verifier.verify(sign_curve(claims(), key, head))
    assert refused.value.reason in ("unknown_kid", "alg_not_allowed")


@pytest.mark.parametrize(("jwk", "key"), [(P256, ec_key()), (ED25519, ed_key())])
def test_a_key_whose_members_agree_verifies_its_own_tokens(jwk: dict[str, Any], key: Any) -> None:
    verifier = Verifier(ISSUER, AUDIENCE, jwks={"keys": [jwk]}, clock=lambda: NOW)
    assert verifier.verify(sign_curve(claims(), key))["sub"] == "svc"
