"""DPoP proofs for tests (RFC 9449 section 4.2): made by the holder's P-256, Ed25519 or
RSA key, with any header or claim changed or dropped."""

from __future__ import annotations

import hashlib
from typing import Any

from joserfc.jwk import JWKRegistry

from authority.verifier.dpop import access_token_hash
from tests.helpers.verifier import (
    NOW,
    CurveKey,
    b64,
    curve_jwk,
    ec_key,
    public_jwk,
    rsa_key,
    sign,
    sign_curve,
)

URL = "https://api.example.com/orders"
HOLDER = 11  # the client's key number; ATTACKER's is another
ATTACKER = 12


def proof_jwk(key: Any) -> dict[str, str]:
    jwk = public_jwk(key) if key is rsa_key(HOLDER) else curve_jwk(key)
    return {k: v for k, v in jwk.items() if k not in ("kid", "use", "alg")}


def make_proof(
    key: Any = None,
    *,
    header: dict[str, Any] | None = None,
    token: str | None = None,
    **changes: Any,
) -> str:
    """A proof by ``key`` (the holder's P-256 key by default) for POST ``URL`` at NOW."""
    key = key if key is not None else ec_key(HOLDER)
    alg = "RS256" if key is rsa_key(HOLDER) else ("ES256" if key is ec_key(HOLDER) else "EdDSA")
    values: dict[str, Any] = {"jti": b64(hashlib.sha256(repr(changes).encode()).digest())}
    values |= {"htm": "POST", "htu": URL, "iat": int(NOW)}
    if token is not None:
        values["ath"] = access_token_hash(token)
    payload = {k: v for k, v in (values | changes).items() if v is not None}
    head = {"typ": "dpop+jwt", "alg": alg, "jwk": proof_jwk(key)} | (header or {})
    head = {k: v for k, v in head.items() if v is not None}
    if key is rsa_key(HOLDER):
        return sign(payload, head, key)
    curve_key: CurveKey = key
    return sign_curve(payload, curve_key, head)


JKT = JWKRegistry.import_key(dict(proof_jwk(ec_key(HOLDER)).items())).thumbprint()
