"""The DPoP replay table (RFC 9449 section 11.1) on SQLite and PostgreSQL: of many
concurrent first uses of one proof, exactly one wins, and each other is one
``dpop.replayed`` event."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import Connection, func, select

from authority.grants.dpop import ProofLedger, remember_proof, remember_proofs
from authority.storage.database import Database, DatabaseUnavailable
from authority.storage.migrate import upgrade
from authority.storage.tables import AuditEvent, DpopProof


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'a.db'}"
    else:
        url = request.getfixturevalue("fresh_postgres_url")
    await asyncio.to_thread(upgrade, url)
    return Database(url)


def counts(conn: Connection) -> tuple[int, int]:
    proofs = conn.execute(select(func.count()).select_from(DpopProof)).scalar_one()
    replays = conn.execute(
        select(func.count()).select_from(AuditEvent).where(AuditEvent.type == "dpop.replayed")
    ).scalar_one()
    return proofs, replays


async def test_one_proof_is_accepted_once_however_many_try_at_once(db: Database) -> None:
    try:
        results = await asyncio.gather(
            *(db.write(remember_proof, "a" * 64, 1000.0, "svc") for _ in range(8))
        )
        assert sorted(results) == [False] * 7 + [True]
        assert await db.read(counts) == (1, 7)
        assert await db.write(remember_proof, "b" * 64, 1000.0, "svc")
    finally:
        await db.dispose()


async def test_a_batch_accepts_each_new_proof_once_and_refuses_the_rest(db: Database) -> None:
    try:
        assert await db.write(remember_proof, "k" * 64, 1000.0, "svc")
        batch = [("n" * 64, 1000.0, "a"), ("k" * 64, 1000.0, "b"), ("n" * 64, 1000.0, "c")]
        assert await db.write(remember_proofs, batch) == [True, False, False]
        assert await db.read(counts) == (2, 2)
    finally:
        await db.dispose()


async def test_the_ledger_accepts_one_of_many_concurrent_uses_of_a_proof(db: Database) -> None:
    ledger = ProofLedger(db)
    try:
        uses = [ledger.first_use("a" * 64, 1000.0, "svc") for _ in range(6)]
        others = [ledger.first_use(c * 64, 1000.0, "svc") for c in "bcd"]
        results = await asyncio.gather(*uses, *others)
        assert sorted(results[:6]) == [False] * 5 + [True]
        assert results[6:] == [True, True, True]
        assert await db.read(counts) == (4, 5)
        assert not await ledger.first_use("b" * 64, 1001.0, "svc")  # a later batch
    finally:
        await db.dispose()


async def test_a_failed_write_fails_every_use_waiting_for_it(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'a.db'}"
    await asyncio.to_thread(upgrade, url)
    db = Database(url)
    ledger = ProofLedger(db)

    def down(*_: object) -> None:
        raise DatabaseUnavailable("down")

    db.write = lambda *_args, **_kw: asyncio.to_thread(down)  # type: ignore[method-assign]
    try:
        results = await asyncio.gather(
            *(ledger.first_use(c * 64, 1000.0, "svc") for c in "abc"), return_exceptions=True
        )
        assert all(isinstance(r, DatabaseUnavailable) for r in results)
    finally:
        await db.dispose()
