"""Bare Litestar apps that do the least a real endpoint could do: the yardsticks.

Each is a factory for ``uvicorn --factory`` (see ``bench/serve.py``), configured from
``BENCH_*`` environment variables so the benchmark can match the real endpoint.
"""

from __future__ import annotations

import base64
import os
import secrets
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import msgspec
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from litestar import Litestar, Request, Response, get, post


def constant_bytes() -> Litestar:
    """``GET /`` returns the bytes of the file ``BENCH_BODY_FILE`` as application/json."""
    body = Path(os.environ["BENCH_BODY_FILE"]).read_bytes()

    @get("/", sync_to_thread=False)
    def index() -> Response[bytes]:
        return Response(body, media_type="application/json")

    return Litestar(route_handlers=[index], openapi_config=None, debug=False)


def _signer(alg: str) -> Any:
    """``sign(data) -> signature`` for ``alg``, straight to ``cryptography``: RS256 with
    an RSA 2048 key, ES256 with a P-256 key (R || S, RFC 7518 section 3.4), EdDSA with
    an Ed25519 key."""
    if alg == "ES256":
        p256 = ec.generate_private_key(ec.SECP256R1())
        ecdsa = ec.ECDSA(hashes.SHA256())

        def es256(data: bytes) -> bytes:
            r, s = decode_dss_signature(p256.sign(data, ecdsa))
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")

        return es256
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate().sign
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pkcs1, sha256 = padding.PKCS1v15(), hashes.SHA256()
    return lambda data: key.sign(data, pkcs1, sha256)


def rs256_token() -> Litestar:
    """``POST /oauth/token``: read the form, sign one JWT (``BENCH_ALG``: RS256 unless
    ES256 or EdDSA) with the claims of ours
    (RFC 9068: iss, sub, aud, exp, iat, jti, client_id, scope, plus username and sid for
    a user's token) and answer with a token response like ours: the least any token
    endpoint must do. The RSA 2048 key is made at startup and signing goes straight to
    ``cryptography``, as ours does. No client authentication, no storage: for
    ``grant_type=password`` and ``refresh_token`` it returns a random refresh token.

    ``BENCH_ISSUER``, ``BENCH_AUDIENCE``, ``BENCH_CLIENT_ID``, ``BENCH_SCOPE`` set the
    claims (so the token is as long as ours)."""
    alg = os.environ.get("BENCH_ALG", "RS256")
    sign = _signer(alg)
    encode = msgspec.json.Encoder().encode
    header = _b64url(encode({"alg": alg, "typ": "at+jwt", "kid": secrets.token_urlsafe(32)}))
    issuer = os.environ.get("BENCH_ISSUER", "http://127.0.0.1:8000")
    audience = os.environ.get("BENCH_AUDIENCE", "default")
    client_id = os.environ.get("BENCH_CLIENT_ID", secrets.token_urlsafe(16))
    scope = os.environ.get("BENCH_SCOPE", "")
    no_store = {"Cache-Control": "no-store", "Pragma": "no-cache"}

    @post("/oauth/token", status_code=200)
    async def token(request: Request[Any, Any, Any]) -> Response[bytes]:
        params = dict(parse_qsl((await request.body()).decode("ascii")))
        user = params.get("grant_type") != "client_credentials"
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": issuer,
            "sub": "1" if user else client_id,
            "aud": audience,
            "exp": now + 900,
            "iat": now,
            "jti": secrets.token_urlsafe(16),
            "client_id": client_id,
            "scope": scope,
            # draft-ietf-oauth-status-list: ours carries its place in the status list.
            "status": {
                "status_list": {"idx": secrets.randbelow(1 << 21), "uri": issuer + "/status/1"}
            },
        }
        if user:
            claims["username"] = "bench"
            claims["sid"] = secrets.token_urlsafe(16)
        signing_input = header + b"." + _b64url(encode(claims))
        signature = sign(signing_input)
        body: dict[str, Any] = {
            "access_token": (signing_input + b"." + _b64url(signature)).decode(),
            "token_type": "Bearer",
            "expires_in": 900,
            "scope": scope,
        }
        if user:
            body["refresh_token"] = secrets.token_urlsafe(32)
        return Response(encode(body), media_type="application/json", headers=no_store)

    @get("/health", sync_to_thread=False)
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return Litestar(route_handlers=[token, health], openapi_config=None, debug=False)


def _b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")
