"""Private keys encrypted at rest (README, "Signing keys"): production refuses a short
``KEY_PASSPHRASE`` and any stored key that is not encrypted; ``authority keys encrypt``
brings every key under the current passphrase, one key per atomic step under the
store's lock, so an interrupted run leaves a store that loads and a second run ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from authority.settings import Settings
from authority.signing.database_store import DatabaseKeyStore
from authority.signing.encryption import EncryptStep, encrypt_keys
from authority.signing.file_store import FileKeyStore
from authority.signing.keys import decrypt, private_pem
from authority.signing.manager import KeyManager
from authority.signing.records import (
    KeyRecord,
    KeyStore,
    KeyStoreError,
    KeyTransaction,
    thumbprint,
)
from authority.storage.database import create_engine
from authority.storage.migrate import upgrade
from authority.verifier.algorithms import RS256
from tests.helpers.verifier import rsa_key

OLD = "the old passphrase, 32 characters"
NEW = "the new passphrase, 32 characters"
NOW = 1_000_000.0


@pytest.fixture(params=["file", "sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[KeyStore]:
    if request.param == "file":
        (tmp_path / "keys").mkdir()
        yield FileKeyStore(tmp_path / "keys")
        return
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'a.db'}"
    else:
        url = request.getfixturevalue("fresh_postgres_url")
    await asyncio.to_thread(upgrade, url)
    engine = create_engine(url)
    try:
        yield DatabaseKeyStore(engine)
    finally:
        await engine.dispose()


def production(passphrase: str | None = NEW) -> Settings:
    return Settings(
        env="production",
        issuer="https://auth.example",
        key_passphrase=passphrase,
        secret_key="s" * 40,
    )


def record(number: int, passphrase: str | None, activate_at: float) -> KeyRecord:
    """Key ``number`` of the test run (generated once) stored as ``generate`` stores it."""
    key = rsa_key(number)
    pem = private_pem(key, passphrase)
    jwk = RS256.public_jwk(key.public_key())
    return KeyRecord(thumbprint(jwk), 2048, NOW - 100, activate_at, pem, jwk)


async def fill(store: KeyStore, passphrases: list[str | None]) -> list[KeyRecord]:
    """One key per passphrase (None: not encrypted), the last one current."""
    present = len(await store.load())
    records = [record(present + i, p, NOW - 100 + present + i) for i, p in enumerate(passphrases)]
    async with store.transaction() as tx:
        for r in records:
            await tx.add(r)
    return records


async def opens_with(store: KeyStore) -> dict[str, str | None]:
    """For each stored key, the passphrase among NEW, OLD and none that opens it."""
    found: dict[str, str | None] = {}
    for record in await store.load():
        for candidate in (NEW, OLD, None):
            with contextlib.suppress(KeyStoreError):
                if (candidate is None) != record.encrypted:
                    decrypt(record, candidate)
                    found[record.kid] = candidate
                    break
        else:
            raise AssertionError(f"key {record.kid} opens with no passphrase")
    return found


async def loads_in_production(store: KeyStore, passphrase: str = NEW) -> str | None:
    """The one-line refusal of a production start, or None when it would start."""
    try:
        await KeyManager(store, production(passphrase), clock=lambda: NOW).load()
    except KeyStoreError as exc:
        return str(exc)
    return None


# --- production refuses ---------------------------------------------------------------


@pytest.mark.parametrize("length", [1, 8, 15])
def test_production_refuses_a_key_passphrase_shorter_than_16_characters(length: int) -> None:
    problems = production("p" * length).production_problems()
    assert problems == ["AUTHORITY_KEY_PASSPHRASE must be at least 16 characters in production"]


def test_production_accepts_a_key_passphrase_of_16_characters() -> None:
    assert production("p" * 16).production_problems() == []


def test_a_short_passphrase_is_still_allowed_outside_production() -> None:
    assert Settings(issuer="http://a", key_passphrase="p").production_problems() == []


async def test_production_refuses_a_store_holding_an_unencrypted_key(store: KeyStore) -> None:
    plain = (await fill(store, [NEW, None, NEW]))[1]
    problem = await loads_in_production(store)
    assert problem is not None
    assert f"key {plain.kid} in {store.description} is not encrypted" in problem
    assert "authority keys encrypt" in problem
    assert "\n" not in problem


async def test_production_refuses_a_store_made_without_a_passphrase(store: KeyStore) -> None:
    await fill(store, [None, None])
    problem = await loads_in_production(store)
    assert problem is not None
    assert "and 1 more" in problem


async def test_an_unencrypted_key_is_still_loaded_outside_production(store: KeyStore) -> None:
    await fill(store, [None])
    settings = Settings(issuer="http://a", key_passphrase=None)
    await KeyManager(store, settings, clock=lambda: NOW).load()


async def test_a_running_production_server_ignores_an_unencrypted_key_added_later(
    store: KeyStore,
) -> None:
    await fill(store, [NEW])
    manager = KeyManager(store, production(), clock=lambda: NOW)
    await manager.load()
    ring = manager.current_ring()
    await fill(store, [None])
    assert await manager.reload() is False
    assert manager.current_ring() is ring, "it keeps signing with the keys it loaded"
    assert manager.problem is not None
    assert "is not encrypted" in manager.problem


# --- authority keys encrypt -----------------------------------------------------------


async def test_encrypt_brings_plain_and_old_keys_under_the_new_passphrase(
    store: KeyStore,
) -> None:
    records = await fill(store, [None, OLD, NEW, None])
    seen: list[EncryptStep] = []
    steps = await encrypt_keys(store, NEW, [OLD], seen.append)
    assert seen == steps
    assert [(s.kid, s.outcome) for s in steps] == [
        (records[0].kid, "encrypted"),
        (records[1].kid, "re-encrypted"),
        (records[2].kid, "unchanged"),
        (records[3].kid, "encrypted"),
    ]
    assert set((await opens_with(store)).values()) == {NEW}
    assert await loads_in_production(store) is None
    assert [s.outcome for s in await encrypt_keys(store, NEW)] == ["unchanged"] * 4


async def test_encrypt_keeps_every_kid_and_public_key(store: KeyStore) -> None:
    before = {r.kid: r.public_jwk for r in await fill(store, [None, OLD])}
    await encrypt_keys(store, NEW, [OLD])
    assert {r.kid: r.public_jwk for r in await store.load()} == before


async def test_a_key_under_an_unknown_passphrase_stops_encrypt_with_one_line(
    store: KeyStore,
) -> None:
    records = await fill(store, [None, OLD])
    with pytest.raises(KeyStoreError) as caught:
        await encrypt_keys(store, NEW)
    assert f"cannot decrypt key {records[1].kid}" in str(caught.value)
    assert "--old-passphrase-stdin" in str(caught.value)
    assert OLD not in str(caught.value)
    assert NEW not in str(caught.value)


class _FailsAfter:
    """The store, except that the ``n``-th rewrite of a key fails (a crash mid-way)."""

    def __init__(self, store: KeyStore, n: int):
        self.inner, self.left = store, n
        self.description = store.description

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def load(self) -> list[KeyRecord]:
        return await self.inner.load()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[KeyTransaction]:
        async with self.inner.transaction() as tx:
            original: Callable[[str, bytes], Any] = tx.set_private_pem

            async def set_private_pem(kid: str, pem: bytes) -> None:
                self.left -= 1
                if self.left == 0:
                    raise KeyStoreError("injected failure")
                await original(kid, pem)

            tx.set_private_pem = set_private_pem  # type: ignore[method-assign,assignment]
            yield tx


@pytest.mark.parametrize("fail_at", [1, 3])
async def test_an_interrupted_encrypt_leaves_a_loadable_store_and_a_second_run_finishes(
    store: KeyStore, fail_at: int
) -> None:
    records = await fill(store, [OLD, OLD, OLD])
    with pytest.raises(KeyStoreError, match="injected failure"):
        await encrypt_keys(_FailsAfter(store, fail_at), NEW, [OLD])
    opened = await opens_with(store)
    assert [opened[r.kid] for r in records] == [NEW] * (fail_at - 1) + [OLD] * (4 - fail_at)
    assert await loads_in_production(store) is not None, "not all keys open with NEW yet"
    steps = await encrypt_keys(store, NEW, [OLD])
    assert [s.outcome for s in steps] == ["unchanged"] * (fail_at - 1) + ["re-encrypted"] * (
        4 - fail_at
    )
    assert set((await opens_with(store)).values()) == {NEW}
    assert await loads_in_production(store) is None
