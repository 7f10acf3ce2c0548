"""A user's life and sessions, as the user (``/auth``) and operators (``authority
users``) change them: created, disabled and enabled, a password set (other sessions
ended), sessions listed and ended. Each step is one transaction together with its
audit event (``authority.storage.audit``), so an event is stored exactly when what it
records is.

A session is a refresh family (``authority.sessions.families``). It is live while not
revoked, within its absolute lifetime and holding an unconsumed, unexpired refresh
token. Its last use is when its newest refresh token was made: rotation writes nothing
more for it, so refreshing keeps its speed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import Connection, Subquery, func, insert, select, update
from sqlalchemy.sql.expression import ColumnElement

from authority.accounts.users import (
    UserRecord,
    create_user,
    get_user,
    replace_password,
    set_active,
)
from authority.sessions.families import Family, set_status_bits
from authority.storage import audit
from authority.storage.tables import RefreshFamily, RefreshToken, User

MAX_SESSION_ID = 64  # family ids are 22 characters; longer is no session of ours


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """A live session as ``GET /auth/sessions`` and ``authority users sessions`` show it."""

    id: str
    client_id: str
    created_at: float
    last_used_at: float
    address: str | None
    user_agent: str | None


def _newest_live_tokens(now: float) -> Subquery:
    """Per family with an unconsumed, unexpired token: the newest token's creation."""
    return (
        select(
            RefreshToken.family_id.label("family_id"),
            func.max(RefreshToken.created_at).label("last_used_at"),
        )
        .where(RefreshToken.consumed_at.is_(None), RefreshToken.expires_at > now)
        .group_by(RefreshToken.family_id)
        .subquery()
    )


def live_sessions(conn: Connection, user_id: int, now: float) -> list[SessionInfo]:
    """The user's live sessions, the most recently used first."""
    tokens = _newest_live_tokens(now)
    rows = conn.execute(
        select(
            RefreshFamily.id,
            RefreshFamily.client_id,
            RefreshFamily.created_at,
            tokens.c.last_used_at,
            RefreshFamily.address,
            RefreshFamily.user_agent,
        )
        .join(tokens, tokens.c.family_id == RefreshFamily.id)
        .where(
            RefreshFamily.user_id == user_id,
            RefreshFamily.revoked_at.is_(None),
            RefreshFamily.expires_at > now,
        )
        .order_by(tokens.c.last_used_at.desc(), RefreshFamily.id)
    )
    return [SessionInfo(*row) for row in rows]


def live_session_counts(conn: Connection, now: float) -> dict[int, int]:
    """How many live sessions each user with any has."""
    tokens = _newest_live_tokens(now)
    rows = conn.execute(
        select(RefreshFamily.user_id, func.count())
        .join(tokens, tokens.c.family_id == RefreshFamily.id)
        .where(RefreshFamily.revoked_at.is_(None), RefreshFamily.expires_at > now)
        .group_by(RefreshFamily.user_id)
    )
    return {user_id: count for user_id, count in rows}


def end_sessions(
    conn: Connection,
    reason: str,
    now: float,
    *,
    user_id: int | None = None,
    family_id: str | None = None,
    keep: str | None = None,
) -> list[str]:
    """Revoke the sessions not yet revoked of ``user_id`` (all but ``keep``), or only
    ``family_id`` (of ``user_id`` when given: another user's is left alone). One
    ``session.revoked`` event names them and the ``reason`` (at most 32 characters).
    The ids revoked."""
    if user_id is None and family_id is None:
        raise ValueError("end_sessions needs a user or a session")
    which: list[ColumnElement[bool]] = [RefreshFamily.revoked_at.is_(None)]
    if user_id is not None:
        which.append(RefreshFamily.user_id == user_id)
    if family_id is not None:
        which.append(RefreshFamily.id == family_id)
    if keep is not None:
        which.append(RefreshFamily.id != keep)
    _lock_in_order(conn, which)
    revoked = conn.execute(
        update(RefreshFamily)
        .where(*which)
        .values(revoked_at=now, revoke_reason=reason)
        .returning(RefreshFamily.id, RefreshFamily.client_id, RefreshFamily.user_id)
    ).all()
    if not revoked:
        return []
    ids = sorted(row.id for row in revoked)
    set_status_bits(conn, RefreshFamily.id.in_(ids), now)
    clients = {row.client_id for row in revoked}
    user = get_user(conn, revoked[0].user_id)
    audit.record(
        conn,
        "session.revoked",
        at=now,
        user_id=revoked[0].user_id,
        username=user.username if user else None,
        client_id=clients.pop() if len(clients) == 1 else None,
        detail={"families": ids, "reason": reason},
    )
    return ids


def _lock_in_order(conn: Connection, which: Sequence[ColumnElement[bool]]) -> None:
    """Lock the matching families in id order before changing them (PostgreSQL; SQLite's
    writers are serial anyway): an UPDATE locks rows in whatever order it finds them, and
    two of them over the same user's sessions (logout-all and a password change) could
    otherwise each hold a row the other waits for."""
    conn.execute(
        select(RefreshFamily.id).where(*which).order_by(RefreshFamily.id).with_for_update()
    )


