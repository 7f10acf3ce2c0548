"""The DPoP binding of a refresh family is decided in its rotation
(``authority.sessions.binding``), on every backend and both PostgreSQL paths: a family
bound to a key refuses a refresh without a proof by it and that refusal changes
nothing (no consumed token, no reuse detection, no revoked family); a first bind is
written with the rotation; a family keeps the key it was first bound to."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import Connection, select

from authority.sessions.refresh_tokens import new_refresh_token
from authority.sessions.service import rotate
from authority.storage.database import Database
from authority.storage.tables import RefreshFamily, RefreshToken
from tests.helpers.families import new_family

TTL, FAMILY_TTL, GRACE = 600, 3600, 10
NOW = 1_900_000_000.0
KEY, OTHER = "k" * 43, "o" * 43


@pytest.fixture
async def db(migrated_url: str) -> AsyncIterator[Database]:
    database = Database(migrated_url)
    yield database
    await database.dispose()


async def login(db: Database) -> tuple[str, bytes, str]:
    """A client, the first refresh token (its hash) of a new family, and its id."""
    return await new_family(
        db, now=NOW, refresh_ttl=TTL, family_ttl=FAMILY_TTL, client_scopes=("read",)
    )


async def refresh(
    db: Database, client_id: str, presented: bytes, now: float, **binding: Any
) -> tuple[str, bytes]:
    """The outcome of presenting ``presented`` through the service's whole rotation
    (on PostgreSQL the one statement first), and the replacement it would get."""
    _, replacement = new_refresh_token()
    result = await rotate(
        db,
        presented=presented,
        replacement=replacement,
        client_id=client_id,
        now=now,
        refresh_ttl=TTL,
        grace=GRACE,
        **binding,
    )
    return result.outcome, replacement


def family_row(family_id: str) -> Any:
    def read(conn: Connection) -> tuple[Any, ...]:
        columns = (RefreshFamily.dpop_jkt, RefreshFamily.revoked_at)
        return tuple(conn.execute(select(*columns).where(RefreshFamily.id == family_id)).one())

    return read


def token_rows(conn: Connection) -> list[tuple[Any, ...]]:
    columns = (RefreshToken.id, RefreshToken.parent_id, RefreshToken.consumed_at)
    return [tuple(row) for row in conn.execute(select(*columns).order_by(RefreshToken.id))]


async def test_a_refresh_with_a_proof_binds_an_unbound_family_when_asked(db: Database) -> None:
    client_id, r1, family_id = await login(db)
    outcome, r2 = await refresh(db, client_id, r1, NOW + 1, jkt=KEY)
    assert outcome == "rotated"
    assert await db.read(family_row(family_id)) == (None, None)  # not asked: not bound
    outcome, r3 = await refresh(db, client_id, r2, NOW + 2, jkt=KEY, bind_key=True)
    assert outcome == "rotated"
    assert await db.read(family_row(family_id)) == (KEY, None)
    # a family keeps the key it was first bound to
    assert (await refresh(db, client_id, r3, NOW + 3, jkt=OTHER, bind_key=True))[0] == "dpop"
    assert (await refresh(db, client_id, r3, NOW + 4, jkt=KEY, bind_key=True))[0] == "rotated"
    assert await db.read(family_row(family_id)) == (KEY, None)


async def test_a_refresh_without_the_key_changes_nothing_and_the_token_stays_good(
    db: Database,
) -> None:
    client_id, r1, family_id = await login(db)
    outcome, r2 = await refresh(db, client_id, r1, NOW + 1, jkt=KEY, bind_key=True)
    assert outcome == "rotated"
    before = await db.read(token_rows)
    for wrong in (None, OTHER):
        assert (await refresh(db, client_id, r2, NOW + 2, jkt=wrong))[0] == "dpop"
        assert (await refresh(db, client_id, r2, NOW + 2, jkt=wrong, bind_key=True))[0] == "dpop"
    assert await db.read(token_rows) == before
    assert await db.read(family_row(family_id)) == (KEY, None)
    assert (await refresh(db, client_id, r2, NOW + 3, jkt=KEY))[0] == "rotated"


async def test_a_consumed_token_without_the_key_is_no_reuse(db: Database) -> None:
    """A thief holding an old token but not the key cannot end the user's session."""
    client_id, r1, family_id = await login(db)
    _, r2 = await refresh(db, client_id, r1, NOW + 1, jkt=KEY, bind_key=True)
    _, r3 = await refresh(db, client_id, r2, NOW + 2, jkt=KEY)
    before = await db.read(token_rows)
    far = NOW + 100  # past the grace: with the key this would be reuse
    assert (await refresh(db, client_id, r1, far, jkt=OTHER))[0] == "dpop"
    assert (await refresh(db, client_id, r2, far))[0] == "dpop"
    assert await db.read(token_rows) == before
    assert await db.read(family_row(family_id)) == (KEY, None)
    assert (await refresh(db, client_id, r3, far, jkt=KEY))[0] == "rotated"


async def test_a_wrong_key_refresh_writes_nothing_in_any_path(db: Database) -> None:
    """Nor a grace sibling: within grace, the wrong key is refused before the grace."""
    client_id, r1, family_id = await login(db)
    assert (await refresh(db, client_id, r1, NOW + 1, jkt=KEY, bind_key=True))[0] == "rotated"
    before = await db.read(token_rows)
    assert (await refresh(db, client_id, r1, NOW + 2, jkt=OTHER, bind_key=True))[0] == "dpop"
    assert await db.read(token_rows) == before
    assert await db.read(family_row(family_id)) == (KEY, None)
    assert (await refresh(db, client_id, r1, NOW + 3, jkt=KEY))[0] == "grace"
