"""Access tokens (RFC 9068 JWT profile, RS256) and the refresh token format.

Signing goes straight to ``cryptography``: the header of each key is encoded once, and
only the current key of the ``KeyManager`` ever signs (no key set, so no library can
pick a key for a header without ``kid``). Tests verify the result with PyJWT and
joserfc.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from authority.signing.keys import KeyRing, SigningKey
from authority.verifier.verify import InvalidToken, parse_access_token

REFRESH_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")
# Claims the authority sets; a claims hook cannot override them.
RESERVED_CLAIMS = frozenset(
    {
        "iss",
        "sub",
        "aud",
        "exp",
        "nbf",
        "iat",
        "jti",
        "client_id",
        "scope",
        "username",
        "sid",
        "auth_time",
    }
)
ClaimsHook = Callable[[Mapping[str, Any]], Mapping[str, Any]]
"""Called with the registered claims of each access token; returns extra claims to add.
Set it with ``create_app(settings, claims_hook=...)``."""

_encode = msgspec.json.Encoder().encode
_PKCS1 = padding.PKCS1v15()
_SHA256 = hashes.SHA256()


def b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


@dataclass(frozen=True, slots=True)
class AccessToken:
    token: str
    jti: str
    expires_at: int
    claims: dict[str, Any]


class AccessTokenSigner:
    """Builds and signs RFC 9068 access tokens with a given signing key."""

    def __init__(self, issuer: str, ttl: int, claims_hook: ClaimsHook | None = None):
        self.issuer = issuer
        self.ttl = ttl
        self.claims_hook = claims_hook
        self._headers: dict[str, bytes] = {}

    def _header(self, kid: str) -> bytes:
        header = self._headers.get(kid)
        if header is None:
            header = b64url(_encode({"alg": "RS256", "typ": "at+jwt", "kid": kid}))
            if len(self._headers) > 16:  # retired keys never sign again
                self._headers.clear()
            self._headers[kid] = header
        return header

    def sign(
        self,
        key: SigningKey,
        *,
        now: float,
        sub: str,
        client_id: str,
        scope: str,
        audience: str,
        username: str | None = None,
        sid: str | None = None,
    ) -> AccessToken:
        issued = int(now)
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": sub,
            "aud": audience,
            "exp": issued + self.ttl,
            "iat": issued,
            "jti": secrets.token_urlsafe(16),
            "client_id": client_id,
            "scope": scope,
        }
        if username is not None:
            claims["username"] = username
        if sid is not None:
            claims["sid"] = sid
        if self.claims_hook is not None:
            extra = self.claims_hook(claims)
            claims.update({k: v for k, v in extra.items() if k not in RESERVED_CLAIMS})
        signing_input = self._header(key.kid) + b"." + b64url(_encode(claims))
        signature = key.private_key.sign(signing_input, _PKCS1, _SHA256)
        token = (signing_input + b"." + b64url(signature)).decode()
        return AccessToken(token, claims["jti"], claims["exp"], claims)


def new_refresh_token() -> tuple[str, bytes]:
    """An opaque refresh token of 256 random bits and the hash that is stored."""
    token = secrets.token_urlsafe(32)
    return token, refresh_token_hash(token)


def refresh_token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def parse_refresh_token(value: str) -> bytes | None:
    """The stored hash of a well-formed token, or None before any database work."""
    if len(value) != 43 or not REFRESH_TOKEN.fullmatch(value):
        return None
    return refresh_token_hash(value)


def decode_own_access_token(
    ring: KeyRing, token: str, *, issuer: str, now: float | None, leeway: int
) -> dict[str, Any] | None:
    """The claims of an unexpired access token this authority signed, else None. With
    ``now=None`` an expired one is accepted too (to tell which session it came from).

    Parsing is the verifier library's (``authority.verifier``), so introspection and
    resource servers judge a token alike; used by revocation and introspection, which
    answer "inactive" rather than say why.
    """
    try:
        kid, claims, signing_input, signature = parse_access_token(token)
    except InvalidToken:
        return None
    key = ring.public_key(kid)
    if key is None:
        return None
    try:
        key.verify(signature, signing_input, _PKCS1, _SHA256)
    except InvalidSignature:
        return None
    exp = claims.get("exp")
    if claims.get("iss") != issuer or type(claims.get("jti")) is not str:
        return None
    if type(exp) is not int and not (type(exp) is float and math.isfinite(exp)):
        return None
    return claims if now is None or exp + leeway > now else None
