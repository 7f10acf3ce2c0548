"""The client cache's reads (``authority.accounts.clients.ClientCache``): the requests of
one client that find its record expired share one read instead of reading it each, and
a request refused by a cached record still gets a read that started after it asked, so
a new secret works at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from authority.accounts.clients import ClientCache, create_client, hash_secret, rotate_secret
from authority.storage.database import Database

KEY = b"k" * 32
NOW = 1_900_000_000.0


class CountedReads:
    """The real database's reads, counted; with ``hold`` cleared, a read that has read
    waits before it answers (a slow read under way)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.reads = 0
        self.hold = asyncio.Event()
        self.hold.set()

    async def read(self, fn: Any, /, *args: Any) -> Any:
        self.reads += 1
        result = await self.db.read(fn, *args)
        await self.hold.wait()
        return result


@pytest.fixture
async def db(sqlite_url: str) -> AsyncIterator[Database]:
    database = Database(sqlite_url)
    yield database
    await database.dispose()


async def new_client(db: Database, secret: str) -> str:
    client = await db.write(
        create_client,
        name="api",
        secret_hash=hash_secret(KEY, secret),
        grant_types=["client_credentials"],
        scopes=["read"],
        audiences=[],
        now=NOW,
    )
    return client.client_id


async def test_requests_that_find_the_record_expired_share_one_read(db: Database) -> None:
    client_id = await new_client(db, "s1")
    cache, reads = ClientCache(), CountedReads(db)
    found = await asyncio.gather(
        *(cache.authenticate(reads, client_id, "s1", key=KEY, now=NOW) for _ in range(20))
    )
    assert all(client is not None and client.client_id == client_id for client in found)
    assert reads.reads == 1
    later = NOW + cache.ttl + 1  # expired: one more read, for all of them again
    await asyncio.gather(
        *(cache.authenticate(reads, client_id, "s1", key=KEY, now=later) for _ in range(20))
    )
    assert reads.reads == 2


async def test_a_read_under_way_when_the_secret_changed_does_not_answer_the_new_secret(
    db: Database,
) -> None:
    client_id = await new_client(db, "old")
    cache, reads = ClientCache(), CountedReads(db)
    reads.hold.clear()
    first = asyncio.ensure_future(cache.authenticate(reads, client_id, "old", key=KEY, now=NOW))
    while reads.reads == 0:
        await asyncio.sleep(0.001)
    await asyncio.sleep(0.05)  # it has read the record with the old secret, and waits
    await db.write(rotate_secret, client_id, hash_secret(KEY, "new"), NOW, 0)
    second = asyncio.ensure_future(cache.authenticate(reads, client_id, "new", key=KEY, now=NOW))
    await asyncio.sleep(0.01)
    reads.hold.set()
    assert await first is not None  # it asked before the change
    assert await second is not None  # its own read, started after it asked
    assert reads.reads == 2


async def test_a_caller_that_goes_away_leaves_the_read_to_the_others(db: Database) -> None:
    client_id = await new_client(db, "s1")
    cache, reads = ClientCache(), CountedReads(db)
    reads.hold.clear()
    callers = [
        asyncio.ensure_future(cache.authenticate(reads, client_id, "s1", key=KEY, now=NOW))
        for _ in range(3)
    ]
    while reads.reads == 0:
        await asyncio.sleep(0.001)
    callers[0].cancel()
    reads.hold.set()
    assert [client is not None for client in await asyncio.gather(*callers[1:])] == [True, True]
    assert callers[0].cancelled()
    assert reads.reads == 1
