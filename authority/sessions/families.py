"""Refresh token families (README, "Tokens"): rotation, reuse detection, revocation.

Rotation is a compare-and-set, as in Ory fosite: ``UPDATE ... SET consumed_at = now
WHERE ... AND consumed_at IS NULL RETURNING id`` and the presented token's id among the
returned ones says who won. The loser of a race, like a thief replaying an old token,
finds the token consumed: within the grace window the immediate predecessor of the
newest token gets a sibling, otherwise the whole family is revoked, in the same
transaction, which commits although the request fails. A consumed token is refused
before anything else about the request is looked at (scope, audience), so it cannot
probe its session.

A family never forks (README, "Tokens"): siblings of a grace group are children of the
same parent, and the compare-and-set consumes the presented token *with all its
siblings*, so once one branch is used the others are consumed, and presenting one of
them is reuse. On PostgreSQL the lookup locks the family row (``FOR UPDATE``), so a
grace sibling cannot be inserted while its group is being consumed (SQLite's writes
are serial); each function runs in one ``Database.write`` transaction (PostgreSQL's
common case in one statement: ``one_statement``).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, cast

from sqlalchemy import (
    Connection,
    Float,
    Table,
    and_,
    bindparam,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.sql.expression import ColumnElement

from authority.sessions.binding import bind, refuses
from authority.sessions.hot import Hot
from authority.settings import STATUS_BLOCK_SIZE
from authority.storage.tables import (
    RefreshFamily,
    RefreshToken,
    StatusBlock,
    StatusRevoked,
    StatusState,
    User,
)

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
    "dpop",
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
    address: str | None = None,
    user_agent: str | None = None,
    status_idx: int | None = None,
) -> tuple[Family, float]:
    """A new login session and its first refresh token; returns the token's expiry.
    ``address`` and ``user_agent`` say where it was opened (``GET /auth/sessions``)."""
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
            address=address[:64] if address else None,
            user_agent=user_agent[:256] if user_agent else None,
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
            status_idx=status_idx,
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
        _T.parent_id,
        _T.consumed_at,
        _T.expires_at,
        _F.id.label("family_id"),
        _F.user_id,
        _F.client_id,
        _F.scope,
        _F.audience,
        _F.expires_at.label("family_expires_at"),
        _F.revoked_at,
        _F.dpop_jkt,
        _U.username,
        _U.is_active,
    )
    .select_from(_TOKENS)
    .join(_FAMILIES, _F.id == _T.family_id)
    .join(_USERS, _U.id == _F.user_id)
)
_LOOKUP_HASH = Hot.of(
    _LOOKUP.where(_T.token_hash == bindparam("token_hash")).with_for_update(of=_FAMILIES)
)
# The token and its grace siblings (children of the same parent) are consumed together.
_CONSUME = Hot.of(
    update(_TOKENS)
    .where(
        or_(_T.id == bindparam("token_id"), _T.parent_id == bindparam("of_parent")),
        _T.consumed_at.is_(None),
    )
    .values(consumed_at=bindparam("now"))
    .returning(_T.id)
)
_CHILD = ("token_hash", "family_id", "parent_id", "created_at", "expires_at", "status_idx")
_INSERT_CHILD = Hot.of(insert(_TOKENS).values({name: bindparam(name) for name in _CHILD}))


class _Row(NamedTuple):
    id: int
    parent_id: int | None
    consumed_at: float | None
    expires_at: float
    family_id: str
    user_id: int
    client_id: str
    scope: str
    audience: str
    family_expires_at: float
    revoked_at: float | None
    dpop_jkt: str | None
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
    status_idx: int | None = None,
    jkt: str | None = None,
    bind_key: bool = False,
) -> Rotation:
    """Consume ``presented`` and store ``replacement`` in its family, or say why not.
    A consumed token is reuse unless within grace; a family bound to another DPoP key
    than ``jkt`` (``binding``), more ``scope`` or another ``audience`` than the family
    holds are refused before anything changes; ``bind_key`` binds an unbound family."""
    row = _lookup(conn, presented)
    if row is None:
        return Rotation("unknown")
    if refuses(row.dpop_jkt, jkt):  # before reuse: a thief without the key changes nothing
        return Rotation("dpop")
    if row.client_id != client_id:
        return Rotation("foreign")  # another client's token: refuse, touch nothing
    if row.revoked_at is not None:
        return Rotation("revoked")
    if not row.is_active:
        return Rotation("disabled")
    family = _family_of(row)
    consumed_at = row.consumed_at
    if consumed_at is None:
        refused = _beyond_family(family, scope, audience)
        if refused is not None:
            return refused
        if row.expires_at <= now or family.expires_at <= now:
            return Rotation("expired")
        if _consume(conn, row, now):
            bind(conn, family.id, row.dpop_jkt, jkt, bind_key)
            expires_at = _child(conn, family, row.id, replacement, now, refresh_ttl, status_idx)
            return Rotation("rotated", family, expires_at)
        # Lost the race: the winner's consumed_at is committed and now visible.
        winner = select(RefreshToken.consumed_at).where(RefreshToken.id == row.id)
        consumed_at = conn.execute(winner).scalar_one() or now
    if not (
        grace > 0
        and now - consumed_at <= grace
        and family.expires_at > now
        and _newest_parent(conn, family.id) == row.id
    ):
        revoke_family(conn, family.id, "reuse", now)
        return Rotation("reuse", family)
    refused = _beyond_family(family, scope, audience)
    if refused is not None:
        return refused
    touch_family(conn, family.id)
    bind(conn, family.id, row.dpop_jkt, jkt, bind_key)
    expires_at = _child(conn, family, row.id, replacement, now, refresh_ttl, status_idx)
    return Rotation("grace", family, expires_at)


def touch_family(conn: Connection, family_id: str) -> None:
    """A new version of the family's row, unchanged (a grace sibling joins it): a rotation
    in ``one_statement`` that read the family before sees it change and steps aside."""
    conn.execute(update(_FAMILIES).where(_F.id == family_id).values(expires_at=_F.expires_at))


def _beyond_family(
    family: Family, scope: list[str] | None, audience: str | None
) -> Rotation | None:
    """A refusal when the request asks more than the family holds (RFC 6749 section 6)."""
    if scope is not None and not set(scope) <= set(family.scope.split()):
        return Rotation("scope", family)
    if audience is not None and audience != family.audience:
        return Rotation("target", family)
    return None


def _family_of(row: Any) -> Family:
    """The family columns of a ``_LOOKUP`` row."""
    columns = (row.family_id, row.user_id, row.username, row.client_id, row.scope)
    return Family(*columns, row.audience, row.family_expires_at)


def _child(
    conn: Connection,
    family: Family,
    parent_id: int,
    token_hash: bytes,
    now: float,
    refresh_ttl: int,
    status_idx: int | None,
) -> float:
    expires_at = min(now + refresh_ttl, family.expires_at)  # the family never grows older
    _INSERT_CHILD.execute(
        conn,
        token_hash=token_hash,
        family_id=family.id,
        parent_id=parent_id,
        created_at=now,
        expires_at=expires_at,
        status_idx=status_idx,
    )
    return expires_at


def _lookup(conn: Connection, presented: bytes) -> _Row | None:
    found = _LOOKUP_HASH.execute(conn, token_hash=presented).fetchone()
    return _Row(*found) if found is not None else None


def _consume(conn: Connection, row: _Row, now: float) -> bool:
    """The compare-and-set: True for the one transaction that consumed the token (its
    grace siblings, if any, are consumed with it)."""
    consumed = _CONSUME.execute(conn, token_id=row.id, of_parent=row.parent_id, now=now)
    return any(found[0] == row.id for found in consumed.fetchall())


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
    return _family_of(row) if row is not None else None


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


def revoke_client_families(conn: Connection, client_id: str, reason: str, now: float) -> int:
    return _revoke(conn, RefreshFamily.client_id == client_id, reason, now)


def _revoke(conn: Connection, which: ColumnElement[bool], reason: str, now: float) -> int:
    """Revoke the matching families not yet revoked (and their access tokens' status
    bits); the first reason is kept."""
    set_status_bits(conn, and_(which, RefreshFamily.revoked_at.is_(None)), now)
    revoked = update(RefreshFamily).where(which, RefreshFamily.revoked_at.is_(None))
    return int(conn.execute(revoked.values(revoked_at=now, revoke_reason=reason)).rowcount)


def session_active(conn: Connection, family_id: str) -> bool:
    """Whether the login session behind a user's access token still stands."""
    row = conn.execute(
        select(RefreshFamily.revoked_at, User.is_active)
        .join(User, User.id == RefreshFamily.user_id)
        .where(RefreshFamily.id == family_id)
    ).first()
    return row is not None and row.revoked_at is None and row.is_active


def set_status_bits(conn: Connection, which: ColumnElement[bool], now: float) -> None:
    """Set the status list bits (``authority.status.store``) of the access tokens of the
    families ``which`` selects, those issued under their block's current lease."""
    tokens = (
        select(RefreshToken.status_idx, literal(now, Float))
        .join(RefreshFamily, RefreshFamily.id == RefreshToken.family_id)
        .join(StatusBlock, StatusBlock.slot == RefreshToken.status_idx // STATUS_BLOCK_SIZE)
        .where(
            which,
            RefreshToken.status_idx.is_not(None),
            RefreshToken.created_at >= StatusBlock.leased_at,
        )
    )
    insert_ = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    inserted = insert_(StatusRevoked).from_select(["idx", "revoked_at"], tokens)
    if conn.execute(inserted.on_conflict_do_nothing()).rowcount:
        conn.execute(StatusState.bump())
