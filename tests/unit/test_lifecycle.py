"""The key lifecycle of README, "Signing keys": next -> current -> retired -> removed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from authority.settings import Settings
from authority.signing.file_store import FileKeyStore
from authority.signing.manager import (
    KeyManager,
    auto_rotate,
    ensure_key,
    prune,
    revoke,
    rotate,
    statuses,
)
from authority.signing.records import KeyStoreError
from tests.helpers.clock import Clock

SETTINGS = Settings(
    env="test",
    access_ttl=900,
    jwks_max_age=300,
    leeway=30,
    key_publish_delay=600,
    key_rotation_interval=86400,
)
RETIRED_FOR = 900 + 300 + 30


@pytest.fixture
def store(tmp_path: Path) -> FileKeyStore:
    return FileKeyStore(tmp_path)


async def states(store: FileKeyStore, clock: Clock) -> dict[str, str]:
    return {s.record.kid: s.state for s in statuses(await store.load(), SETTINGS, clock())}


async def test_first_key_is_current_at_once_and_ensure_is_idempotent(
    store: FileKeyStore, clock: Clock
) -> None:
    first = await ensure_key(store, SETTINGS, clock)
    assert first is not None
    assert await states(store, clock) == {first.kid: "current"}
    assert await ensure_key(store, SETTINGS, clock) is None
    assert len(await store.load()) == 1


async def test_next_key_becomes_current_after_the_publish_delay(
    store: FileKeyStore, clock: Clock
) -> None:
    first = await ensure_key(store, SETTINGS, clock)
    assert first is not None
    new = await rotate(store, SETTINGS, clock=clock)
    assert new.outcome == "created"
    assert await states(store, clock) == {first.kid: "current", new.kid: "next"}
    clock.advance(599)
    assert (await states(store, clock))[new.kid] == "next"
    clock.advance(1)
    assert await states(store, clock) == {first.kid: "retired", new.kid: "current"}


async def test_retired_key_stays_published_until_its_tokens_expire_then_is_pruned(
    store: FileKeyStore, clock: Clock
) -> None:
    first = await ensure_key(store, SETTINGS, clock)
    assert first is not None
    second = await rotate(store, SETTINGS, now_=True, clock=clock)
    clock.now = second.activate_at + RETIRED_FOR - 0.01
    assert await prune(store, SETTINGS, clock) == []
    assert first.kid in await states(store, clock)
    clock.advance(0.01)
    assert await prune(store, SETTINGS, clock) == [first.kid]
    assert list((await states(store, clock)).values()) == ["current"]


async def test_rotation_while_a_key_is_pending_changes_nothing(
    store: FileKeyStore, clock: Clock
) -> None:
    await ensure_key(store, SETTINGS, clock)
    pending = await rotate(store, SETTINGS, clock=clock)
    again = await rotate(store, SETTINGS, clock=clock)
    assert again.outcome == "pending"
    assert again.kid == pending.kid
    assert len(await store.load()) == 2


async def test_rotate_now_promotes_the_pending_key_instead_of_making_another(
    store: FileKeyStore, clock: Clock
) -> None:
    first = await ensure_key(store, SETTINGS, clock)
    assert first is not None
    pending = await rotate(store, SETTINGS, clock=clock)
    clock.advance(1)
    promoted = await rotate(store, SETTINGS, now_=True, clock=clock)
    assert (promoted.outcome, promoted.kid) == ("promoted", pending.kid)
    assert await states(store, clock) == {first.kid: "retired", pending.kid: "current"}


async def test_rotate_now_without_pending_key_creates_a_current_key(
    store: FileKeyStore, clock: Clock
) -> None:
    first = await ensure_key(store, SETTINGS, clock)
    assert first is not None
    clock.advance(1)
    new = await rotate(store, SETTINGS, now_=True, size=3072, clock=clock)
    assert new.outcome == "created"
    assert await states(store, clock) == {first.kid: "retired", new.kid: "current"}
    assert {r.kid: r.size for r in await store.load()}[new.kid] == 3072


async def test_revoking_the_current_key_puts_a_fresh_key_in_its_place(
    store: FileKeyStore, clock: Clock
) -> None:
    first = await ensure_key(store, SETTINGS, clock)
    assert first is not None
    clock.advance(1)
    await rotate(store, SETTINGS, now_=True, clock=clock)
    clock.advance(1)
    current = next(k for k, s in (await states(store, clock)).items() if s == "current")
    replacement = await revoke(store, SETTINGS, current, clock)
    assert replacement is not None
    after = await states(store, clock)
    assert current not in after
    assert after[replacement.kid] == "current"
    assert after[first.kid] == "retired", "a retired key must never sign again"


async def test_revoking_a_retired_key_removes_it_and_keeps_the_signer(
    store: FileKeyStore, clock: Clock
) -> None:
    first = await ensure_key(store, SETTINGS, clock)
    assert first is not None
    clock.advance(1)
    second = await rotate(store, SETTINGS, now_=True, clock=clock)
    assert await revoke(store, SETTINGS, first.kid, clock) is None
    assert await states(store, clock) == {second.kid: "current"}


async def test_revoking_an_unknown_kid_is_a_clear_error(store: FileKeyStore, clock: Clock) -> None:
    await ensure_key(store, SETTINGS, clock)
    with pytest.raises(KeyStoreError, match="no key with kid"):
        await revoke(store, SETTINGS, "A" * 43, clock)
    assert len(await store.load()) == 1


async def test_service_publishes_next_key_before_the_interval_ends(
    store: FileKeyStore, clock: Clock
) -> None:
    first = await ensure_key(store, SETTINGS, clock)
    assert first is not None
    clock.advance(86400 - 600 - 1)
    assert await auto_rotate(store, SETTINGS, clock) is None
    clock.advance(1)
    new = await auto_rotate(store, SETTINGS, clock)
    assert new is not None
    assert new.activate_at == first.activate_at + 86400
    assert await auto_rotate(store, SETTINGS, clock) is None, "one step, not two"
    clock.advance(600)
    assert (await states(store, clock))[new.kid] == "current"


async def test_late_service_still_publishes_for_the_full_delay(
    store: FileKeyStore, clock: Clock
) -> None:
    await ensure_key(store, SETTINGS, clock)
    clock.advance(86400 * 3)
    new = await auto_rotate(store, SETTINGS, clock)
    assert new is not None
    assert new.activate_at == clock() + 600


async def test_key_manager_signs_with_the_current_key_as_time_passes(
    store: FileKeyStore, clock: Clock
) -> None:
    first = await ensure_key(store, SETTINGS, clock)
    assert first is not None
    new = await rotate(store, SETTINGS, clock=clock)
    manager = KeyManager(store, SETTINGS, clock)
    await manager.load()
    assert manager.signing_key().kid == first.kid
    assert new.kid.encode() in manager.current_ring().jwks
    clock.advance(600)
    assert manager.signing_key().kid == new.kid


async def test_key_manager_keeps_last_good_keys_when_the_store_breaks(
    store: FileKeyStore, clock: Clock, tmp_path: Path
) -> None:
    first = await ensure_key(store, SETTINGS, clock)
    assert first is not None
    manager = KeyManager(store, SETTINGS, clock)
    await manager.load()
    (tmp_path / f"{first.kid}.json").write_text("garbage")
    assert await manager.reload() is False
    assert manager.problem is not None
    assert "corrupted" in manager.problem
    assert manager.signing_key().kid == first.kid


async def test_key_manager_refuses_to_start_without_a_key(
    store: FileKeyStore, clock: Clock
) -> None:
    with pytest.raises(KeyStoreError, match="no current signing key"):
        await KeyManager(store, SETTINGS, clock).load()


async def test_two_rotations_at_once_create_one_key(tmp_path: Path, clock: Clock) -> None:
    await ensure_key(FileKeyStore(tmp_path), SETTINGS, clock)
    results = await asyncio.gather(
        *(rotate(FileKeyStore(tmp_path), SETTINGS, clock=clock) for _ in range(4))
    )
    assert sorted(r.outcome for r in results) == ["created", "pending", "pending", "pending"]
    assert len({r.kid for r in results}) == 1
    assert sorted((await states(FileKeyStore(tmp_path), clock)).values()) == ["current", "next"]
