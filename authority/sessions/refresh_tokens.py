"""Refresh tokens: opaque, 256 random bits, stored only as their SHA-256 hash."""

from __future__ import annotations

import hashlib
import re

from authority.randomness import token_urlsafe

REFRESH_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")


def new_refresh_token() -> tuple[str, bytes]:
    """An opaque refresh token of 256 random bits and the hash that is stored."""
    token = token_urlsafe(32)
    return token, refresh_token_hash(token)


def refresh_token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def parse_refresh_token(value: str) -> bytes | None:
    """The stored hash of a well-formed token, or None before any database work."""
    if len(value) != 43 or not REFRESH_TOKEN.fullmatch(value):
        return None
    return refresh_token_hash(value)
