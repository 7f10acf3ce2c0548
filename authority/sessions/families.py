"""Refresh token families (README, "Tokens"): rotation, reuse detection, revocation.

Rotation is a compare-and-set, as in Ory fosite: ``UPDATE ... SET consumed_at = now
WHERE id = ? AND consumed_at IS NULL`` and the row count says who won. The loser of a
race, like a thief replaying an old token, finds the token consumed: within the grace
window the immediate predecessor of the newest token gets a sibling, otherwise the
whole family is revoked, in the same transaction, which commits although the request
fails. Every function here runs inside one ``Database.write`` transaction.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, cast

from sqlalchemy import Connection, Table, bindparam, func, insert, select, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.sql.expression import ColumnElement, Executable

from authority.storage.tables import RefreshFamily, RefreshToken, RevokedAccessToken, User

Outcome = Literal[
    "rotated",
    "grace",
    "reuse",
    "unknown",
    "expired",
    "foreign",
    "revoked",
    "disabled",
    "scope",
    "target",
]


@dataclass(frozen=True, slots=True)
class Family:
    id: str
    user_id: int
    username: str
    client_id: str
    scope: str
    audience: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class Rotation:
    outcome: Outcome
    family: Family | None = None
    token_expires_at: float = 0.0

    @property
    def ok(self) -> bool:
        return self.outcome in ("rotated", "grace")


def start_family(
    conn: Connection,
    *,
    user_id: int,
    username: str,
    client_id: str,
    scope: str,
    audience: str,
    token_hash: bytes,
    now: float,
    refresh_ttl: int,
    family_ttl: int,
) -> tuple[Family, float]:
    """A new login session and its first refresh token; returns the token's expiry."""
    family = Family(
        secrets.token_urlsafe(16), user_id, username, client_id, scope, audience, now + family_ttl
    )
    conn.execute(
        insert(RefreshFamily).values(
            id=family.id,
            user_id=user_id,
            client_id=client_id,
            scope=scope,
            audience=audience,
            created_at=now,
            expires_at=family.expires_at,
        )
    )
    expires_at = min(now + refresh_ttl, family.expires_at)
    conn.execute(
        insert(RefreshToken).values(
            token_hash=token_hash,
            family_id=family.id,
            parent_id=None,
            created_at=now,
            expires_at=expires_at,
        )
    )
    return family, expires_at


_TOKENS = cast(Table, RefreshToken.__table__)
_FAMILIES = cast(Table, RefreshFamily.__table__)
_USERS = cast(Table, User.__table__)
_T, _F, _U = _TOKENS.c, _FAMILIES.c, _USERS.c
_LOOKUP = (
    select(
        _T.id,
        _T.consumed_at,
        _T.expires_at,
        _F.id.label("family_id"),
        _F.user_id,
        _F.client_id,
        _F.scope,
        _F.audience,
        _F.expires_at.label("family_expires_at"),
        _F.revoked_at,
        _U.username,
        _U.is_active,
    )
    .select_from(_TOKENS)
    .join(_FAMILIES, _F.id == _T.family_id)
    .join(_USERS, _U.id == _F.user_id)
)
_QMARK = sqlite.dialect(paramstyle="qmark")


@dataclass(frozen=True)
class _Hot:
    """A statement of every rotation, compiled once, also to plain SQLite SQL: on
    SQLite it runs on the driver's own cursor, skipping SQLAlchemy's per-statement
    work, which costs more than SQLite itself. One definition serves both."""

    statement: Executable
    sql: str
    order: tuple[str, ...]

    @classmethod
    def of(cls, statement: Executable) -> _Hot:
        compiled = statement.compile(dialect=_QMARK)  # type: ignore[attr-defined]
        return cls(statement, str(compiled), tuple(compiled.positiontup or ()))

    def execute(self, conn: Connection, **params: Any) -> Any:
        """A cursor (SQLite) or a result (elsewhere): both have fetchone and rowcount."""
        if conn.dialect.name == "sqlite":
            # The same transaction: Database.write began it on this very connection.
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            return cursor.execute(self.sql, [params[name] for name in self.order])
        return conn.execute(self.statement, params)


_LOOKUP_HASH = _Hot.of(_LOOKUP.where(_T.token_hash == bindparam("token_hash")))
_CONSUME = _Hot.of(
    update(_TOKENS)
    .where(_T.id == bindparam("token_id"), _T.consumed_at.is_(None))
    .values(consumed_at=bindparam("now"))
)
_INSERT_CHILD = _Hot.of(
    insert(_TOKENS).values(
        {
            name: bindparam(name)
            for name in ("token_hash", "family_id", "parent_id", "created_at", "expires_at")
        }
    )
)


class _Row(NamedTuple):
    id: int
    consumed_at: float | None
    expires_at: float
    family_id: str
    user_id: int
    client_id: str
    scope: str
    audience: str
    family_expires_at: float
    revoked_at: float | None
    username: str
    is_active: bool