def renew_session(
    conn: Connection,
    family_id: str,
    user_id: int,
    token_hash: bytes,
    now: float,
    ttl: int,
    status_idx: int | None = None,
) -> tuple[Family, float] | None:
    """A new refresh token for the user's live session, as a refresh would give it: the
    session's unconsumed tokens are consumed, the new one is the newest one's child (so
    that one keeps its grace), and the family's lifetime does not grow. The family and
    the token's expiry, or None when the session is not live (then nothing changed)."""
    row = conn.execute(
        select(
            RefreshFamily.id,
            RefreshFamily.user_id,
            User.username,
            RefreshFamily.client_id,
            RefreshFamily.scope,
            RefreshFamily.audience,
            RefreshFamily.expires_at,
        )
        .join(User, User.id == RefreshFamily.user_id)
        .where(
            RefreshFamily.id == family_id,
            RefreshFamily.user_id == user_id,
            RefreshFamily.revoked_at.is_(None),
            RefreshFamily.expires_at > now,
        )
        .with_for_update(of=RefreshFamily)
    ).first()
    if row is None:
        return None
    family = Family(*row)
    newest = conn.execute(
        select(RefreshToken.id)
        .where(
            RefreshToken.family_id == family_id,
            RefreshToken.consumed_at.is_(None),
            RefreshToken.expires_at > now,
        )
        .order_by(RefreshToken.id.desc())
        .limit(1)
    ).scalar()
    if newest is None:
        return None
    conn.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.consumed_at.is_(None))
        .values(consumed_at=now)
    )
    expires_at = min(now + ttl, family.expires_at)
    conn.execute(
        insert(RefreshToken).values(
            token_hash=token_hash,
            family_id=family_id,
            parent_id=newest,
            created_at=now,
            expires_at=expires_at,
            status_idx=status_idx,
        )
    )
    return family, expires_at


class PasswordStale(Exception):
    """The password changed meanwhile: the one confirmed is no longer the user's."""


class SessionEnded(Exception):
    """The session asking for a change ended meanwhile."""


def set_password(conn: Connection, user: UserRecord, password_hash: str, now: float) -> list[str]:
    """An operator's new password for the user: every session ends (a
    ``password.changed`` event, and ``session.revoked``). The sessions ended."""
    replace_password(conn, user.id, password_hash, now)
    return _password_changed(conn, user, now, by="operator")


def _password_changed(
    conn: Connection,
    user: UserRecord,
    now: float,
    *,
    by: Literal["user", "operator"],
    keep: str | None = None,
) -> list[str]:
    reason = "password changed" if by == "user" else "password set by operator"
    revoked = end_sessions(conn, reason, now, user_id=user.id, keep=keep)
    audit.record(
        conn,
        "password.changed",
        at=now,
        user_id=user.id,
        username=user.username,
        detail={"by": by, "sessions_revoked": len(revoked)},
    )
    return revoked


@dataclass(frozen=True, slots=True)
class PasswordChange:
    """What ``POST /auth/password`` did: the kept session, its new refresh token's
    expiry, and the sessions it ended."""

    family: Family
    refresh_expires_at: float
    revoked: Sequence[str]


def change_own_password(
    conn: Connection,
    user: UserRecord,
    password_hash: str,
    *,
    confirmed_hash: str,
    session: str,
    token_hash: bytes,
    now: float,
    ttl: int,
    status_idx: int | None = None,
) -> PasswordChange:
    """The user's own change from their ``session``: it goes on with a new refresh
    token (``token_hash``), every other session ends. Only while the stored hash is
    still ``confirmed_hash`` (a compare-and-set: of two changes from the same old
    password one wins), else ``PasswordStale``; ``SessionEnded`` when that session is
    no longer live. Either rolls the whole change back.

    The user's row is taken first, then the user's sessions in id order, as every
    change of several sessions does: concurrent changes wait for each other instead
    of deadlocking."""
    if not replace_password(conn, user.id, password_hash, now, expected=confirmed_hash):
        raise PasswordStale()
    _lock_in_order(conn, [RefreshFamily.user_id == user.id, RefreshFamily.revoked_at.is_(None)])
    renewed = renew_session(conn, session, user.id, token_hash, now, ttl, status_idx)
    if renewed is None:
        raise SessionEnded()
    revoked = _password_changed(conn, user, now, by="user", keep=session)
    return PasswordChange(*renewed, revoked)


def create_audited_user(
    conn: Connection,
    *,
    username: str,
    email: str,
    password_hash: str,
    now: float,
    event: Literal["user.registered", "user.created"],
    client_id: str | None = None,
) -> UserRecord:
    """``users.create_user``, with its event: ``user.registered`` for a sign-up,
    ``user.created`` for an operator's."""
    user = create_user(conn, username=username, email=email, password_hash=password_hash, now=now)
    audit.record(conn, event, at=now, user_id=user.id, username=user.username, client_id=client_id)
    return user


def set_user_active(conn: Connection, user: UserRecord, active: bool, now: float) -> list[str]:
    """Enable or disable a user (``user.enabled``, ``user.disabled`` when it changed
    anything); disabling also ends every session. The sessions ended."""
    if set_active(conn, user.id, active):
        audit.record(
            conn,
            "user.enabled" if active else "user.disabled",
            at=now,
            user_id=user.id,
            username=user.username,
        )
    if active:
        return []
    return end_sessions(conn, "user disabled", now, user_id=user.id)
