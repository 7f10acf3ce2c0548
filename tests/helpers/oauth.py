"""OAuth 2.0 requests and answers as RFC 6749 writes them: client_secret_basic, raw
form bodies, and the checks every error answer must pass."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote_plus, urlencode

import httpx

FORM = "application/x-www-form-urlencoded"
# RFC 6749 section 5.2: error_description is limited to %x20-21 / %x23-5B / %x5D-7E.
DESCRIPTION_CHARS = frozenset(chr(c) for c in range(0x20, 0x7F)) - {'"', "\\"}


def basic(client_id: str, secret: str) -> str:
    """RFC 6749 section 2.3.1 client_secret_basic."""
    pair = f"{quote_plus(client_id)}:{quote_plus(secret)}"
    return "Basic " + base64.b64encode(pair.encode()).decode()


Form = bytes | str | Sequence[tuple[str, str]] | Mapping[str, str]


def encode_form(body: Form) -> bytes:
    """Pairs or a mapping are urlencoded; a str or bytes is sent exactly as written."""
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode("ascii")
    pairs = list(body.items()) if isinstance(body, Mapping) else list(body)
    return urlencode(pairs).encode("ascii")


def assert_oauth_error(
    response: httpx.Response, status: int | tuple[int, ...], error: str | tuple[str, ...]
) -> dict[str, Any]:
    """An RFC 6749 section 5.2 error: the status, no-store, and exactly
    ``{"error", "error_description"}`` with a description in the allowed characters."""
    statuses = (status,) if isinstance(status, int) else status
    errors = (error,) if isinstance(error, str) else error
    assert response.status_code < 500, response.text
    assert response.status_code in statuses, response.text
    assert response.headers.get("cache-control") == "no-store"
    assert response.headers.get("content-type", "").startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "error_description"}, body
    assert body["error"] in errors, body
    assert body["error_description"], body
    assert set(body["error_description"]) <= DESCRIPTION_CHARS, body
    if body["error"] == "invalid_client":
        assert response.status_code == 401
        assert response.headers.get("www-authenticate", "").startswith("Basic ")
    return dict(body)
