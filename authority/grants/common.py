"""Grant types of the token endpoint, dispatched by name (RFC 6749 sections 4.3, 4.4, 6).

Each grant takes the authenticated client and the request's parameters and returns
the token response body, or raises an OAuth error.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from sqlalchemy import Connection

from authority import metrics
from authority.accounts.clients import SCOPE_TOKEN, ClientRecord
from authority.grants.errors import (
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    InvalidTargetError,
    SlowDownError,
    UnauthorizedClientError,
)
from authority.sessions.families import Family, rotate, start_family
from authority.accounts.passwords import MAX_LENGTH, ahash_password, averify_password
from authority.sessions.service import Authority
from authority.accounts.throttle import Limits, record_failure, succeeded, take_attempt
from authority.signing.signer import new_refresh_token, parse_refresh_token
from authority.accounts.users import UserRecord, find_user, fold, set_password_hash

Params = Mapping[str, str]
# A grant takes the client, the request's parameters and the client's network address.
Grant = Callable[[Authority, ClientRecord, Params, str], Awaitable[dict[str, Any]]]


class LoginThrottled(Exception):
    """Too many failed logins for this account or address; retry after ``retry_after`` s."""

    def __init__(self, retry_after: int):
        super().__init__(f"too many failed logins; retry in {retry_after} s")
        self.retry_after = retry_after


REFRESH_ERRORS = {
    "unknown": "refresh token is invalid",
    "foreign": "refresh token is invalid",
    "expired": "refresh token has expired",
    "revoked": "refresh token has been revoked",
    "disabled": "the user is disabled",
    "reuse": "refresh token was already used; the session has been revoked",
}


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


def requested_audience(auth: Authority, params: Params, client: ClientRecord) -> str:
    audience = params.get("audience")
    if audience is None or audience == auth.settings.audience:
        return auth.settings.audience
    if audience not in client.audiences:
        raise InvalidTargetError(description="this client may not request that audience")
    return audience


def token_response(access: str, expires_in: int, scope: str, refresh: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": expires_in,
        "scope": scope,
    }
    if refresh is not None:
        body["refresh_token"] = refresh
    return body


async def client_credentials(
    auth: Authority, client: ClientRecord, params: Params, address: str
) -> dict[str, Any]:
    """RFC 6749 section 4.4: a confidential client acting for itself."""
    if client.is_public:
        raise UnauthorizedClientError(description="public clients cannot use client_credentials")
    scope = requested_scope(params, client.scopes)
    audience = requested_audience(auth, params, client)
    token = auth.signer.sign(
        auth.keys.signing_key(),
        now=auth.clock(),
        sub=client.client_id,
        client_id=client.client_id,
        scope=scope,
        audience=audience,
    )
    metrics.TOKENS_ISSUED.labels("client_credentials").inc()
    return token_response(token.token, auth.signer.ttl, scope, None)


async def refresh_token(
    auth: Authority, client: ClientRecord, params: Params, address: str
) -> dict[str, Any]:
    """RFC 6749 section 6, with rotation and reuse detection (SPEC section 5)."""
    raw = params.get("refresh_token")
    if raw is None:
        raise InvalidRequestError(description="refresh_token is required")
    scope = parse_scope(params)
    family, replacement, _ = await rotate_refresh_token(
        auth, client.client_id, raw, scope, params.get("audience")
    )
    granted = " ".join(scope) if scope is not None else family.scope
    return issue_user_tokens(auth, client, family, granted, replacement)


async def rotate_refresh_token(
    auth: Authority,
    client_id: str,
    raw: str,
    scope: list[str] | None = None,
    audience: str | None = None,
) -> tuple[Family, str, float]:
    """Consume a refresh token of ``client_id``: its family, the replacement token and
    when that expires; or an OAuth error (``invalid_grant`` for reuse, which revokes
    the family)."""
    presented = parse_refresh_token(raw)
    if presented is None:
        raise InvalidGrantError(description=REFRESH_ERRORS["unknown"])
    replacement, replacement_hash = new_refresh_token()
    settings = auth.settings
    result = await auth.db.write(
        rotate,
        presented=presented,
        replacement=replacement_hash,
        client_id=client_id,
        now=auth.clock(),
        refresh_ttl=settings.refresh_ttl,
        grace=settings.refresh_reuse_grace,
        scope=scope,
        audience=audience,
    )
    if result.outcome == "reuse":
        metrics.REFRESH_REUSE.inc()
    if result.outcome == "scope":
        raise InvalidScopeError(description="requested scope exceeds what was granted")
    if result.outcome == "target":
        raise InvalidTargetError(description="a refresh token keeps its audience")
    if not result.ok or result.family is None:
        raise InvalidGrantError(description=REFRESH_ERRORS[result.outcome])
    metrics.TOKENS_ISSUED.labels("refresh_token").inc()
    return result.family, replacement, result.token_expires_at


def issue_user_tokens(
    auth: Authority, client: ClientRecord, family: Family, scope: str, refresh: str | None
) -> dict[str, Any]:
    token = auth.signer.sign(
        auth.keys.signing_key(),
        now=auth.clock(),
        sub=str(family.user_id),
        client_id=client.client_id,
        scope=scope,
        audience=family.audience,
        username=family.username,
        sid=family.id,
    )
    return token_response(token.token, auth.signer.ttl, scope, refresh)


async def authenticate_user(
    auth: Authority, login: str, password: str, address: str
) -> UserRecord | None:
    """The user with this name (or email) and password, or None; the same work and time
    either way (an unknown user's password is checked against a dummy hash). Raises
    ``LoginThrottled``, before any hashing, when the account or the address has had too
    many failures. A hash made with old parameters is replaced on success."""
    # No name holds a NUL (and PostgreSQL text cannot): nothing to look up or count.
    if len(password) > MAX_LENGTH or len(login) > 320 or "\x00" in login:
        return None
    user = await auth.db.read(find_user, login)
    # Unknown logins are counted too, by name, so they are throttled alike.
    account = f"user:{user.id}" if user is not None else f"login:{fold(login)}"
    settings = auth.settings
    limits = Limits(
        settings.login_max_failures_account,
        settings.login_max_failures_address,
        settings.login_failure_window,
    )
    wait = await auth.db.write(take_attempt, account, address, limits, auth.clock())
    if wait is not None:
        metrics.LOGIN_THROTTLED.inc()
        raise LoginThrottled(wait)
    matches, needs_rehash = await averify_password(user.password_hash if user else None, password)
    if not matches or user is None or not user.is_active:
        metrics.LOGIN_FAILURES.inc()
        await auth.db.write(record_failure, address, limits, auth.clock())
        return None
    new_hash = await ahash_password(password) if needs_rehash else None
    await auth.db.write(_login_succeeded, user.id, account, new_hash)
    return user


def _login_succeeded(conn: Connection, user_id: int, account: str, new_hash: str | None) -> None:
    succeeded(conn, account)
    if new_hash is not None:
        set_password_hash(conn, user_id, new_hash)


async def start_session(
    auth: Authority,
    client: ClientRecord,
    user: UserRecord,
    scope: str,
    audience: str,
    with_refresh: bool,
) -> dict[str, Any]:
    """Tokens for a fresh login: a new refresh family when the client may refresh."""
    family, refresh, _ = await open_session(auth, client, user, scope, audience)
    return issue_user_tokens(auth, client, family, scope, refresh if with_refresh else None)


async def open_session(
    auth: Authority, client: ClientRecord, user: UserRecord, scope: str, audience: str
) -> tuple[Family, str, float]:
    """A new login session (refresh family): it, its first refresh token, and when that
    expires."""
    settings = auth.settings
    refresh, refresh_hash = new_refresh_token()
    family, expires_at = await auth.db.write(
        start_family,
        user_id=user.id,
        username=user.username,
        client_id=client.client_id,
        scope=scope,
        audience=audience,
        token_hash=refresh_hash,
        now=auth.clock(),
        refresh_ttl=settings.refresh_ttl,
        family_ttl=settings.refresh_family_ttl,
    )
    return family, refresh, expires_at


async def password(
    auth: Authority, client: ClientRecord, params: Params, address: str
) -> dict[str, Any]:
    """RFC 6749 section 4.3, legacy: only for clients created with it allowed."""
    username, secret = params.get("username"), params.get("password")
    if username is None or secret is None:
        raise InvalidRequestError(description="username and password are required")
    scope = requested_scope(params, client.scopes)
    audience = requested_audience(auth, params, client)
    try:
        user = await authenticate_user(auth, username, secret, address)
    except LoginThrottled as exc:
        raise SlowDownError(exc.retry_after) from None
    if user is None:
        raise InvalidGrantError(description="invalid username or password")
    metrics.TOKENS_ISSUED.labels("password").inc()
    return await start_session(
        auth, client, user, scope, audience, with_refresh="refresh_token" in client.grant_types
    )


GRANTS: dict[str, Grant] = {
    "client_credentials": client_credentials,
    "refresh_token": refresh_token,
    "password": password,
}
