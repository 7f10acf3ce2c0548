"""A user's sessions on every storage backend (``authority.sessions.lifecycle``): which
are live, ending them (never another user's), renewing the one a password change
keeps, and two password changes racing from the same old password, which the database
decides."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from authority.accounts.users import UserRecord, create_user, get_user
from authority.sessions.families import rotate_token, start_family
from authority.sessions.lifecycle import (
    PasswordStale,
    SessionEnded,
    change_own_password,
    end_sessions,
    live_session_counts,
    live_sessions,
    renew_session,
)
from authority.sessions.refresh_tokens import new_refresh_token
from authority.storage.database import Database
from authority.storage.tables import AuditEvent
from tests.helpers.clock import Clock

TTL, FAMILY_TTL = 600, 3600
_names = itertools.count()


@pytest.fixture
async def db(migrated_url: str) -> AsyncIterator[Database]:
    database = Database(migrated_url)
    yield database
    await database.dispose()


async def new_user(db: Database, now: float) -> UserRecord:
    n = next(_names)
    return await db.write(
        create_user, username=f"u{n}", email=f"u{n}@example.org", password_hash="old", now=now
    )


async def open_session(db: Database, user: UserRecord, now: float) -> tuple[str, bytes]:
    """A new session of ``user``: its id and its refresh token's hash."""
    _, token_hash = new_refresh_token()
    family, _ = await db.write(
        start_family,
        user_id=user.id,
        username=user.username,
        client_id="authority-web",  # the first-party client, made by the migrations
        scope="",
        audience="default",
        token_hash=token_hash,
        now=now,
        refresh_ttl=TTL,
        family_ttl=FAMILY_TTL,
        address="192.0.2.1",
        user_agent="test-agent",
    )
    return family.id, token_hash


async def test_only_live_sessions_are_listed_and_counted(db: Database, clock: Clock) -> None:
    user = await new_user(db, clock.now)
    live, _ = await open_session(db, user, clock.now)
    ended, _ = await open_session(db, user, clock.now)
    await open_session(db, user, clock.now - TTL - 1)  # its refresh token has expired
    await db.write(end_sessions, "logout", clock.now, family_id=ended)

    [session] = await db.read(live_sessions, user.id, clock.now)
    assert (session.id, session.address, session.user_agent) == (live, "192.0.2.1", "test-agent")
    assert session.created_at == session.last_used_at == clock.now
    assert (await db.read(live_session_counts, clock.now))[user.id] == 1


async def test_last_use_is_the_newest_refresh(db: Database, clock: Clock) -> None:
    user = await new_user(db, clock.now)
    sid, token_hash = await open_session(db, user, clock.now)
    clock.advance(100)
    _, replacement = new_refresh_token()
    rotation = await db.write(
        rotate_token,
        presented=token_hash,
        replacement=replacement,
        client_id="authority-web",
        now=clock.now,
        refresh_ttl=TTL,
        grace=0,
    )
    assert rotation.outcome == "rotated"
    [session] = await db.read(live_sessions, user.id, clock.now)
    assert (session.id, session.last_used_at, session.created_at) == (
        sid,
        clock.now,
        clock.now - 100,
    )


async def test_another_users_session_is_not_ended(db: Database, clock: Clock) -> None:
    owner, other = await new_user(db, clock.now), await new_user(db, clock.now)
    sid, _ = await open_session(db, owner, clock.now)
    assert await db.write(end_sessions, "x", clock.now, user_id=other.id, family_id=sid) == []
    assert [s.id for s in await db.read(live_sessions, owner.id, clock.now)] == [sid]
    assert await db.write(end_sessions, "x", clock.now, user_id=owner.id, family_id=sid) == [sid]


async def test_a_renewed_session_keeps_its_end_and_its_old_token_is_consumed(
    db: Database, clock: Clock
) -> None:
    user = await new_user(db, clock.now)
    sid, old = await open_session(db, user, clock.now)
    clock.advance(FAMILY_TTL - 10)
    assert await db.write(renew_session, sid, user.id, b"n" * 32, clock.now, TTL) is None
    clock.advance(-(FAMILY_TTL - 10) + 100)
    renewed = await db.write(renew_session, sid, user.id, b"n" * 32, clock.now, TTL)
    assert renewed is not None
    family, expires_at = renewed
    assert (family.id, expires_at) == (sid, clock.now + TTL)
    clock.advance(60)  # past any grace
    reused = await db.write(
        rotate_token,
        presented=old,
        replacement=b"r" * 32,
        client_id="authority-web",
        now=clock.now,
        refresh_ttl=TTL,
        grace=0,
    )
    assert reused.outcome == "reuse"
    other = await new_user(db, clock.now)
    assert await db.write(renew_session, sid, other.id, b"m" * 32, clock.now, TTL) is None


async def test_two_changes_from_the_same_old_password_one_wins(db: Database, clock: Clock) -> None:
    user = await new_user(db, clock.now)
    sessions = [await open_session(db, user, clock.now) for _ in range(2)]

    async def change(sid: str, new_hash: str, token: bytes) -> str:
        try:
            await db.write(
                change_own_password,
                user,
                new_hash,
                confirmed_hash="old",
                session=sid,
                token_hash=token,
                now=clock.now,
                ttl=TTL,
            )
        except PasswordStale:
            return "stale"
        except SessionEnded:
            return "ended"
        return new_hash

    results = await asyncio.gather(
        change(sessions[0][0], "first", b"a" * 32), change(sessions[1][0], "second", b"b" * 32)
    )
    winners = [r for r in results if r in ("first", "second")]
    assert len(winners) == 1, results
    stored = await db.read(get_user, user.id)
    assert stored is not None
    assert stored.password_hash == winners[0]
    assert len(await db.read(live_sessions, user.id, clock.now)) == 1
    # The loser's events rolled back with it: one change, one session ended.
    table = AuditEvent.__table__
    query = select(table.c.type, table.c.detail).where(table.c.user_id == user.id)
    events = sorted(tuple(row) for row in await db.read(lambda c: c.execute(query).all()))
    assert [type_ for type_, _ in events] == ["password.changed", "session.revoked"]
    assert json.loads(events[0][1]) == {"by": "user", "sessions_revoked": 1}
