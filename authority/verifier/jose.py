"""Strict JOSE building blocks of the offline verifier: unpadded base64url (RFC 7515
section 2), JSON without duplicate members or non-finite numbers (RFC 7515 section 5.2,
RFC 8259), and the ``InvalidToken`` error.

Only the standard library and ``cryptography``: a resource server installs this without
the authority's server dependencies.
"""

from __future__ import annotations

import binascii
import json
import logging
from typing import Any, Literal

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
    "revoked",
    "status_unavailable",
    "dpop_required",
    "dpop_unbound",
    "invalid_dpop_proof",
]

DESCRIPTIONS: dict[Reason, str] = {
    "malformed": "not a JWS compact serialization of three segments",
    "too_large": "token exceeds the size limit",
    "bad_base64": "segment is not canonical unpadded base64url",
    "bad_json": "segment is not a JSON object",
    "duplicate_member": "JSON object has a duplicate member",
    "invalid_number": "JSON holds NaN or Infinity",
    "alg_not_allowed": "alg is not an allowed algorithm for this key",
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
    "revoked": "the token status list says the token is revoked",
    "status_unavailable": "the token status list cannot be fetched",
    "dpop_required": "the token is bound to a DPoP key: send it with a DPoP proof",
    "dpop_unbound": "a DPoP proof came with a token that is not bound to a key",
    "invalid_dpop_proof": "the DPoP proof is not valid",
}


class InvalidToken(Exception):
    """A token was rejected. ``reason`` is one of ``Reason``; every rejection maps to
    RFC 6750 ``invalid_token`` except ``keys_unavailable`` (see ``KeysUnavailable``) and
    ``status_unavailable`` (``authority.verifier.status.StatusUnavailable``)."""

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


class IssuerMismatch(InvalidToken):
    """The issuer's metadata names another issuer than the ``Verifier`` was given: a
    configuration error, not an outage. RFC 8414 section 3.3: the metadata's ``issuer``
    MUST be identical to the issuer whose metadata was fetched, so its keys are not
    used, and every token is refused as ``wrong_issuer`` until the two agree. The
    message says both: ``expected`` (the Verifier's) and ``found`` (the metadata's)."""

    def __init__(self, expected: str, found: object, url: str):
        self.expected = expected
        self.found = found
        hint = ""
        if isinstance(found, str) and found.rstrip("/") == expected.rstrip("/"):
            hint = "; they differ by a trailing slash"
        super().__init__(
            "wrong_issuer",
            f"the Verifier expects issuer {expected!r} but the metadata at {url} names "
            f"{shown(found)}{hint}: give the Verifier the authority's issuer exactly",
        )


def shown(value: object, limit: int = 200) -> str:
    """``repr(value)``, cut to ``limit`` characters, for an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


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


# An access token's size limit (a status list is larger and says so).
MAX_TOKEN_BYTES = 8192


def split(
    token: object, limit: int = MAX_TOKEN_BYTES
) -> tuple[dict[str, Any], bytes, bytes, bytes]:
    """The header, signing input, payload and signature of a compact JWS of at most
    ``limit`` bytes (an access token's, unless told: a status list is larger)."""
    if type(token) is str:
        if len(token) > limit:
            raise InvalidToken("too_large")
        try:
            raw = token.encode("ascii")
        except UnicodeEncodeError:
            raise InvalidToken("malformed") from None
    elif isinstance(token, bytes):
        if len(token) > limit:
            raise InvalidToken("too_large")
        raw = token
    else:
        raise InvalidToken("malformed")
    if raw.count(b".") != 2:
        raise InvalidToken("malformed")
    head, payload, signature = raw.split(b".")
    header = json_object(b64decode(head))
    return header, raw[: len(head) + 1 + len(payload)], b64decode(payload), b64decode(signature)
