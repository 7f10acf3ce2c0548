"""Helpers for the verifier tests (no tests here): RSA, P-256 and Ed25519 keys and their
JWKs, token signers that can also write raw bytes, and a real JWKS server on 127.0.0.1
that counts its requests and fails on demand."""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

ISSUER = "https://issuer.example"
AUDIENCE = "api://orders"
NOW = 1_800_000_000.0
JWKS_PATH = "/.well-known/jwks.json"
METADATA_PATH = "/.well-known/oauth-authorization-server"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def rsa_key(number: int = 0, size: int = 2048) -> rsa.RSAPrivateKey:
    """Key ``number``: the same object for the whole test run (generation is slow)."""
    return _generated(number, size)


@functools.cache
def _generated(number: int, size: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=size)


def public_jwk(key: rsa.RSAPrivateKey) -> dict[str, str]:
    """The JWK the authority publishes: kid = RFC 7638 thumbprint."""
    numbers = key.public_key().public_numbers()
    n = b64(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big"))
    e = b64(numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big"))
    canonical = json.dumps({"e": e, "kty": "RSA", "n": n}, separators=(",", ":"))
    kid = b64(hashlib.sha256(canonical.encode()).digest())
    return {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": n, "e": e}


def kid_of(key: rsa.RSAPrivateKey) -> str:
    return public_jwk(key)["kid"]


@functools.cache
def ec_key(number: int = 0, curve: str = "P-256") -> ec.EllipticCurvePrivateKey:
    curves = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1()}
    return ec.generate_private_key(curves[curve])


@functools.cache
def ed_key(number: int = 0) -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


CurveKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def curve_jwk(key: CurveKey, **changes: Any) -> dict[str, str]:
    """The JWK of a P-256 (ES256) or Ed25519 (EdDSA) key, written out here by hand
    (RFC 7518 section 6.2, RFC 8037 section 2), kid = RFC 7638 thumbprint."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        numbers = key.public_key().public_numbers()
        size = (key.curve.key_size + 7) // 8
        x, y = b64(numbers.x.to_bytes(size, "big")), b64(numbers.y.to_bytes(size, "big"))
        crv = "P-256" if size == 32 else "P-384"
        members = {"crv": crv, "kty": "EC", "x": x, "y": y}
        alg = "ES256"
    else:
        members = {"crv": "Ed25519", "kty": "OKP", "x": b64(key.public_key().public_bytes_raw())}
        alg = "EdDSA"
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True)
    kid = b64(hashlib.sha256(canonical.encode()).digest())
    jwk = {"use": "sig", "alg": alg, "kid": kid, **members, **changes}
    return {k: v for k, v in jwk.items() if v is not None}


def p1363(der: bytes, size: int = 32) -> bytes:
    """An ECDSA signature as JWS wants it: R || S (RFC 7518 section 3.4)."""
    r, s = decode_dss_signature(der)
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def sign_curve(
    payload: dict[str, Any] | bytes,
    key: CurveKey,
    head: dict[str, Any] | bytes | None = None,
    *,
    der: bool = False,
) -> str:
    """A compact JWS signed with a P-256 (R || S, or DER with ``der``) or Ed25519 key;
    the header defaults to the key's own alg and kid."""
    jwk = curve_jwk(key)
    head = head if head is not None else {"alg": jwk["alg"], "typ": "at+jwt", "kid": jwk["kid"]}
    signing_input = (b64(encode(head)) + "." + b64(encode(payload))).encode()
    if isinstance(key, ec.EllipticCurvePrivateKey):
        digest = hashes.SHA256() if key.curve.key_size == 256 else hashes.SHA384()
        signature = key.sign(signing_input, ec.ECDSA(digest))
        if not der:
            signature = p1363(signature, (key.curve.key_size + 7) // 8)
    else:
        signature = key.sign(signing_input)
    return signing_input.decode() + "." + b64(signature)


def jwks(*keys: rsa.RSAPrivateKey) -> dict[str, Any]:
    return {"keys": [public_jwk(k) for k in keys]}


def claims(now: float = NOW, **changes: Any) -> dict[str, Any]:
    """RFC 9068 claims as the authority issues them; a change to None drops the claim."""
    values: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "svc",
        "aud": AUDIENCE,
        "exp": int(now) + 900,
        "iat": int(now),
        "jti": "Jx2m3Zq0aTfX9v6lq1d6Qw",
        "client_id": "svc",
        "scope": "orders:read",
    }
    values.update(changes)
    return {k: v for k, v in values.items() if v is not None}


def header(key: rsa.RSAPrivateKey | None = None, **changes: Any) -> dict[str, Any]:
    values = {"alg": "RS256", "typ": "at+jwt", "kid": kid_of(key or rsa_key()), **changes}
    return {k: v for k, v in values.items() if v is not None}


def encode(value: dict[str, Any] | bytes) -> bytes:
    return value if isinstance(value, bytes) else json.dumps(value).encode()


def sign(
    payload: dict[str, Any] | bytes | None = None,
    head: dict[str, Any] | bytes | None = None,
    key: rsa.RSAPrivateKey | None = None,
) -> str:
    """A compact JWS, RS256-signed with ``key``; raw bytes are encoded as given."""
    key = key or rsa_key()
    signing_input = (
        b64(encode(head if head is not None else header(key)))
        + "."
        + b64(encode(payload if payload is not None else claims()))
    )
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return signing_input + "." + b64(signature)


# --- a JWKS server -------------------------------------------------------------------


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up early (the verifier reads at most 1 MiB) is expected."""


class JwksServer:
    """``/.well-known/oauth-authorization-server`` and the JWKS on 127.0.0.1.

    ``mode``: ``ok``; ``error`` (500); ``garbage`` (200, not JSON); ``empty`` (200,
    no keys); ``huge`` (200, 2 MiB); ``slow`` (answers after ``delay`` seconds);
    ``drop`` (closes the connection without an answer). The metadata follows ``mode``.
    """

    def __init__(self, *keys: rsa.RSAPrivateKey):
        self.keys = list(keys) or [rsa_key()]
        self.extra_keys: list[dict[str, Any]] = []  # published JWKs of other key types
        self.mode = "ok"
        self.delay = 0.0
        self.cache_control: str | None = "public, max-age=300"
        # mode "redirect": every path answers this status with ``Location: redirect_to``
        self.redirect_to = ""
        self.redirect_status = 302
        self.requests: Counter[str] = Counter()
        # Other paths served as they are (a token status list), with their own mode
        # when ``extra_mode`` is set.
        self.extra: dict[str, bytes] = {}
        self.extra_mode: str | None = None
        self.not_modified = 0
        self.lock = threading.Lock()
        self.httpd = _QuietServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.issuer = self.url

    def count(self, path: str = JWKS_PATH) -> int:
        with self.lock:
            return self.requests[path]

    def total(self) -> int:
        with self.lock:
            return sum(self.requests.values())

    def wait_for(self, path: str, count: int, timeout: float = 5) -> None:
        deadline = time.monotonic() + timeout
        while self.count(path) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{path}: {self.count(path)} requests, expected {count}")
            time.sleep(0.005)

    def body(self, path: str) -> bytes:
        mode = self.extra_mode if path in self.extra and self.extra_mode else self.mode
        if mode == "garbage":
            return b"<html>502 Bad Gateway</html>"
        if path in self.extra:
            return self.extra[path]
        if path == METADATA_PATH:
            return json.dumps({"issuer": self.issuer, "jwks_uri": self.url + JWKS_PATH}).encode()
        if self.mode == "empty":
            return b'{"keys":[]}'
        if self.mode == "huge":
            return b'{"keys":[' + b" " * (2 << 20) + b"]}"
        document = jwks(*self.keys)
        document["keys"] += self.extra_keys
        return json.dumps(document).encode()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                with server.lock:  # what is answered is decided on arrival
                    server.requests[self.path] += 1
                    mode, delay = server.mode, server.delay
                    if self.path in server.extra and server.extra_mode:
                        mode = server.extra_mode
                    body = server.body(self.path)
                if mode == "slow":
                    time.sleep(delay)
                if mode == "drop":
                    self.close_connection = True
                    self.connection.close()
                    return
                if mode == "redirect":
                    self.send_response(server.redirect_status)
                    self.send_header("Location", server.redirect_to + self.path)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if mode == "error" or self.path not in (JWKS_PATH, METADATA_PATH, *server.extra):
                    self.send_response(500 if mode == "error" else 404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
                if self.headers.get("If-None-Match") == etag:
                    with server.lock:
                        server.not_modified += 1
                    self.send_response(304)
                    body = b""
                else:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                if server.cache_control is not None:
                    self.send_header("Cache-Control", server.cache_control)
                self.send_header("ETag", etag)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler


@contextmanager
def jwks_server(*keys: rsa.RSAPrivateKey) -> Iterator[JwksServer]:
    server = JwksServer(*keys)
    thread = threading.Thread(target=server.httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
        thread.join(5)
