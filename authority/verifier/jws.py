"""The JWS compact serialization of an access token (RFC 7515 sections 3.1 and 5.2),
checked before any key is touched: size, three segments, canonical base64url, JSON
objects without duplicate members, an accepted ``alg``, no header that lets the token
choose its own key, no ``crit``, a well-formed ``kid``; then the signature with a key
of that very algorithm.

The authority's introspection and revocation parse tokens here too, so the issuer and
its resource servers judge a token alike.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from authority.verifier.algorithms import ALGORITHMS, InvalidSignature
from authority.verifier.jose import InvalidToken, json_object
from authority.verifier.jose import split as split  # re-exported: its callers import it from here
from authority.verifier.jwks import PublicKey

# RFC 7515 section 4.1: a key or a key URL named by the token itself is a way for the
# sender to choose the key that checks it.
FORBIDDEN_HEADERS = frozenset({"jwk", "jku", "x5u", "x5c"})
# A kid is looked up in a dictionary, never used as a path or in a query; this shape
# also keeps unknown-kid refetches to key ids that could be real.
KID = re.compile(r"[A-Za-z0-9._~@:+=-]{1,128}")


class ParsedToken(NamedTuple):
    alg: str
    kid: str
    claims: dict[str, Any]
    signing_input: bytes
    signature: bytes


def _is_access_token_type(value: object) -> bool:
    """RFC 9068 section 4: ``typ`` is the media type ``application/at+jwt``, which
    RFC 7515 section 4.1.9 lets a token spell without the ``application/`` prefix;
    media type names are case-insensitive (RFC 6838 section 4.2)."""
    if type(value) is not str:
        return False
    lowered = value.lower()
    return lowered in ("at+jwt", "application/at+jwt")


def check_header(header: dict[str, Any], *, typ: bool) -> tuple[str, str]:
    """The ``alg`` and ``kid`` of an acceptable protected header (RFC 7515 section 4.1)."""
    alg = header.get("alg")
    if type(alg) is not str or alg not in ALGORITHMS:
        raise InvalidToken("alg_not_allowed")
    if typ and not _is_access_token_type(header.get("typ")):
        raise InvalidToken("bad_typ")
    if not FORBIDDEN_HEADERS.isdisjoint(header):
        raise InvalidToken("forbidden_header")
    if "crit" in header:  # no extension is understood, so any crit must fail
        raise InvalidToken("unsupported_crit")
    kid = header.get("kid")
    if type(kid) is not str or not KID.fullmatch(kid):
        raise InvalidToken("bad_kid")
    return alg, kid


def parse_access_token(token: object) -> ParsedToken:
    """Every check of an access token that needs no key."""
    header, signing_input, payload, signature = split(token)
    alg, kid = check_header(header, typ=True)
    return ParsedToken(alg, kid, json_object(payload), signing_input, signature)


def check_signature(key: PublicKey, alg: str, signature: bytes, signing_input: bytes) -> None:
    """The signature by ``key`` under the token's ``alg``, which must be the key's own
    (RFC 8725 section 3.1: a key is used with one algorithm only)."""
    if key.algorithm.name != alg:
        raise InvalidToken("alg_not_allowed")
    try:
        key.algorithm.verify(key.key, signature, signing_input)
    except InvalidSignature:
        raise InvalidToken("bad_signature") from None
