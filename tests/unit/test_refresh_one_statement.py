"""A refresh rotation in one PostgreSQL statement (``authority.sessions.one_statement``):
it rotates a live token exactly as ``rotate_token`` would, changes nothing in every other
case (the transaction that follows decides), and steps aside when a grace sibling joined
the family while it waited for the family's lock, so the family never forks."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import Connection, select, text, update

from authority.accounts.users import set_active
from authority.sessions.families import Rotation, revoke_family, rotate_token
from authority.sessions.one_statement import rotate_live_token
from authority.sessions.refresh_tokens import new_refresh_token
from authority.sessions.service import rotate
from authority.storage.database import Database
from authority.storage.migrate import upgrade
from authority.storage.tables import RefreshFamily, RefreshToken
from tests.helpers.families import new_family

TTL, FAMILY_TTL, GRACE = 600, 3600, 10
NOW = 1_900_000_000.0


@pytest.fixture
def postgres_url(fresh_postgres_url: str) -> str:
    upgrade(fresh_postgres_url)
    return fresh_postgres_url


@pytest.fixture
async def db(postgres_url: str) -> AsyncIterator[Database]:
    database = Database(postgres_url)
    yield database
    await database.dispose()


async def login(db: Database, now: float = NOW, scope: str = "read write") -> tuple[str, bytes]:
    """A client and the first refresh token (its hash) of a new family."""
    client_id, token_hash, _ = await new_family(
        db,
        now=now,
        refresh_ttl=TTL,
        family_ttl=FAMILY_TTL,
        scope=scope,
        client_scopes=("read", "write", "admin"),
    )
    return client_id, token_hash


def params(client_id: str, presented: bytes, now: float = NOW, **extra: Any) -> dict[str, Any]:
    _, replacement = new_refresh_token()
    return {
        "presented": presented,
        "replacement": replacement,
        "client_id": client_id,
        "now": now,
        "refresh_ttl": TTL,
        "status_idx": 77,
        **extra,
    }


def tokens(conn: Connection) -> list[tuple[Any, ...]]:
    """Every refresh token row, in order: what a statement that changes nothing keeps."""
    columns = (RefreshToken.id, RefreshToken.parent_id, RefreshToken.consumed_at)
    return [tuple(row) for row in conn.execute(select(*columns).order_by(RefreshToken.id))]


async def test_a_live_token_is_rotated_in_one_statement_as_the_transaction_would(
    db: Database,
) -> None:
    client_id, r1 = await login(db)
    asked = params(client_id, r1, NOW + 5, scope=["read"], audience="default")
    row = await rotate_live_token(db, **asked)
    assert row is not None
    family_id, _, _, client, scope, audience, family_expires_at, expires_at = row
    assert (client, scope, audience) == (client_id, "read write", "default")
    assert family_expires_at == NOW + FAMILY_TTL
    assert expires_at == NOW + 5 + TTL
    stored = await db.read(
        lambda conn: conn.execute(
            select(RefreshToken.family_id, RefreshToken.status_idx, RefreshToken.parent_id).where(
                RefreshToken.token_hash == asked["replacement"]
            )
        ).one()
    )
    assert (stored.family_id, stored.status_idx) == (family_id, 77)
    # the presented token is consumed: presenting it again (past the grace) is reuse
    again = await rotate(db, grace=0, **params(client_id, r1, NOW + 6))
    assert again.outcome == "reuse"


async def test_the_new_token_never_outlives_its_family(db: Database) -> None:
    client_id, r1 = await login(db)
    await db.write(lambda conn: conn.execute(update(RefreshFamily).values(expires_at=NOW + 100)))
    row = await rotate_live_token(db, **params(client_id, r1, NOW + 50))
    assert row is not None
    assert row[7] == NOW + 100


async def test_with_a_sibling_presented_both_siblings_are_consumed(db: Database) -> None:
    client_id, r1 = await login(db)
    first = params(client_id, r1, NOW + 1)
    assert (await rotate(db, grace=GRACE, **first)).outcome == "rotated"
    second = params(client_id, r1, NOW + 2)
    assert (await rotate(db, grace=GRACE, **second)).outcome == "grace"
    assert await rotate_live_token(db, **params(client_id, second["replacement"])) is not None
    # its sibling went with it: using it now is reuse
    late = await rotate(db, grace=GRACE, **params(client_id, first["replacement"], NOW + 60))
    assert late.outcome == "reuse"


async def refuse(db: Database, client_id: str, presented: bytes, **extra: Any) -> None:
    """The statement does nothing for this request."""
    before = await db.read(tokens)
    assert await rotate_live_token(db, **params(client_id, presented, **extra)) is None
    assert await db.read(tokens) == before


async def test_every_request_but_a_live_token_presented_once_changes_nothing(
    db: Database,
) -> None:
    client_id, r1 = await login(db)
    await refuse(db, client_id, new_refresh_token()[1])  # unknown
    await refuse(db, "another-client", r1)
    await refuse(db, client_id, r1, scope=["read", "admin"])
    await refuse(db, client_id, r1, audience="elsewhere")
    await refuse(db, client_id, r1, now=NOW + TTL)  # the token expired
    consumed = params(client_id, r1)
    assert await rotate_live_token(db, **consumed) is not None
    await refuse(db, client_id, r1, now=NOW + 1)  # consumed: reuse or grace, not here
    live = consumed["replacement"]
    await db.write(lambda conn: conn.execute(update(RefreshFamily).values(expires_at=NOW + 10)))
    await refuse(db, client_id, live, now=NOW + 10)  # the family's lifetime is over
    await db.write(lambda conn: conn.execute(update(RefreshFamily).values(expires_at=NOW + 99)))
    user_id = await db.read(lambda conn: conn.execute(select(RefreshFamily.user_id)).scalar_one())
    await db.write(set_active, user_id, False)
    await refuse(db, client_id, live)
    await db.write(set_active, user_id, True)
    family_id = await db.read(lambda conn: conn.execute(select(RefreshFamily.id)).scalar_one())
    await db.write(revoke_family, family_id, "logout", NOW)
    await refuse(db, client_id, live)


async def test_a_refused_request_gets_the_transactions_answer(db: Database) -> None:
    client_id, r1 = await login(db)
    asked = await rotate(db, grace=GRACE, **params(client_id, r1, scope=["admin"]))
    assert asked.outcome == "scope"
    assert (await rotate(db, grace=GRACE, **params(client_id, r1))).outcome == "rotated"
    assert (await rotate(db, grace=GRACE, **params(client_id, r1, NOW + 1))).outcome == "grace"
    late = await rotate(db, grace=GRACE, **params(client_id, r1, NOW + GRACE + 1))
    assert late.outcome == "reuse"


async def test_twenty_simultaneous_refreshes_without_grace_have_exactly_one_winner(
    db: Database,
) -> None:
    client_id, r1 = await login(db)
    results: list[Rotation] = await asyncio.gather(
        *(rotate(db, grace=0, **params(client_id, r1)) for _ in range(20))
    )
    outcomes = [result.outcome for result in results]
    assert outcomes.count("rotated") == 1, outcomes
    assert set(outcomes) - {"rotated"} <= {"reuse", "revoked"}, outcomes


async def waiting_for_a_lock(db: Database) -> bool:
    for _ in range(200):
        waiting = await db.read(
            lambda conn: conn.execute(
                text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
            ).scalar_one()
        )
        if waiting:
            return True
        await asyncio.sleep(0.025)
    return False


async def test_a_grace_sibling_added_while_the_statement_waits_makes_it_step_aside(
    db: Database,
) -> None:
    """R1 was rotated to R2. A replay of R1 within the grace holds the family's lock
    while it adds the sibling S; a refresh with R2 starts meanwhile and waits for that
    lock. Had it consumed R2 alone, S would stay live beside R2's child: a fork."""
    client_id, r1 = await login(db)
    first = params(client_id, r1)
    assert (await rotate(db, grace=GRACE, **first)).outcome == "rotated"
    r2 = first["replacement"]
    replay = params(client_id, r1, NOW + 1)
    async with db.engine.connect() as holder:  # a transaction left open
        graced = await holder.run_sync(lambda conn: rotate_token(conn, grace=GRACE, **replay))
        assert graced.outcome == "grace"
        waiter = asyncio.create_task(rotate_live_token(db, **params(client_id, r2)))
        assert await waiting_for_a_lock(db)
        await holder.commit()
    assert await waiter is None  # it stepped aside, and changed nothing
    assert await db.read(unconsumed) == {r2, replay["replacement"]}
    # the transaction that follows consumes R2 with its new sibling S
    assert (await rotate(db, grace=GRACE, **params(client_id, r2, NOW + 2))).outcome == "rotated"
    late = await rotate(db, grace=GRACE, **params(client_id, replay["replacement"], NOW + 60))
    assert late.outcome == "reuse"


