"""ID tokens and the claims of scopes (OpenID Connect Core 1.0 sections 2, 3.1.3.6 and
5.4): a JWT (``typ`` JWT) signed by the current key, whose audience is the client.

``at_hash`` is the left half of the hash of the access token, with the hash of the
signing algorithm: SHA-256 for RS256 and ES256, SHA-512 for EdDSA with Ed25519 (the
OpenID Foundation's guidance for EdDSA)."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import msgspec

from authority.accounts.users import UserRecord
from authority.signing.signer import SigningKey, b64url

SCOPE_CLAIMS = {
    "profile": ("preferred_username",),
    "email": ("email", "email_verified"),
}
CLAIMS_SUPPORTED = (
    "sub",
    "iss",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "nonce",
    "sid",
    "at_hash",
    *(claim for claims in SCOPE_CLAIMS.values() for claim in claims),
)
OPENID_SCOPES = ("openid", "profile", "email", "offline_access")
_encode = msgspec.json.Encoder().encode


def user_claims(user: UserRecord, scopes: set[str]) -> dict[str, Any]:
    """``sub`` and the claims the granted scopes allow (section 5.4). Email addresses are
    not verified by the authority, so ``email_verified`` is false."""
    claims: dict[str, Any] = {"sub": str(user.id)}
    if "profile" in scopes:
        claims["preferred_username"] = user.username
    if "email" in scopes:
        claims["email"] = user.email
        claims["email_verified"] = False
    return claims


def at_hash(access_token: str, algorithm: str) -> str:
    digest = (hashlib.sha512 if algorithm == "EdDSA" else hashlib.sha256)(access_token.encode())
    half = digest.digest()[: digest.digest_size // 2]
    return base64.urlsafe_b64encode(half).rstrip(b"=").decode()


def sign_id_token(
    key: SigningKey,
    *,
    issuer: str,
    client_id: str,
    now: float,
    ttl: int,
    user: UserRecord,
    scopes: set[str],
    auth_time: float,
    nonce: str | None,
    sid: str,
    access_token: str,
) -> str:
    issued = int(now)
    claims: dict[str, Any] = {
        "iss": issuer,
        **user_claims(user, scopes),
        "aud": client_id,
        "exp": issued + ttl,
        "iat": issued,
        "auth_time": int(auth_time),
        "sid": sid,
        "at_hash": at_hash(access_token, key.algorithm.name),
    }
    if nonce is not None:
        claims["nonce"] = nonce
    header = {"alg": key.algorithm.name, "typ": "JWT", "kid": key.kid}
    signing_input = b64url(_encode(header)) + b"." + b64url(_encode(claims))
    signature = key.algorithm.sign(key.private_key, signing_input)
    return (signing_input + b"." + b64url(signature)).decode()
