"""One contract, every key store backend: files, and the database on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
import json
import stat
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from sqlalchemy import update

from authority.signing.database_store import DatabaseKeyStore
from authority.signing.file_store import FileKeyStore
from authority.signing.keys import generate
from authority.signing.records import KeyRecord, KeyStore, KeyStoreError
from authority.storage.database import create_engine
from authority.storage.migrate import upgrade
from authority.storage.tables import StoredKey
from authority.verifier.algorithms import ALGORITHMS

PASSPHRASE = "contract-passphrase"
Make = Callable[..., KeyRecord]


@pytest.fixture(params=list(ALGORITHMS))
def make(request: pytest.FixtureRequest) -> Make:
    """Every contract holds for keys of every algorithm."""
    algorithm = ALGORITHMS[request.param]

    def record(activate_at: float = 100.0) -> KeyRecord:
        return generate(2048, PASSPHRASE, activate_at=activate_at, now=50.0, algorithm=algorithm)

    return record


@pytest.fixture(params=["file", "sqlite", "postgresql"])
async def stores(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[KeyStore, KeyStore]]:
    """Two independent handles on one store, as two processes would have."""
    if request.param == "file":
        (tmp_path / "keys").mkdir()
        yield FileKeyStore(tmp_path / "keys"), FileKeyStore(tmp_path / "keys")
        return
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'a.db'}"
    else:
        url = request.getfixturevalue("fresh_postgres_url")
    await asyncio.to_thread(upgrade, url)
    engines = [create_engine(url), create_engine(url)]
    try:
        yield DatabaseKeyStore(engines[0]), DatabaseKeyStore(engines[1])
    finally:
        for engine in engines:
            await engine.dispose()


@pytest.fixture
def store(stores: tuple[KeyStore, KeyStore]) -> KeyStore:
    return stores[0]


async def test_empty_store_loads_no_keys(store: KeyStore) -> None:
    assert await store.load() == []


async def test_added_key_loads_back_identical(make: Make, store: KeyStore) -> None:
    key = make()
    async with store.transaction() as tx:
        await tx.add(key)
    assert await store.load() == [key]
    assert (await store.load())[0].encrypted


async def test_fingerprint_changes_with_every_change_and_only_then(
    make: Make, store: KeyStore
) -> None:
    key = make()
    seen = [await store.fingerprint()]
    assert await store.fingerprint() == seen[-1]
    async with store.transaction() as tx:
        await tx.add(key)
    seen.append(await store.fingerprint())
    async with store.transaction() as tx:
        await tx.set_activate_at(key.kid, 200.0)
    seen.append(await store.fingerprint())
    async with store.transaction() as tx:
        await tx.delete(key.kid)
    seen.append(await store.fingerprint())
    assert all(before != after for before, after in itertools.pairwise(seen))


async def test_transaction_that_changes_nothing_keeps_the_fingerprint(
    make: Make, store: KeyStore
) -> None:
    async with store.transaction() as tx:
        await tx.add(make())
    before = await store.fingerprint()
    async with store.transaction() as tx:
        await tx.records()
    assert await store.fingerprint() == before


async def test_set_activate_at_moves_only_that_key(make: Make, store: KeyStore) -> None:
    a, b = make(100.0), make(100.0)
    async with store.transaction() as tx:
        await tx.add(a)
        await tx.add(b)
        await tx.set_activate_at(a.kid, 300.0)
    loaded = {r.kid: r for r in await store.load()}
    assert loaded[a.kid].activate_at == 300.0
    assert loaded[b.kid].activate_at == 100.0
    assert loaded[a.kid].private_pem == a.private_pem


async def test_set_private_pem_replaces_only_that_keys_pem_and_changes_the_fingerprint(
    make: Make,
    store: KeyStore,
) -> None:
    a, b = make(100.0), make(200.0)
    async with store.transaction() as tx:
        await tx.add(a)
        await tx.add(b)
    before = await store.fingerprint()
    other = make(100.0).private_pem
    async with store.transaction() as tx:
        await tx.set_private_pem(a.kid, other)
    loaded = {r.kid: r for r in await store.load()}
    assert loaded[a.kid].private_pem == other
    assert (loaded[a.kid].activate_at, loaded[a.kid].public_jwk) == (100.0, a.public_jwk)
    assert loaded[b.kid] == b
    assert await store.fingerprint() != before


async def test_deleted_key_is_gone(make: Make, store: KeyStore) -> None:
    a, b = make(), make()
    async with store.transaction() as tx:
        await tx.add(a)
        await tx.add(b)
    async with store.transaction() as tx:
        await tx.delete(a.kid)
    assert [r.kid for r in await store.load()] == [b.kid]


async def test_second_transaction_waits_for_the_first_and_sees_its_write(
    make: Make,
    stores: tuple[KeyStore, KeyStore],
) -> None:
    first_inside = asyncio.Event()
    key = make()

    async def first() -> None:
        async with stores[0].transaction() as tx:
            first_inside.set()
            await asyncio.sleep(0.4)
            await tx.add(key)

    async def second() -> list[str]:
        await first_inside.wait()
        async with stores[1].transaction() as tx:
            return [r.kid for r in await tx.records()]

    _, seen = await asyncio.gather(first(), second())
    assert seen == [key.kid]


@pytest.mark.parametrize("kid", ["../../etc/passwd", "x' OR 1=1--", "", "a" * 10_000])
async def test_a_kid_is_never_used_as_a_path_or_sql(make: Make, store: KeyStore, kid: str) -> None:
    async with store.transaction() as tx:
        await tx.add(make())
        with pytest.raises(KeyStoreError, match="invalid kid"):
            await tx.delete(kid)
        with pytest.raises(KeyStoreError, match="invalid kid"):
            await tx.set_activate_at(kid, 1.0)
    assert len(await store.load()) == 1


async def test_corrupted_key_is_one_clear_error(make: Make, store: KeyStore) -> None:
    key = make()
    async with store.transaction() as tx:
        await tx.add(key)
    if isinstance(store, FileKeyStore):
        (store.directory / f"{key.kid}.json").write_text('{"kid": "truncat')
    else:
        assert isinstance(store, DatabaseKeyStore)
        async with store.sessions() as session, session.begin():
            await session.execute(update(StoredKey).values(public_jwk="not json"))
    with pytest.raises(KeyStoreError, match=f"{key.kid}.*corrupted"):
        await store.load()


async def test_key_with_a_foreign_public_key_is_refused(make: Make, store: KeyStore) -> None:
    key, other = make(), make()
    async with store.transaction() as tx:
        await tx.add(key)
    if isinstance(store, FileKeyStore):
        path = store.directory / f"{key.kid}.json"
        data = json.loads(path.read_text())
        data["public_jwk"] = other.public_jwk
        path.write_text(json.dumps(data))
    else:
        assert isinstance(store, DatabaseKeyStore)
        async with store.sessions() as session, session.begin():
            await session.execute(update(StoredKey).values(public_jwk=json.dumps(other.public_jwk)))
    with pytest.raises(KeyStoreError, match="does not match its kid"):
        await store.load()


# --- file store specifics ------------------------------------------------------------


async def test_key_files_are_private_and_no_temp_files_remain(make: Make, tmp_path: Path) -> None:
    store = FileKeyStore(tmp_path)
    key = make()
    async with store.transaction() as tx:
        await tx.add(key)
        await tx.set_activate_at(key.kid, 5.0)
    path = tmp_path / f"{key.kid}.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # A kid may begin with "-", which sorts before ".lock": compare sets, not order.
    assert {p.name for p in tmp_path.iterdir()} == {".lock", path.name}
    assert b"ENCRYPTED PRIVATE KEY" in path.read_bytes()


async def test_stale_temp_files_from_a_crash_are_ignored_then_removed(tmp_path: Path) -> None:
    store = FileKeyStore(tmp_path)
    stale = tmp_path / ".abc.json.tmp-0000"
    stale.write_text("half a key")
    (tmp_path / "README").write_text("not a key")
    assert await store.load() == []
    async with store.transaction():
        pass
    assert not stale.exists()
    assert (tmp_path / "README").exists()


async def test_missing_keys_directory_is_one_clear_error(tmp_path: Path) -> None:
    store = FileKeyStore(tmp_path / "nowhere")
    with pytest.raises(KeyStoreError, match="does not exist"):
        await store.load()
    with pytest.raises(KeyStoreError, match="does not exist"):
        await store.check_writable()


async def test_unmigrated_database_is_one_clear_error(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
    try:
        with pytest.raises(KeyStoreError):
            await DatabaseKeyStore(engine).load()
    finally:
        await engine.dispose()
