"""Pruning deletes dead sessions in batches and keeps what reuse detection needs."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import Connection, func, select

from authority.accounts.clients import create_client
from authority.accounts.users import create_user
from authority.sessions.families import rotate_token, start_family
from authority.sessions.pruning import prune_tokens
from authority.sessions.refresh_tokens import new_refresh_token
from authority.status.store import revoke_access_token
from authority.storage.database import Database
from authority.storage.tables import RefreshFamily, RefreshToken, RevokedAccessToken
from tests.helpers.clock import Clock

TTL, FAMILY_TTL = 100, 1000


@pytest.fixture
async def db(migrated_url: str) -> AsyncIterator[Database]:
    database = Database(migrated_url)
    yield database
    await database.dispose()


async def setup_user(db: Database) -> tuple[int, str]:
    user = await db.write(
        create_user,
        username=f"u{time.monotonic_ns()}",
        email=f"{time.monotonic_ns()}@x",
        password_hash="x",
        now=0.0,
    )
    client = await db.write(
        create_client,
        name="c",
        secret_hash=None,
        grant_types=["refresh_token"],
        scopes=[],
        audiences=[],
        now=0.0,
    )
    return user.id, client.client_id


async def new_family(db: Database, user_id: int, client_id: str, now: float) -> bytes:
    _, token_hash = new_refresh_token()
    await db.write(
        start_family,
        user_id=user_id,
        username="u",
        client_id=client_id,
        scope="",
        audience="default",
        token_hash=token_hash,
        now=now,
        refresh_ttl=TTL,
        family_ttl=FAMILY_TTL,
    )
    return token_hash


def count(conn: Connection, table: type) -> int:
    return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


async def test_expired_families_go_and_live_ones_stay(db: Database, clock: Clock) -> None:
    user_id, client_id = await setup_user(db)
    for _ in range(5):
        await new_family(db, user_id, client_id, clock.now - FAMILY_TTL - 1)
    live = await new_family(db, user_id, client_id, clock.now)
    assert await prune_tokens(db, clock, batch=2) == 10
    assert await db.read(count, RefreshFamily) == 1
    assert await db.read(count, RefreshToken) == 1
    result = await db.write(
        rotate_token,
        presented=live,
        replacement=new_refresh_token()[1],
        client_id=client_id,
        now=clock.now,
        refresh_ttl=TTL,
        grace=0,
    )
    assert result.outcome == "rotated"


async def test_a_consumed_token_is_kept_until_it_expires_so_reuse_is_still_caught(
    db: Database, clock: Clock
) -> None:
    user_id, client_id = await setup_user(db)
    first = await new_family(db, user_id, client_id, clock.now)
    second = new_refresh_token()[1]
    await db.write(
        rotate_token,
        presented=first,
        replacement=second,
        client_id=client_id,
        now=clock.now,
        refresh_ttl=TTL,
        grace=0,
    )
    assert await prune_tokens(db, clock) == 0
    clock.advance(TTL - 1)
    assert await prune_tokens(db, clock) == 0
    reuse = await db.write(
        rotate_token,
        presented=first,
        replacement=new_refresh_token()[1],
        client_id=client_id,
        now=clock.now,
        refresh_ttl=TTL,
        grace=0,
    )
    assert reuse.outcome == "reuse"
    clock.advance(2)
    assert await prune_tokens(db, clock) == 1
    assert await db.read(count, RefreshToken) == 1


async def test_revoked_families_are_kept_until_they_expire(db: Database, clock: Clock) -> None:
    from authority.sessions.families import revoke_family

    user_id, client_id = await setup_user(db)
    await new_family(db, user_id, client_id, clock.now)
    family_id = await db.read(lambda c: c.execute(select(RefreshFamily.id)).scalar_one())
    await db.write(revoke_family, family_id, "logout", clock.now)
    assert await prune_tokens(db, clock) == 0
    clock.advance(FAMILY_TTL)
    assert await prune_tokens(db, clock) == 2


async def test_expired_access_token_revocations_are_dropped(db: Database, clock: Clock) -> None:
    await db.write(revoke_access_token, "old", clock.now - 1)
    await db.write(revoke_access_token, "fresh", clock.now + 100)
    await db.write(revoke_access_token, "fresh", clock.now + 100)
    assert await prune_tokens(db, clock) == 1
    assert await db.read(lambda c: list(c.execute(select(RevokedAccessToken.jti)).scalars())) == [
        "fresh"
    ]
