"""Status list indexes (``authority.status.store``, ``authority.status.indexes``): a
block is never leased again while a token issued from it can still verify, leasing it
again clears its old bits, and a bit is set only for the lease it was issued under."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import Connection

from authority.accounts.clients import create_client, set_client_active
from authority.settings import STATUS_BLOCK_SIZE, Settings
from authority.status.indexes import StatusIndexes
from authority.status.store import (
    BLOCK_USE,
    StatusListFull,
    block_hold,
    index_revoked,
    lease_block,
    record_client_tokens,
    revoke_index,
    revoked,
    set_client_bits,
)
from authority.storage.database import Database

SIZE = 4 * STATUS_BLOCK_SIZE
HOLD = block_hold(access_ttl=900, leeway=30)


@pytest.fixture
async def db(migrated_url: str) -> AsyncIterator[Database]:
    database = Database(migrated_url)
    yield database
    await database.dispose()


async def test_a_ring_hands_out_each_block_once_then_is_full_while_they_can_verify(
    db: Database,
) -> None:
    starts = [await db.write(lease_block, 1000.0 + i, SIZE, HOLD) for i in range(4)]
    assert sorted(starts) == [0, 1024, 2048, 3072]
    with pytest.raises(StatusListFull):
        await db.write(lease_block, 1000.0 + HOLD - 1, SIZE, HOLD)


async def test_the_oldest_block_comes_back_once_its_tokens_have_expired(db: Database) -> None:
    for i in range(4):
        await db.write(lease_block, 1000.0 + i, SIZE, HOLD)
    assert block_hold(900, 30) == BLOCK_USE + 930
    assert await db.write(lease_block, 1000.0 + HOLD, SIZE, HOLD) == 0
    with pytest.raises(StatusListFull):
        await db.write(lease_block, 1000.0 + HOLD, SIZE, HOLD)


async def test_leasing_a_block_again_clears_its_bits_and_only_its_own(db: Database) -> None:
    first = await db.write(lease_block, 1000.0, SIZE, HOLD)
    second = await db.write(lease_block, 1001.0, SIZE, HOLD)
    assert await db.write(revoke_index, first + 5, 1000.0, 1010.0)
    assert await db.write(revoke_index, second + 7, 1001.0, 1010.0)
    version, bits = await db.read(revoked)
    assert sorted(bits) == [first + 5, second + 7]
    again = await db.write(lease_block, 1000.0 + HOLD, SIZE, HOLD)
    assert again == first
    later, bits = await db.read(revoked)
    assert bits == [second + 7]
    assert later > version  # the replicas are told


async def test_a_token_of_an_earlier_lease_cannot_set_the_bit_of_the_new_holder(
    db: Database,
) -> None:
    start = await db.write(lease_block, 1000.0, STATUS_BLOCK_SIZE, HOLD)
    assert await db.write(lease_block, 1000.0 + HOLD, STATUS_BLOCK_SIZE, HOLD) == start
    assert not await db.write(revoke_index, start + 1, 1000.0, 1000.0 + HOLD + 5)
    assert (await db.read(revoked))[1] == []
    assert await db.write(revoke_index, start + 1, 1000.0 + HOLD, 1000.0 + HOLD + 5)


async def test_concurrent_allocations_of_one_replica_never_repeat_an_index(
    migrated_url: str,
) -> None:
    # Room for the blocks leased ahead too (one spare at a time).
    settings = Settings(database_url=migrated_url, env="test", status_list_size=2 * SIZE)
    db = Database(migrated_url)
    now = [1000.0]
    try:
        indexes = StatusIndexes(db, settings, lambda: now[0])
        got = await asyncio.gather(*(indexes.allocate() for _ in range(3000)))
        assert len(set(got)) == 3000
        assert max(got) < 2 * SIZE
        # A block is used for at most BLOCK_USE seconds, then another is leased.
        now[0] += BLOCK_USE
        assert await indexes.allocate() // STATUS_BLOCK_SIZE not in {
            i // STATUS_BLOCK_SIZE for i in got[-1:]
        }
    finally:
        await db.dispose()


async def test_the_next_block_is_leased_ahead_so_no_token_waits_for_a_lease(
    migrated_url: str,
) -> None:
    """Past half of a block the next one is leased in the background: the token that
    crosses into it takes an index without a database write of its own."""
    settings = Settings(database_url=migrated_url, env="test", status_list_size=SIZE)
    db = Database(migrated_url)
    writes: list[str] = []
    real_write = db.write

    async def counted(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        writes.append(fn.__name__)
        return await real_write(fn, *args, **kwargs)

    db.write = counted  # type: ignore[method-assign]
    indexes = StatusIndexes(db, settings, lambda: 1000.0)
    try:
        first = [await indexes.allocate() for _ in range(STATUS_BLOCK_SIZE // 2 + 1)]
        for _ in range(200):  # the lease ahead runs as its own task
            if writes.count("lease_block") == 2:
                break
            await asyncio.sleep(0.01)
        assert writes.count("lease_block") == 2
        rest = [await indexes.allocate() for _ in range(STATUS_BLOCK_SIZE // 2)]
        assert writes.count("lease_block") == 2  # the switch waited for no lease
        got = first + rest
        assert len(set(got)) == len(got)
        assert {i // STATUS_BLOCK_SIZE for i in got[:STATUS_BLOCK_SIZE]} == {
            first[0] // STATUS_BLOCK_SIZE
        }
        assert got[-1] // STATUS_BLOCK_SIZE != first[0] // STATUS_BLOCK_SIZE
    finally:
        await db.dispose()


async def test_two_replicas_never_share_a_block(migrated_url: str) -> None:
    settings = Settings(database_url=migrated_url, env="test", status_list_size=SIZE)
    db = Database(migrated_url)
    try:
        a, b = (StatusIndexes(db, settings, lambda: 1000.0) for _ in range(2))
        got_a = [await a.allocate() for _ in range(10)]
        got_b = [await b.allocate() for _ in range(10)]
        assert {i // STATUS_BLOCK_SIZE for i in got_a}.isdisjoint(
            {i // STATUS_BLOCK_SIZE for i in got_b}
        )
    finally:
        await db.dispose()


def _client(conn: Connection, name: str) -> str:
    return create_client(
        conn,
        name=name,
        secret_hash=b"\0" * 32,
        grant_types=["client_credentials"],
        scopes=["read"],
        audiences=[],
        now=1000.0,
    ).client_id


async def test_a_client_token_batch_after_the_client_was_disabled_sets_its_own_bits(
    db: Database,
) -> None:
    """``client_credentials`` tokens: disabling sets the bits of the batches written so
    far; a batch written later (issued from a stale client cache) sets its own."""
    start = await db.write(lease_block, 1000.0, SIZE, HOLD)
    svc, other = await db.write(_client, "svc"), await db.write(_client, "other")
    early = [(start, svc), (start + 1, other)]
    assert await db.write(record_client_tokens, early, 1001.0) == 0
    assert (await db.read(revoked))[1] == []
    await db.write(set_client_active, svc, False)
    assert await db.write(set_client_bits, svc, 1002.0) == 1
    assert (await db.read(revoked))[1] == [start]
    late = [(start + 2, svc), (start + 3, other), (start + 4, "deleted-client")]
    version, _ = await db.read(revoked)
    assert await db.write(record_client_tokens, late, 1003.0) == 2
    later, bits = await db.read(revoked)
    assert sorted(bits) == [start, start + 2, start + 4]
    assert later > version
    assert await db.read(index_revoked, start + 2, 1000.0)
    assert not await db.read(index_revoked, start + 3, 1000.0)


async def test_a_new_lease_forgets_the_client_tokens_of_the_old_one(db: Database) -> None:
    start = await db.write(lease_block, 1000.0, STATUS_BLOCK_SIZE, HOLD)
    svc = await db.write(_client, "svc")
    await db.write(record_client_tokens, [(start + 3, svc)], 1001.0)
    assert await db.write(lease_block, 1000.0 + HOLD, STATUS_BLOCK_SIZE, HOLD) == start
    assert await db.write(set_client_bits, svc, 1000.0 + HOLD + 1) == 0
    assert (await db.read(revoked))[1] == []


async def test_a_replica_writes_its_client_tokens_in_one_batch(
    migrated_url: str,
) -> None:
    settings = Settings(database_url=migrated_url, env="test", status_list_size=SIZE)
    db = Database(migrated_url)
    try:
        svc = await db.write(_client, "svc")
        await db.write(set_client_active, svc, False)
        indexes = StatusIndexes(db, settings, lambda: 1000.0)
        got = [await indexes.allocate_for_client(svc) for _ in range(3)]
        user = await indexes.allocate()
        assert (await db.read(revoked))[1] == []  # nothing written per token
        assert await indexes.flush() == 3
        assert sorted((await db.read(revoked))[1]) == got
        assert user not in (await db.read(revoked))[1]
        assert await indexes.flush() == 0
    finally:
        await db.dispose()
