"""Reading back an access token this authority signed: for revocation (RFC 7009),
introspection (RFC 7662) and ``/auth``, which answer "inactive" rather than say why."""

from __future__ import annotations

import math
from typing import Any

from authority.signing.keys import KeyRing
from authority.verifier.jose import InvalidToken
from authority.verifier.jws import check_signature, parse_access_token


def decode_own_access_token(
    ring: KeyRing, token: str, *, issuer: str, now: float | None, leeway: int
) -> dict[str, Any] | None:
    """The claims of an unexpired access token this authority signed, else None. With
    ``now=None`` an expired one is accepted too (to tell which session it came from).

    Parsing and the signature check are the verifier library's, so introspection and
    resource servers judge a token alike.
    """
    try:
        parsed = parse_access_token(token)
        key = ring.public_key(parsed.kid)
        if key is None:
            return None
        check_signature(key, parsed.alg, parsed.signature, parsed.signing_input)
    except InvalidToken:
        return None
    claims = parsed.claims
    exp = claims.get("exp")
    if claims.get("iss") != issuer or type(claims.get("jti")) is not str:
        return None
    if type(exp) is not int and not (type(exp) is float and math.isfinite(exp)):
        return None
    return claims if now is None or exp + leeway > now else None
