"""OAuth error responses (RFC 6749 section 5.2, RFC 7009, RFC 7662, RFC 8707).

The error classes are Authlib's; this module adds the two codes Authlib lacks and
turns any of them into a JSON response that is never cached.
"""

from __future__ import annotations

import msgspec
from authlib.oauth2.rfc6749.errors import (
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Error,
    UnauthorizedClientError,
)
from litestar import Response
from litestar.openapi.datastructures import ResponseSpec

__all__ = [
    "NO_STORE",
    "UNAVAILABLE",
    "ErrorBody",
    "InvalidClientError",
    "InvalidGrantError",
    "InvalidRequestError",
    "InvalidScopeError",
    "InvalidTargetError",
    "OAuth2Error",
    "SlowDownError",
    "TemporarilyUnavailableError",
    "UnauthorizedClientError",
    "UnsupportedGrantTypeError",
    "error_response",
    "error_spec",
]

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


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


class InvalidTargetError(OAuth2Error):  # type: ignore[misc]
    """RFC 8707 section 2: the requested audience is not one this client may name."""

    error = "invalid_target"


class UnsupportedGrantTypeError(OAuth2Error):  # type: ignore[misc]
    """RFC 6749 section 5.2 (Authlib's class takes no description)."""

    error = "unsupported_grant_type"


class SlowDownError(OAuth2Error):  # type: ignore[misc]
    """Too many failed logins (RFC 6585 status 429, with ``Retry-After``)."""

    error = "slow_down"
    status_code = 429

    def __init__(self, retry_after: int):
        super().__init__(description="too many failed logins; retry later")
        self.retry_after = retry_after


class TemporarilyUnavailableError(OAuth2Error):  # type: ignore[misc]
    """The storage is down or busy; the client should retry."""

    error = "temporarily_unavailable"
    status_code = 503


def error_response(exc: OAuth2Error) -> Response[dict[str, str]]:
    headers = dict(NO_STORE)
    headers.update({k: v for k, v in exc.get_headers() if k.lower() == "www-authenticate"})
    if exc.status_code == 503:
        headers["Retry-After"] = "5"
    if isinstance(exc, SlowDownError):
        headers["Retry-After"] = str(exc.retry_after)
    return Response(dict(exc.get_body()), status_code=exc.status_code, headers=headers)
