"""The database key store: keys in the ``signing_keys`` table, shared by replicas on
several machines; steps serialized by a row lock on ``keystore_state``."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator

from sqlalchemy import delete, select, update
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from authority.signing.records import (
    KeyRecord,
    KeyStoreError,
    KeyTransaction,
    check_record,
    checked_kid,
    public_jwk_members,
)
from authority.storage.database import describe_db_error
from authority.storage.tables import KeystoreState, StoredKey


class DatabaseKeyStore:
    """Keys in the ``signing_keys`` table, for replicas on several machines."""

    def __init__(self, engine: AsyncEngine):
        self.engine = engine
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)
        self.description = "database"

    async def load(self) -> list[KeyRecord]:
        async with self._errors(), self.sessions() as session:
            rows = (await session.scalars(select(StoredKey))).all()
        records = [_record_of(row) for row in rows]
        for record in records:
            check_record(record)
        return records

    async def fingerprint(self) -> str:
        async with self._errors(), self.sessions() as session:
            version = await session.scalar(
                select(KeystoreState.version).where(KeystoreState.id == 1)
            )
        if version is None:
            raise KeyStoreError("database is not migrated (run `authority db upgrade`)")
        return str(version)

    async def check_writable(self) -> None:
        await self.fingerprint()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[KeyTransaction]:
        async with self._errors(), self.sessions() as session, session.begin():
            # Taking the row lock first serializes every step across replicas
            # (a row lock in PostgreSQL, the database write lock in SQLite).
            locked = await session.execute(
                update(KeystoreState)
                .where(KeystoreState.id == 1)
                .values(version=KeystoreState.version)
            )
            if getattr(locked, "rowcount", 0) != 1:
                raise KeyStoreError("database is not migrated (run `authority db upgrade`)")
            tx = _DatabaseTransaction(session)
            yield tx
            if tx.changed:
                await session.execute(
                    update(KeystoreState)
                    .where(KeystoreState.id == 1)
                    .values(version=KeystoreState.version + 1)
                )

    @contextlib.asynccontextmanager
    async def _errors(self) -> AsyncIterator[None]:
        try:
            yield
        except (OSError, TimeoutError, PoolTimeout, OperationalError, DBAPIError) as exc:
            raise KeyStoreError(describe_db_error(exc)) from None


def _record_of(row: StoredKey) -> KeyRecord:
    try:
        return KeyRecord(
            row.kid,
            row.size,
            row.created_at,
            row.activate_at,
            row.private_pem,
            public_jwk_members(json.loads(row.public_jwk)),
        )
    except (ValueError, KeyError, TypeError):
        raise KeyStoreError(f"key {row.kid[:60]!r} in the database is corrupted") from None


class _DatabaseTransaction:
    def __init__(self, session: AsyncSession):
        self.session = session
        self.changed = False

    async def records(self) -> list[KeyRecord]:
        rows = (await self.session.scalars(select(StoredKey))).all()
        return [_record_of(row) for row in rows]

    async def add(self, record: KeyRecord) -> None:
        self.session.add(
            StoredKey(
                kid=checked_kid(record.kid),
                size=record.size,
                created_at=record.created_at,
                activate_at=record.activate_at,
                private_pem=record.private_pem,
                public_jwk=json.dumps(record.public_jwk),
            )
        )
        await self.session.flush()
        self.changed = True

    async def set_activate_at(self, kid: str, activate_at: float) -> None:
        await self.session.execute(
            update(StoredKey)
            .where(StoredKey.kid == checked_kid(kid))
            .values(activate_at=activate_at)
        )
        self.changed = True

    async def set_private_pem(self, kid: str, private_pem: bytes) -> None:
        await self.session.execute(
            update(StoredKey)
            .where(StoredKey.kid == checked_kid(kid))
            .values(private_pem=private_pem)
        )
        self.changed = True

    async def delete(self, kid: str) -> None:
        await self.session.execute(delete(StoredKey).where(StoredKey.kid == checked_kid(kid)))
        self.changed = True
