"""The session service: log a user in, open a session (a refresh family), refresh it,
and issue its access tokens.

Results are typed (``Session``, ``AccessToken``) and refusals are this module's own
errors (``SessionError``): ``/oauth/token`` (RFC 6749) and ``/auth`` each shape their own
answer from them. ``Authority`` holds the running service's parts, built once by
``create_app`` and shared by grants and handlers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from sqlalchemy import Connection

from authority import metrics
from authority.accounts.clients import ClientCache
from authority.accounts.passwords import MAX_LENGTH, ahash_password, averify_password
from authority.accounts.throttle import Limits, record_failure, succeeded, take_attempt
from authority.accounts.users import (
    UserRecord,
    find_user,
    fold,
    set_password_hash,
)
from authority.clock import Clock
from authority.sessions.binding import REFUSAL
from authority.sessions.families import Family, Outcome, Rotation, rotate_token, start_family
from authority.sessions.one_statement import rotate_live_token
from authority.sessions.refresh_tokens import new_refresh_token, parse_refresh_token
from authority.settings import Settings
from authority.signing.signer import AccessToken, AccessTokenSigner, KeySource
from authority.storage import audit
from authority.storage.database import Database


class StatusIndexSource(Protocol):
    """Where access tokens get their status list index (``authority.status.indexes``)."""

    async def allocate(self) -> int: ...

    async def allocate_for_client(self, client_id: str) -> int: ...


@dataclass(frozen=True, slots=True)
class Authority:
    settings: Settings
    db: Database
    keys: KeySource
    signer: AccessTokenSigner
    secret_key: bytes
    clock: Clock
    clients: ClientCache
    status: StatusIndexSource


@dataclass(frozen=True, slots=True)
class Session:
    """A login session after it was opened or refreshed: its family, the refresh token
    to hand out (the only time it exists in clear) and when that token expires."""

    family: Family
    refresh_token: str
    refresh_expires_at: float
    status_idx: int


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


class KeyRefused(SessionError):
    """The refresh token's family is bound to a DPoP key and the request had no proof
    by it (RFC 9449 section 5); nothing changed: the token is still good with the key."""

    def __init__(self) -> None:
        super().__init__(REFUSAL)


class ScopeRefused(SessionError):
    """More scope was asked of a refresh than the session holds; nothing changed."""

    def __init__(self) -> None:
        super().__init__("requested scope exceeds what was granted")


class AudienceRefused(SessionError):
    """Another audience was asked of a refresh; nothing changed."""

    def __init__(self) -> None:
        super().__init__("a refresh token keeps its audience")


async def authenticate(
    auth: Authority, login: str, password: str, address: str, client_id: str
) -> UserRecord | None:
    """The user with this name (or email) and password, or None; the same work and time
    either way (an unknown user's password is checked against a dummy hash). Raises
    ``LoginThrottled``, before any hashing, when the address has had too many failures
    or the account's backoff holds this attempt (``authority.accounts.throttle``). A
    hash made with old parameters, or from the un-normalised password, is replaced on
    success. Each outcome is an audit event (``login.succeeded``, ``login.failed``,
    ``login.throttled``) of ``client_id``."""
    # No name holds a NUL (and PostgreSQL text cannot): nothing to look up or count.
    if len(password) > MAX_LENGTH or len(login) > 320 or "\x00" in login:
        return None
    user = await auth.db.read(find_user, login)
    return await _check_password(auth, user, login, password, address, client_id, "login")


async def confirm_password(
    auth: Authority, user: UserRecord, password: str, address: str, client_id: str
) -> bool:
    """Whether ``password`` is the logged-in ``user``'s, asked again before a change
    (``POST /auth/password``): throttled and counted exactly like a login, so a stolen
    session cannot guess the password any faster; a failure is a ``login.failed``
    event (``during: password_change``). Raises ``LoginThrottled``."""
    if len(password) > MAX_LENGTH:
        return False
    found = await _check_password(
        auth, user, user.username, password, address, client_id, "password_change"
    )
    return found is not None


async def _check_password(
    auth: Authority,
    user: UserRecord | None,
    login: str,
    password: str,
    address: str,
    client_id: str,
    during: Literal["login", "password_change"],
) -> UserRecord | None:
    # Unknown logins are counted too, by name, so they are throttled alike.
    account = f"user:{user.id}" if user is not None else f"login:{fold(login)}"
    settings = auth.settings
    limits = Limits(
        settings.login_max_failures_account,
        settings.login_max_failures_address,
        settings.login_failure_window,
    )
    who = _Attempt(user, login, client_id, during)
    wait = await auth.db.write(_take_attempt, who, account, address, limits, auth.clock())
    if wait is not None:
        metrics.LOGIN_THROTTLED.inc()
        raise LoginThrottled(wait)
    matches, needs_rehash = await averify_password(user.password_hash if user else None, password)
    if not matches or user is None or not user.is_active:
        metrics.LOGIN_FAILURES.inc()
        reason = "unknown_user" if user is None else "bad_password" if not matches else "inactive"
        await auth.db.write(_login_failed, who, reason, address, limits, auth.clock())
        return None
    new_hash = await ahash_password(password) if needs_rehash else None
    await auth.db.write(_login_succeeded, who, account, address, new_hash, auth.clock())
    return user


@dataclass(frozen=True, slots=True)
class _Attempt:
    """Who an attempt names, for its audit event. An unknown user's event carries the
    name as typed (cut to the column's length): what an operator needs to see who is
    being guessed at."""

    user: UserRecord | None
    login: str
    client_id: str
    during: Literal["login", "password_change"]

    def record(self, conn: Connection, type: audit.EventType, now: float, **detail: Any) -> None:
        if self.during != "login":
            detail["during"] = self.during
        audit.record(
            conn,
            type,
            at=now,
            user_id=self.user.id if self.user else None,
            # What was typed for an unknown account is not kept: it is too often a
            # password typed in the wrong field, and secrets never reach the trail.
            username=self.user.username if self.user else None,
            client_id=self.client_id,
            detail=detail,
        )


def _take_attempt(
    conn: Connection, who: _Attempt, account: str, address: str, limits: Limits, now: float
) -> int | None:
    wait = take_attempt(conn, account, address, limits, now)
    if wait is not None:
        who.record(conn, "login.throttled", now, retry_after=wait)
    return wait


def _login_failed(
    conn: Connection, who: _Attempt, reason: str, address: str, limits: Limits, now: float
) -> None:
    record_failure(conn, address, limits, now)
    who.record(conn, "login.failed", now, reason=reason)


def _login_succeeded(
    conn: Connection,
    who: _Attempt,
    account: str,
    address: str,
    new_hash: str | None,
    now: float,
) -> None:
    succeeded(conn, account, address)
    if new_hash is not None and who.user is not None:
        set_password_hash(conn, who.user.id, new_hash)
    if who.during == "login":
        who.record(conn, "login.succeeded", now)


async def open_session(
    auth: Authority, client_id: str, user: UserRecord, scope: str, audience: str
) -> Session:
    """A new login session (refresh family) of ``user`` at ``client_id``."""
    settings = auth.settings
    refresh, refresh_hash = new_refresh_token()
    request = audit.current_request()
    status_idx = await auth.status.allocate()
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
        address=request.address if request else None,
        user_agent=request.user_agent if request else None,
        status_idx=status_idx,
    )
    return Session(family, refresh, expires_at, status_idx)


async def refresh_session(
    auth: Authority,
    client_id: str,
    raw: str,
    scope: list[str] | None = None,
    audience: str | None = None,
    *,
    jkt: str | None = None,
    bind_key: bool = False,
) -> Session:
    """Consume a refresh token of ``client_id`` and hand out its replacement (rotation
    with reuse detection, README, "Tokens"). ``jkt`` is the thumbprint of the request's
    DPoP proof's key; with ``bind_key`` an unbound family is bound to it, in the same
    transaction (``authority.sessions.binding``). Raises ``RefreshRefused`` (``reuse``
    revokes the family), ``KeyRefused``, ``ScopeRefused`` or ``AudienceRefused``."""
    presented = parse_refresh_token(raw)
    if presented is None:
        raise RefreshRefused("unknown")
    replacement, replacement_hash = new_refresh_token()
    settings = auth.settings
    # In memory: a lease of a new block of indexes every thousand tokens at most.
    status_idx = await auth.status.allocate()
    result = await rotate(
        auth.db,
        presented=presented,
        replacement=replacement_hash,
        client_id=client_id,
        now=auth.clock(),
        refresh_ttl=settings.refresh_ttl,
        grace=settings.refresh_reuse_grace,
        scope=scope,
        audience=audience,
        status_idx=status_idx,
        jkt=jkt,
        bind_key=bind_key,
    )
    if result.outcome == "reuse":
        metrics.REFRESH_REUSE.inc()
    if result.outcome == "dpop":
        raise KeyRefused()
    if result.outcome == "scope":
        raise ScopeRefused()
    if result.outcome == "target":
        raise AudienceRefused()
    if not result.ok or result.family is None:
        raise RefreshRefused(result.outcome)
    metrics.TOKENS_ISSUED.labels("refresh_token").inc()
    return Session(result.family, replacement, result.token_expires_at, status_idx)


async def rotate(db: Database, *, grace: int, **rotation: Any) -> Rotation:
    """``families.rotate_token`` with its reuse event (``_rotate``). On PostgreSQL a live
    token presented once, the common case, is first tried in one statement and one
    round trip (``one_statement``), which otherwise changes nothing."""
    if not db.sqlite:
        row = await rotate_live_token(db, **rotation)
        if row is not None:
            return Rotation("rotated", Family(*tuple(row)[:7]), row[7])
    return await db.write_quick(_rotate, grace=grace, **rotation)


def _rotate(conn: Connection, /, *, now: float, **rotation: Any) -> Rotation:
    """``families.rotate_token``; a reuse is an audit event in the transaction that
    revoked the family. Nothing more on the hot path: no write unless reuse."""
    result = rotate_token(conn, now=now, **rotation)
    if result.outcome == "reuse" and result.family is not None:
        family = result.family
        audit.record(
            conn,
            "refresh.reuse_detected",
            at=now,
            user_id=family.user_id,
            username=family.username,
            client_id=family.client_id,
            detail={"family_id": family.id},
        )
    return result


def issue_access_token(
    auth: Authority, client_id: str, session: Session, scope: str
) -> AccessToken:
    """An access token of a session's user, for ``client_id``, naming the session and
    holding the status list index its refresh token recorded."""
    family = session.family
    return auth.signer.sign(
        auth.keys.signing_key(),
        now=auth.clock(),
        sub=str(family.user_id),
        client_id=client_id,
        scope=scope,
        audience=family.audience,
        username=family.username,
        sid=family.id,
        status_idx=session.status_idx,
    )
