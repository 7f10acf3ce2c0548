"""Access tokens (RFC 9068 JWT profile), signed with the key they are given.

Signing goes straight to the algorithm table (``cryptography``): the header of each key
is encoded once, and only the current key of the ``KeyManager`` ever signs (no key set,
so no library can pick a key for a header without ``kid``). Tests verify the result
with PyJWT and joserfc.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from authority.randomness import token_urlsafe
from authority.verifier.algorithms import Algorithm

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
        "status",
        "cnf",
    }
)
# RFC 9449 section 6.1: the RFC 7638 thumbprint of the key the tokens issued for this
# request are bound to (``cnf.jkt``); set by the token endpoint once the request's DPoP
# proof has passed (``authority.grants.dpop``), for every grant alike.
DPOP_KEY: ContextVar[str | None] = ContextVar("dpop_key", default=None)
ClaimsHook = Callable[[Mapping[str, Any]], Mapping[str, Any]]
"""Called with the registered claims of each access token; returns extra claims to add.
Set it with ``create_app(settings, claims_hook=...)``."""

_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    algorithm: Algorithm
    private_key: Any = field(repr=False)
    activate_at: float


class KeySource(Protocol):
    """Where the key that signs now comes from (the running ``KeyManager``)."""

    def signing_key(self) -> SigningKey: ...


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

    def __init__(
        self,
        issuer: str,
        ttl: int,
        claims_hook: ClaimsHook | None = None,
        status_uri: str | None = None,
    ):
        self.issuer = issuer
        self.status_uri = status_uri
        self.ttl = ttl
        self.claims_hook = claims_hook
        self._headers: dict[str, bytes] = {}

    def _header(self, key: SigningKey) -> bytes:
        header = self._headers.get(key.kid)
        if header is None:
            header = b64url(_encode({"alg": key.algorithm.name, "typ": "at+jwt", "kid": key.kid}))
            if len(self._headers) > 16:  # retired keys never sign again
                self._headers.clear()
            self._headers[key.kid] = header
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
        status_idx: int | None = None,
    ) -> AccessToken:
        issued = int(now)
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": sub,
            "aud": audience,
            "exp": issued + self.ttl,
            "iat": issued,
            "jti": token_urlsafe(16),
            "client_id": client_id,
            "scope": scope,
        }
        if username is not None:
            claims["username"] = username
        if sid is not None:
            claims["sid"] = sid
        jkt = DPOP_KEY.get()
        if jkt is not None:
            claims["cnf"] = {"jkt": jkt}
        if status_idx is not None and self.status_uri is not None:
            # draft-ietf-oauth-status-list section 6.1: the token's place in the list.
            claims["status"] = {"status_list": {"idx": status_idx, "uri": self.status_uri}}
        if self.claims_hook is not None:
            extra = self.claims_hook(claims)
            claims.update({k: v for k, v in extra.items() if k not in RESERVED_CLAIMS})
        signing_input = self._header(key) + b"." + b64url(_encode(claims))
        signature = key.algorithm.sign(key.private_key, signing_input)
        token = (signing_input + b"." + b64url(signature)).decode()
        return AccessToken(token, claims["jti"], claims["exp"], claims)
