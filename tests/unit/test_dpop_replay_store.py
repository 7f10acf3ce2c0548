"""The DPoP replay table (RFC 9449 section 11.1) on SQLite and PostgreSQL: of many
concurrent first uses of one proof, exactly one wins, and each other is one
``dpop.replayed`` event."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import Connection, func, select

from authority.grants.dpop import remember_proof
from authority.storage.database import Database
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
