"""Strict JOSE building blocks of the offline verifier: unpadded base64url (RFC 7515
section 2), JSON without duplicate members or non-finite numbers (RFC 7515 section 5.2,
RFC 8259), RSA public JWKs usable for RS256 (RFC 7517, RFC 7518 section 6.3), and the
``InvalidToken`` error.

Only the standard library and ``cryptography``: a resource server installs this without
the authority's server dependencies.
"""

from __future__ import annotations

import binascii
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric import rsa

log = logging.getLogger("authority.verifier")

Reason = Literal[
    "malformed",
    "too_large",
    "bad_base64",
    "bad_json",
    "duplicate_member",
    "invalid_number",
    "alg_not_allowed",
    "bad_typ",
    "forbidden_header",
    "unsupported_crit",
    "bad_kid",
    "unknown_kid",
    "bad_signature",
    "missing_claim",
    "invalid_claim",
    "wrong_issuer",
    "wrong_audience",
    "expired",
    "not_yet_valid",
    "issued_in_future",
    "keys_unavailable",
]

DESCRIPTIONS: dict[Reason, str] = {
    "malformed": "not a JWS compact serialization of three segments",
    "too_large": "token exceeds the size limit",
    "bad_base64": "segment is not canonical unpadded base64url",
    "bad_json": "segment is not a JSON object",
    "duplicate_member": "JSON object has a duplicate member",
    "invalid_number": "JSON holds NaN or Infinity",
    "alg_not_allowed": "alg must be RS256",
    "bad_typ": "typ must be at+jwt",
    "forbidden_header": "jwk, jku, x5u and x5c headers are not accepted",
    "unsupported_crit": "crit names an unsupported extension",
    "bad_kid": "kid is missing or not a well-formed key id",
    "unknown_kid": "no published key has this kid",
    "bad_signature": "signature does not verify",
    "missing_claim": "a required claim is missing",
    "invalid_claim": "a claim has the wrong type",
    "wrong_issuer": "iss is not the expected issuer",
    "wrong_audience": "aud does not contain the expected audience",
    "expired": "token has expired",
    "not_yet_valid": "token is not valid yet (nbf)",
    "issued_in_future": "iat is in the future",
    "keys_unavailable": "the signing keys cannot be fetched",
}


class InvalidToken(Exception):
    """A token was rejected. ``reason`` is one of ``Reason``; every rejection maps to
    RFC 6750 ``invalid_token`` except ``keys_unavailable`` (see ``KeysUnavailable``)."""

    def __init__(self, reason: Reason, description: str | None = None):
        self.reason: Reason = reason
        self.description = description or DESCRIPTIONS[reason]
        super().__init__(f"{reason}: {self.description}")


class KeysUnavailable(InvalidToken):
    """No usable key set: the JWKS was never fetched, or the last good one is older than
    the stale limit while the endpoint keeps failing. The token may be fine: a resource
    server should answer 503, not 401."""

    def __init__(self, description: str | None = None):
        super().__init__("keys_unavailable", description)


# --- base64url ------------------------------------------------------------------------

# '-' and '_' become the standard alphabet; '+', '/' and '=' become a byte that
# binascii's strict mode refuses, so only the url-safe alphabet without padding passes.
_TO_STANDARD = bytes.maketrans(b"-_+/=", b"+/!!!")
_PADDING = (b"", b"", b"==", b"=")
# The last character of a 2- or 3-character final group carries 4 or 2 unused bits, which
# must be zero (RFC 4648 section 3.5): other characters are a second spelling of the
# same bytes, and a token must have exactly one spelling.
_LAST_OF_2 = frozenset(b"AQgw")
_LAST_OF_3 = frozenset(b"AEIMQUYcgkosw048")


def b64decode(segment: bytes) -> bytes:
    """Canonical unpadded base64url, or ``InvalidToken("bad_base64")``."""
    rest = len(segment) & 3
    if rest and (rest == 1 or segment[-1] not in (_LAST_OF_2 if rest == 2 else _LAST_OF_3)):
        raise InvalidToken("bad_base64")
    try:
        return binascii.a2b_base64(
            segment.translate(_TO_STANDARD) + _PADDING[rest], strict_mode=True
        )
    except binascii.Error:
        raise InvalidToken("bad_base64") from None


# --- JSON -----------------------------------------------------------------------------


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    members = dict(pairs)
    if len(members) != len(pairs):
        raise InvalidToken("duplicate_member")
    return members


def _no_constants(name: str) -> Any:
    raise InvalidToken("invalid_number")


_DECODER = json.JSONDecoder(object_pairs_hook=_unique_members, parse_constant=_no_constants)


