"""OAuth errors (RFC 6749 section 5.2, RFC 7009, RFC 7662, RFC 8707): Authlib's classes
and the codes Authlib lacks. ``authority.web.http.error_response`` answers them."""

from __future__ import annotations

from authlib.oauth2.rfc6749.errors import (
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Error,
    UnauthorizedClientError,
)

__all__ = [
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
]


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