def parent_of(conn: Connection, token_hash: bytes) -> int | None:
    parent = select(RefreshToken.parent_id).where(RefreshToken.token_hash == token_hash)
    return conn.execute(parent).scalar_one()


def unconsumed(conn: Connection) -> set[bytes]:
    hashes = select(RefreshToken.token_hash).where(RefreshToken.consumed_at.is_(None))
    return set(conn.execute(hashes).scalars())


# --- batches: the rotations of one turn of the event loop in one statement -------------


async def test_rotations_of_one_turn_are_one_statement_each_answered_alone(db: Database) -> None:
    """Live tokens of eight families, an unknown token and a foreign client's request,
    sent together: each live one is rotated, the others get None and change nothing."""
    families = [await login(db) for _ in range(8)]
    asked = [params(client_id, token) for client_id, token in families]
    unknown = params(families[0][0], new_refresh_token()[1])
    foreign = params("another-client", (await login(db))[1])
    rows = await asyncio.gather(
        *(rotate_live_token(db, **each) for each in [unknown, *asked, foreign])
    )
    assert rows[0] is None
    assert rows[-1] is None
    for (client_id, _), each, row in zip(families, asked, rows[1:-1], strict=True):
        assert row is not None
        assert row[3] == client_id
        assert await db.read(parent_of, each["replacement"]) is not None
    consumed = await db.read(unconsumed)
    assert not {each["presented"] for each in asked} & consumed