def json_object(data: bytes) -> dict[str, Any]:
    """A UTF-8 JSON object without duplicate members, NaN or Infinity, else InvalidToken."""
    try:
        value = _DECODER.decode(data.decode())
    except (ValueError, RecursionError):  # also UnicodeDecodeError, digit limits
        raise InvalidToken("bad_json") from None
    if type(value) is not dict:
        raise InvalidToken("bad_json")
    return value


# --- RSA JWKs -------------------------------------------------------------------------

MIN_RSA_BITS = 2048
MAX_RSA_BITS = 8192
MAX_KEYS = 100
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


@dataclass(frozen=True, slots=True)
class PublicKey:
    """An RS256 verification key."""

    kid: str
    key: rsa.RSAPublicKey


def _roca_subgroups() -> tuple[tuple[int, frozenset[int]], ...]:
    """For each small prime p, the powers of 65537 mod p: the moduli of keys made by the
    Infineon library (ROCA, CVE-2017-15361) lie in these subgroups for every p."""
    primes = [p for p in range(3, 168) if all(p % d for d in range(2, p))]
    groups = []
    for p in primes:
        powers, x = set(), 1
        while (x := x * 65537 % p) not in powers:
            powers.add(x)
        groups.append((p, frozenset(powers)))
    return tuple(groups)


_ROCA = _roca_subgroups()


def roca_vulnerable(n: int) -> bool:
    return all(n % p in powers for p, powers in _ROCA)


def _uint(value: object) -> int:
    if type(value) is not str or not value:
        raise ValueError("not a base64url integer")
    try:
        return int.from_bytes(b64decode(value.encode("ascii")), "big")
    except (InvalidToken, UnicodeEncodeError):
        raise ValueError("not a base64url integer") from None


def rs256_key(jwk: Mapping[str, Any]) -> PublicKey:
    """The RS256 verification key of a public JWK, or ValueError saying why it is unusable.

    Refused: other key types, ``use`` other than ``sig``, ``alg`` other than RS256,
    ``key_ops`` without ``verify``, private key material, moduli under 2048 bits or
    vulnerable to ROCA, and exponents that are even, below 3 or above 2**32.
    """
    kid = jwk.get("kid")
    if type(kid) is not str or not kid:
        raise ValueError("no kid")
    if jwk.get("kty") != "RSA":
        raise ValueError("kty is not RSA")
    if jwk.get("use", "sig") != "sig":
        raise ValueError("use is not sig")
    if jwk.get("alg", "RS256") != "RS256":
        raise ValueError("alg is not RS256")
    ops = jwk.get("key_ops", ["verify"])
    if not isinstance(ops, list) or "verify" not in ops:
        raise ValueError("key_ops lacks verify")
    if not _PRIVATE_MEMBERS.isdisjoint(jwk):
        raise ValueError("holds private key material")
    n, e = _uint(jwk.get("n")), _uint(jwk.get("e"))
    if not MIN_RSA_BITS <= n.bit_length() <= MAX_RSA_BITS:
        raise ValueError(f"modulus of {n.bit_length()} bits")
    if e < 3 or e % 2 == 0 or e > 2**32:
        raise ValueError("unsafe public exponent")
    if roca_vulnerable(n):
        raise ValueError("modulus is vulnerable to ROCA (CVE-2017-15361)")
    return PublicKey(kid, rsa.RSAPublicNumbers(e, n).public_key())


def parse_jwks(document: Mapping[str, Any] | str | bytes) -> dict[str, PublicKey]:
    """The usable RS256 keys of a JWKS by ``kid``; ValueError if it is not a JWKS at all.

    Unusable keys are skipped (and logged); a ``kid`` given to two keys is ambiguous, so
    neither is used.
    """
    if isinstance(document, str | bytes):
        try:
            document = json_object(document.encode() if isinstance(document, str) else document)
        except InvalidToken:
            raise ValueError("JWKS is not a JSON object") from None
    entries = document.get("keys")
    if not isinstance(entries, list) or len(entries) > MAX_KEYS:
        raise ValueError("JWKS has no list of keys")
    keys: dict[str, PublicKey] = {}
    ambiguous: set[str] = set()
    for jwk in entries:
        if not isinstance(jwk, Mapping):
            continue
        try:
            key = rs256_key(jwk)
        except ValueError as exc:
            log.warning("JWKS key %.64r ignored: %s", jwk.get("kid"), exc)
            continue
        if key.kid in keys:
            ambiguous.add(key.kid)
        keys[key.kid] = key
    for kid in ambiguous:
        log.warning("JWKS key %.64r ignored: two keys have this kid", kid)
        del keys[kid]
    return keys
