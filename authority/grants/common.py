"""What every grant shares: the token response (RFC 6749 section 5.1), and the scope
(section 3.3) and audience (RFC 8707) a request may ask for."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from authority.accounts.clients import SCOPE_TOKEN, ClientRecord
from authority.grants.errors import InvalidScopeError, InvalidTargetError

Params = Mapping[str, str]


class TokenResponse(msgspec.Struct, omit_defaults=True):
    """RFC 6749 section 5.1."""

    access_token: str
    token_type: str
    expires_in: int
    scope: str
    refresh_token: str | None = None


def bearer(access_token: str, expires_in: int, scope: str, refresh: str | None) -> TokenResponse:
    return TokenResponse(access_token, "Bearer", expires_in, scope, refresh)


def parse_scope(params: Params) -> list[str] | None:
    raw = params.get("scope")
    if raw is None:
        return None
    scopes = list(dict.fromkeys(raw.split(" ")))
    if len(raw) > 1000 or not all(SCOPE_TOKEN.fullmatch(s) for s in scopes):
        raise InvalidScopeError(description="malformed scope")
    return scopes


def requested_scope(params: Params, allowed: frozenset[str]) -> str:
    """The scope to grant: the request's (each one allowed) or everything allowed."""
    scopes = parse_scope(params)
    if scopes is None:
        return " ".join(sorted(allowed))
    if not set(scopes) <= allowed:
        raise InvalidScopeError(description="requested scope exceeds what was granted")
    return " ".join(scopes)


def requested_audience(params: Params, client: ClientRecord, default: str) -> str:
    """The audience to grant: ``default`` (AUTHORITY_AUDIENCE) or one the client may name."""
    audience = params.get("audience")
    if audience is None or audience == default:
        return default
    if audience not in client.audiences:
        raise InvalidTargetError(description="this client may not request that audience")
    return audience
