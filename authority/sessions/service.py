"""The session service: log a user in, open a session (a refresh family), refresh it,
and issue its access tokens.

Results are typed (``Session``, ``AccessToken``) and refusals are this module's own
errors (``SessionError``): ``/oauth/token`` (RFC 6749) and ``/auth`` each shape their own
answer from them. ``Authority`` holds the running service's parts, built once by
``create_app`` and shared by grants and handlers.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection

from authority import metrics
from authority.accounts.clients import ClientCache
from authority.accounts.passwords import MAX_LENGTH, ahash_password, averify_password
from authority.accounts.throttle import Limits, record_failure, succeeded, take_attempt
from authority.accounts.users import UserRecord, find_user, fold, set_password_hash
from authority.clock import Clock
from authority.sessions.families import Family, Outcome, rotate_token, start_family
from authority.sessions.refresh_tokens import new_refresh_token, parse_refresh_token
from authority.settings import Settings
from authority.signing.signer import AccessToken, AccessTokenSigner, KeySource
from authority.storage.database import Database


@dataclass(frozen=True, slots=True)
class Authority:
    settings: Settings
    db: Database
    keys: KeySource
    signer: AccessTokenSigner
    secret_key: bytes
    clock: Clock
    clients: ClientCache


@dataclass(frozen=True, slots=True)
class Session:
    """A login session after it was opened or refreshed: its family, the refresh token
    to hand out (the only time it exists in clear) and when that token expires."""

    family: Family
    refresh_token: str
    refresh_expires_at: float


class SessionError(Exception):
    """A refusal of the session service; ``str(exc)`` is a description for the client."""


class LoginThrottled(SessionError):
    """Too many failed logins for this account or address; retry after ``retry_after`` s."""

    def __init__(self, retry_after: int):
        super().__init__(f"too many failed logins; retry in {retry_after} s")
        self.retry_after = retry_after


REFRESH_ERRORS: dict[Outcome, str] = {
    "unknown": "refresh token is invalid",
    "foreign": "refresh token is invalid",
    "expired": "refresh token has expired",
    "revoked": "refresh token has been revoked",
    "disabled": "the user is disabled",
    "reuse": "refresh token was already used; the session has been revoked",
}


class RefreshRefused(SessionError):
    """The refresh token cannot be used; ``outcome`` says why (``reuse`` revoked the
    whole family, and that revocation is committed)."""

    def __init__(self, outcome: Outcome):
        super().__init__(REFRESH_ERRORS[outcome])
        self.outcome = outcome


class ScopeRefused(SessionError):
    """More scope was asked of a refresh than the session holds; nothing changed."""

    def __init__(self) -> None:
        super().__init__("requested scope exceeds what was granted")


class AudienceRefused(SessionError):
    """Another audience was asked of a refresh; nothing changed."""

    def __init__(self) -> None:
        super().__init__("a refresh token keeps its audience")


async def authenticate(
    auth: Authority, login: str, password: str, address: str
) -> UserRecord | None:
    """The user with this name (or email) and password, or None; the same work and time
    either way (an unknown user's password is checked against a dummy hash). Raises
    ``LoginThrottled``, before any hashing, when the address has had too many failures
    or the account's backoff holds this attempt (``authority.accounts.throttle``). A
    hash made with old parameters, or from the un-normalised password, is replaced on
    success."""
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
    await auth.db.write(_login_succeeded, user.id, account, address, new_hash)
    return user


def _login_succeeded(
    conn: Connection, user_id: int, account: str, address: str, new_hash: str | None
) -> None:
    succeeded(conn, account, address)
    if new_hash is not None:
        set_password_hash(conn, user_id, new_hash)


async def open_session(
    auth: Authority, client_id: str, user: UserRecord, scope: str, audience: str
) -> Session:
    """A new login session (refresh family) of ``user`` at ``client_id``."""
    settings = auth.settings
    refresh, refresh_hash = new_refresh_token()
    family, expires_at = await auth.db.write(
        start_family,
        user_id=user.id,
        username=user.username,
        client_id=client_id,
        scope=scope,
        audience=audience,
        token_hash=refresh_hash,
        now=auth.clock(),
        refresh_ttl=settings.refresh_ttl,
        family_ttl=settings.refresh_family_ttl,
    )
    return Session(family, refresh, expires_at)


async def refresh_session(
    auth: Authority,
    client_id: str,
    raw: str,
    scope: list[str] | None = None,
    audience: str | None = None,
) -> Session:
    """Consume a refresh token of ``client_id`` and hand out its replacement (rotation
    with reuse detection, README, "Tokens"). Raises ``RefreshRefused``
    (``reuse`` revokes the family), ``ScopeRefused`` or ``AudienceRefused``."""
    presented = parse_refresh_token(raw)
    if presented is None:
        raise RefreshRefused("unknown")
    replacement, replacement_hash = new_refresh_token()
    settings = auth.settings
    result = await auth.db.write(
        rotate_token,
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
        raise ScopeRefused()
    if result.outcome == "target":
        raise AudienceRefused()
    if not result.ok or result.family is None:
        raise RefreshRefused(result.outcome)
    metrics.TOKENS_ISSUED.labels("refresh_token").inc()
    return Session(result.family, replacement, result.token_expires_at)


def issue_access_token(auth: Authority, client_id: str, family: Family, scope: str) -> AccessToken:
    """An access token of a session's user, for ``client_id``, naming the session."""
    return auth.signer.sign(
        auth.keys.signing_key(),
        now=auth.clock(),
        sub=str(family.user_id),
        client_id=client_id,
        scope=scope,
        audience=family.audience,
        username=family.username,
        sid=family.id,
    )
