"""Small HTTP pieces every endpoint shares: the no-store headers, the body limit, the
503 answer with ``Retry-After``, OAuth error answers (RFC 6749 section 5.2), their
OpenAPI descriptions, and the client's address."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.openapi.datastructures import ResponseSpec

from authority.grants.errors import OAuth2Error, SlowDownError, TemporarilyUnavailableError

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
MAX_BODY = 16 * 1024  # bytes of a request body, on /oauth/* and /auth/*
RETRY_AFTER = "5"  # seconds a client should wait after a 503
STORAGE_DOWN = "the authority cannot reach its storage; retry later"
# Routes whose ``opt`` holds this key stay out of the per-request Prometheus middleware:
# it costs as much as the JWKS handler itself, so the JWKS keeps a plain counter.
SKIP_METRICS = "skip_metrics"
_encode = msgspec.json.Encoder().encode


class ErrorBody(msgspec.Struct):
    """RFC 6749 section 5.2 error body; also every 503 of the service."""

    error: str
    error_description: str


def error_spec(status: int, description: str, body: type = ErrorBody) -> dict[int, ResponseSpec]:
    """An OpenAPI error response of ``body`` (without generated examples, so the
    document is the same on every start)."""
    return {status: ResponseSpec(body, description=description, generate_examples=False)}


UNAVAILABLE = error_spec(
    503, "temporarily_unavailable: storage unreachable or too busy; see Retry-After"
)


def error_response(exc: OAuth2Error) -> Response[dict[str, str]]:
    headers = dict(NO_STORE)
    headers.update({k: v for k, v in exc.get_headers() if k.lower() == "www-authenticate"})
    if exc.status_code == 503:
        headers["Retry-After"] = RETRY_AFTER
    if isinstance(exc, SlowDownError):
        headers["Retry-After"] = str(exc.retry_after)
    return Response(dict(exc.get_body()), status_code=exc.status_code, headers=headers)


def unavailable(description: str = STORAGE_DOWN) -> Response[dict[str, str]]:
    """The 503 of every endpoint: the storage is down or busy, retry shortly."""
    return error_response(TemporarilyUnavailableError(description=description))


def json_response(body: Mapping[str, Any] | msgspec.Struct) -> Response[bytes]:
    return Response(_encode(body), media_type="application/json", headers=NO_STORE)


def client_address(request: Request[Any, Any, Any]) -> str:
    """The peer's address; behind ``TRUSTED_PROXIES``, the one their X-Forwarded-For
    names (``authority serve`` has uvicorn read it from those proxies only)."""
    return request.client.host if request.client else "unknown"


def bearer_token(request: Request[Any, Any, Any]) -> str | None:
    """The token of an ``Authorization: Bearer`` header; "" when it is empty. Other
    schemes are not ours and are ignored."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 section 13.1.2: weak comparison, a list of tags, or ``*``."""
    if not if_none_match:
        return False
    for candidate in if_none_match.split(","):
        tag = candidate.strip()
        if tag == "*" or tag.removeprefix("W/") == etag:
            return True
    return False
