"""What every grant shares: the token response (RFC 6749 section 5.1), and the scope
(section 3.3) and audience a request may ask for.

The audience is named by ``audience`` or by ``resource``, its standard spelling (RFC 8707
section 2): an absolute URI without a fragment, one per request, since a token has
one audience. A malformed, unknown or not allowed target is ``invalid_target``; naming
two different targets with ``audience`` and ``resource`` is ``invalid_request``.
A request that names none gets the client's default: its first registered audience,
or ``AUTHORITY_AUDIENCE`` for a client registered with none."""

from __future__ import annotations

import re
from collections.abc import Mapping

import msgspec

from authority.accounts.clients import SCOPE_TOKEN, ClientRecord
from authority.grants.errors import InvalidRequestError, InvalidScopeError, InvalidTargetError
from authority.signing.signer import DPOP_KEY

Params = Mapping[str, str]
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
_URI_CHARS = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no space (RFC 3986 section 2)


class TokenResponse(msgspec.Struct, omit_defaults=True):
    """RFC 6749 section 5.1."""

    access_token: str
    token_type: str
    expires_in: int
    scope: str
    refresh_token: str | None = None
    id_token: str | None = None  # OpenID Connect Core 1.0 section 3.1.3.3


def bearer(access_token: str, expires_in: int, scope: str, refresh: str | None) -> TokenResponse:
    """The token response; ``token_type`` ``DPoP`` when the access token is bound to the
    request's DPoP key (RFC 9449 section 5)."""
    kind = "Bearer" if DPOP_KEY.get() is None else "DPoP"
    return TokenResponse(access_token, kind, expires_in, scope, refresh)


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


def named_audience(params: Params) -> str | None:
    """The audience the request names with ``audience`` or ``resource`` (RFC 8707)."""
    audience, resource = params.get("audience"), params.get("resource")
    if resource is None:
        return audience
    if not is_absolute_uri(resource):
        raise InvalidTargetError(
            description="resource must be an absolute URI without a fragment (RFC 8707)"
        )
    if audience is not None and audience != resource:
        raise InvalidRequestError(description="audience and resource name different targets")
    return resource


def is_absolute_uri(value: str) -> bool:
    """RFC 3986 section 4.3: a scheme, no fragment; nothing blank or unprintable."""
    scheme, colon, rest = value.partition(":")
    return bool(
        colon
        and _SCHEME.fullmatch(scheme)
        and rest
        and "#" not in rest
        and _URI_CHARS.fullmatch(rest)
    )


def requested_audience(params: Params, client: ClientRecord, default: str) -> str:
    """The audience to grant: the client's default (``ClientRecord.default_audience``),
    or one it names that it may have: one of its own, or ``default`` (AUTHORITY_AUDIENCE)."""
    audience = named_audience(params)
    if audience is None:
        return client.default_audience(default)
    if audience != default and audience not in client.audiences:
        raise InvalidTargetError(description="this client may not request that audience")
    return audience
