"""CSRF protection of cookie-authenticated requests: signed double-submit tokens bound
to the login session, and an ``Origin`` check (OWASP CSRF Prevention Cheat Sheet).

A token is ``nonce.mac`` with ``mac = HMAC(key, session id, nonce)``; the anonymous
session has the empty id. The browser sends it twice, in the CSRF cookie (``csrftoken``,
or ``__Host-csrftoken`` when cookies are ``Secure``) and the ``X-CSRFToken`` header, and
the two must be equal and the MAC must fit the session the request's cookies belong to.
So a token minted for one session, planted with the cookies of another (cookie tossing
from a sibling subdomain), is refused, and a token from before login stops working after
it (login rotates it, like Django does).

Litestar's ``CSRFConfig`` signs tokens too, but binds them to nothing and cannot exempt
requests authenticated by an ``Authorization`` header (README, "Logging in users").
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Iterable
from urllib.parse import urlsplit

HEADER = "x-csrftoken"
FAILED = "CSRF token missing or incorrect"
MAX_TOKEN = 128


def derive_key(secret_key: bytes) -> bytes:
    """A key for CSRF tokens only, separate from the one hashing client secrets."""
    return hmac.new(secret_key, b"authority csrf token v1", hashlib.sha256).digest()


def _mac(key: bytes, session: str, nonce: str) -> str:
    digest = hmac.new(key, f"{session}\x00{nonce}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def new_token(key: bytes, session: str) -> str:
    nonce = secrets.token_urlsafe(18)
    return f"{nonce}.{_mac(key, session, nonce)}"


def token_fits(key: bytes, token: str | None, session: str) -> bool:
    """Whether ``token`` was minted by us for ``session``."""
    if not token or len(token) > MAX_TOKEN or token.count(".") != 1:
        return False
    nonce, mac = token.split(".")
    return hmac.compare_digest(mac.encode(), _mac(key, session, nonce).encode())


def double_submit_ok(key: bytes, header: str | None, cookie: str | None, session: str) -> bool:
    if header is None or cookie is None or len(header) > MAX_TOKEN:
        return False
    return hmac.compare_digest(header.encode(), cookie.encode()) and token_fits(
        key, cookie, session
    )


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def origin_allowed(origin: str | None, own: str, allowed: Iterable[str]) -> bool:
    """An absent ``Origin`` (same-origin GETs, non-browser clients) passes; the header
    is then left to the CSRF token. A present one must be ours or configured."""
    if origin is None:
        return True
    origin = origin.lower()
    return origin == own.lower() or origin in {origin_of(a) for a in allowed}