async def test_two_requests_of_one_family_in_a_batch_step_aside_together(db: Database) -> None:
    """Siblings of one family, or one token twice, in the same batch: one statement
    cannot decide between them (each would consume the other), so neither is rotated
    there, nothing changes, and the transactions that follow decide one at a time."""
    client_id, r1 = await login(db)
    first = params(client_id, r1)
    assert (await rotate(db, grace=GRACE, **first)).outcome == "rotated"
    second = params(client_id, r1, NOW + 1)
    assert (await rotate(db, grace=GRACE, **second)).outcome == "grace"
    before = await db.read(tokens)
    siblings = [params(client_id, first["replacement"]), params(client_id, second["replacement"])]
    assert await asyncio.gather(*(rotate_live_token(db, **each) for each in siblings)) == [
        None,
        None,
    ]
    twice = [params(client_id, first["replacement"]) for _ in range(2)]
    assert await asyncio.gather(*(rotate_live_token(db, **each) for each in twice)) == [None, None]
    assert await db.read(tokens) == before
    outcomes = await asyncio.gather(*(rotate(db, grace=0, **each) for each in siblings))
    assert sorted(result.outcome for result in outcomes) == ["reuse", "rotated"]


async def test_the_rotation_keeps_one_generic_plan(db: Database) -> None:
    """PostgreSQL would plan the statement anew on every call (a custom plan costs it
    more than running the statement): the hot path's connections keep a generic one."""
    client_id, token = await login(db)
    for i in range(8):
        asked = params(client_id, token, NOW + i)
        assert await rotate_live_token(db, **asked) is not None
        token = asked["replacement"]
    assert db.hot_engine is not None
    async with db.hot_engine.connect() as conn:
        plans = (
            await conn.execute(
                text(
                    "SELECT generic_plans, custom_plans FROM pg_prepared_statements "
                    "WHERE statement LIKE '%WITH asked AS%'"
                )
            )
        ).all()
    assert plans
    assert sum(row.custom_plans for row in plans) == 0, plans
    assert sum(row.generic_plans for row in plans) >= 8


async def test_a_batch_caught_in_a_deadlock_steps_aside_and_changes_nothing(
    db: Database,
) -> None:
    """A batch locks its families in order; another writer holding one of them and then
    asking for another the batch holds is a deadlock, which PostgreSQL breaks by failing
    one side. When that is the batch, its requests go to the transaction, not to a 503."""
    (client_a, ra), (client_b, rb) = await login(db), await login(db)
    pairs = select(RefreshToken.token_hash, RefreshToken.family_id)
    ids: dict[bytes, str] = await db.read(
        lambda conn: {row.token_hash: row.family_id for row in conn.execute(pairs)}
    )
    low, high = sorted([ids[ra], ids[rb]])
    before = await db.read(tokens)
    lock = "SELECT id FROM refresh_families WHERE id = :id FOR UPDATE"
    async with db.engine.connect() as holder:
        await holder.execute(text(lock), {"id": high})
        batch = asyncio.gather(
            rotate_live_token(db, **params(client_a, ra)),
            rotate_live_token(db, **params(client_b, rb)),
        )
        assert await waiting_for_a_lock(db)  # the batch holds `low`, waits for `high`
        crossing = asyncio.ensure_future(holder.execute(text(lock), {"id": low}))
        assert list(await batch) == [None, None]
        await crossing  # the batch gave way: the holder has both
        await holder.rollback()
    assert await db.read(tokens) == before
    assert (await rotate(db, grace=0, **params(client_a, ra))).outcome == "rotated"


async def test_a_database_let_go_is_not_kept_by_its_batches(postgres_url: str) -> None:
    """The batches of a database are kept beside it, by a weak reference: a test's or a
    command's database, disposed and dropped, is freed with its engines."""
    database = Database(postgres_url)
    client_id, token = await login(database)
    assert await rotate_live_token(database, **params(client_id, token)) is not None
    await database.dispose()
    dropped = weakref.ref(database)
    del database
    gc.collect()
    assert dropped() is None
