"""Reading back an ID token this authority signed: the ``id_token_hint`` of
RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0 section 2). Parsing and the
signature check are the verifier library's, as for access tokens."""

from __future__ import annotations

from typing import Any

from authority.signing.keys import KeyRing
from authority.verifier.jose import InvalidToken, json_object
from authority.verifier.jws import check_header, check_signature, split


def decode_own_id_token(ring: KeyRing, token: str, issuer: str) -> dict[str, Any] | None:
    """The claims of an ID token this authority signed, expired or not (an
    ``id_token_hint`` of RP-initiated logout is often expired), else None."""
    try:
        header, signing_input, payload, signature = split(token)
        alg, kid = check_header(header, typ=False)
        key = ring.public_key(kid)
        if header.get("typ") != "JWT" or key is None:
            return None
        check_signature(key, alg, signature, signing_input)
        claims = json_object(payload)
    except InvalidToken:
        return None
    if claims.get("iss") != issuer or type(claims.get("aud")) is not str:
        return None
    return claims