def rotate_token(
    conn: Connection,
    *,
    presented: bytes,
    replacement: bytes,
    client_id: str,
    now: float,
    refresh_ttl: int,
    grace: int,
    scope: list[str] | None = None,
    audience: str | None = None,
) -> Rotation:
    """Consume ``presented`` and store ``replacement`` in its family, or say why not.
    A request for more ``scope`` or another ``audience`` than the family holds is
    refused before anything changes."""
    row = _lookup(conn, presented)
    if row is None:
        return Rotation("unknown")
    if row.client_id != client_id:
        return Rotation("foreign")  # another client's token: refuse, touch nothing
    if row.revoked_at is not None:
        return Rotation("revoked")
    if not row.is_active:
        return Rotation("disabled")
    family = _family_of(row)
    if scope is not None and not set(scope) <= set(family.scope.split()):
        return Rotation("scope", family)
    if audience is not None and audience != family.audience:
        return Rotation("target", family)
    consumed_at = row.consumed_at
    if consumed_at is None:
        if row.expires_at <= now or family.expires_at <= now:
            return Rotation("expired")
        if _consume(conn, row.id, now):
            return Rotation(
                "rotated", family, _child(conn, family, row.id, replacement, now, refresh_ttl)
            )
        # Lost the race: the winner's consumed_at is committed and now visible.
        consumed_at = (
            conn.execute(
                select(RefreshToken.consumed_at).where(RefreshToken.id == row.id)
            ).scalar_one()
            or now
        )
    if (
        grace > 0
        and now - consumed_at <= grace
        and family.expires_at > now
        and _newest_parent(conn, family.id) == row.id
    ):
        return Rotation(
            "grace", family, _child(conn, family, row.id, replacement, now, refresh_ttl)
        )
    revoke_family(conn, family.id, "reuse", now)
    return Rotation("reuse", family)


def _family_of(row: Any) -> Family:
    """The family columns of a ``_LOOKUP`` row."""
    return Family(
        row.family_id,
        row.user_id,
        row.username,
        row.client_id,
        row.scope,
        row.audience,
        row.family_expires_at,
    )


def _child(
    conn: Connection,
    family: Family,
    parent_id: int,
    token_hash: bytes,
    now: float,
    refresh_ttl: int,
) -> float:
    expires_at = min(now + refresh_ttl, family.expires_at)  # the family never grows older
    _INSERT_CHILD.execute(
        conn,
        token_hash=token_hash,
        family_id=family.id,
        parent_id=parent_id,
        created_at=now,
        expires_at=expires_at,
    )
    return expires_at


def _lookup(conn: Connection, presented: bytes) -> _Row | None:
    found = _LOOKUP_HASH.execute(conn, token_hash=presented).fetchone()
    return _Row(*found) if found is not None else None


def _consume(conn: Connection, token_id: int, now: float) -> bool:
    """The compare-and-set: True for the one transaction that consumed the token."""
    return bool(_CONSUME.execute(conn, token_id=token_id, now=now).rowcount == 1)


def _newest_parent(conn: Connection, family_id: str) -> int | None:
    return conn.execute(
        select(RefreshToken.parent_id)
        .where(RefreshToken.family_id == family_id)
        .order_by(RefreshToken.id.desc())
        .limit(1)
    ).scalar()


def find_family(conn: Connection, token_hash: bytes) -> Family | None:
    """The family of a refresh token, revoked or not (for revocation and introspection)."""
    row = conn.execute(_LOOKUP.where(RefreshToken.token_hash == token_hash)).first()
    if row is None:
        return None
    return _family_of(row)


@dataclass(frozen=True, slots=True)
class TokenState:
    family: Family
    active: bool
    expires_at: float
    issued_at: float


def token_state(conn: Connection, token_hash: bytes, now: float) -> TokenState | None:
    row = conn.execute(
        _LOOKUP.add_columns(RefreshToken.created_at).where(RefreshToken.token_hash == token_hash)
    ).first()
    if row is None:
        return None
    family = _family_of(row)
    active = (
        row.consumed_at is None
        and row.revoked_at is None
        and row.is_active
        and row.expires_at > now
        and row.family_expires_at > now
    )
    return TokenState(family, active, row.expires_at, row.created_at)


def revoke_family(conn: Connection, family_id: str, reason: str, now: float) -> bool:
    return _revoke(conn, RefreshFamily.id == family_id, reason, now) > 0


def revoke_user_families(conn: Connection, user_id: int, reason: str, now: float) -> int:
    return _revoke(conn, RefreshFamily.user_id == user_id, reason, now)


def _revoke(conn: Connection, which: ColumnElement[bool], reason: str, now: float) -> int:
    """Revoke the matching families not yet revoked; the first reason is kept."""
    return int(
        conn.execute(
            update(RefreshFamily)
            .where(which, RefreshFamily.revoked_at.is_(None))
            .values(revoked_at=now, revoke_reason=reason)
        ).rowcount
    )


def session_active(conn: Connection, family_id: str) -> bool:
    """Whether the login session behind a user's access token still stands."""
    row = conn.execute(
        select(RefreshFamily.revoked_at, User.is_active)
        .join(User, User.id == RefreshFamily.user_id)
        .where(RefreshFamily.id == family_id)
    ).first()
    return row is not None and row.revoked_at is None and row.is_active


def revoke_access_token(conn: Connection, jti: str, expires_at: float) -> None:
    values = {"jti": jti, "expires_at": expires_at}
    if conn.dialect.name == "postgresql":
        conn.execute(pg_insert(RevokedAccessToken).values(values).on_conflict_do_nothing())
    else:
        conn.execute(sqlite_insert(RevokedAccessToken).values(values).on_conflict_do_nothing())


def access_token_revoked(conn: Connection, jti: str) -> bool:
    return (
        conn.execute(
            select(func.count())
            .select_from(RevokedAccessToken)
            .where(RevokedAccessToken.jti == jti)
        ).scalar_one()
        > 0
    )
