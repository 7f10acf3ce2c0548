"""The key lifecycle of README, "Signing keys": next -> current -> retired -> removed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from authority.settings import Settings
from authority.signing.file_store import FileKeyStore
from authority.signing.keys import key_algorithm
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
from authority.verifier.algorithms import ALGORITHMS
from tests.helpers.clock import Clock

RETIRED_FOR = 900 + 300 + 30


@pytest.fixture(params=list(ALGORITHMS))
def settings(request: pytest.FixtureRequest) -> Settings:
    """The lifecycle is the same for keys of every algorithm (KEY_ALGORITHM)."""
    return Settings(
        env="test",
        access_ttl=900,
        jwks_max_age=300,
        leeway=30,
        key_publish_delay=600,
        key_rotation_interval=86400,
        key_algorithm=request.param,
    )


@pytest.fixture
def store(tmp_path: Path) -> FileKeyStore:
    return FileKeyStore(tmp_path)


async def states(store: FileKeyStore, clock: Clock, settings: Settings) -> dict[str, str]:
    """The state of each key, once every key is checked to be of ``KEY_ALGORITHM``."""
    records = await store.load()
    assert {r.algorithm for r in records} <= {key_algorithm(settings)}
    return {s.record.kid: s.state for s in statuses(records, settings, clock())}


async def test_first_key_is_current_at_once_and_ensure_is_idempotent(
    settings: Settings, store: FileKeyStore, clock: Clock
) -> None:
    first = await ensure_key(store, settings, clock)
    assert first is not None
    assert await states(store, clock, settings) == {first.kid: "current"}
    assert await ensure_key(store, settings, clock) is None
    assert len(await store.load()) == 1


async def test_next_key_becomes_current_after_the_publish_delay(
    settings: Settings, store: FileKeyStore, clock: Clock
) -> None:
    first = await ensure_key(store, settings, clock)
    assert first is not None
    new = await rotate(store, settings, clock=clock)
    assert new.outcome == "created"
    assert await states(store, clock, settings) == {first.kid: "current", new.kid: "next"}
    clock.advance(599)
    assert (await states(store, clock, settings))[new.kid] == "next"
    clock.advance(1)
    assert await states(store, clock, settings) == {first.kid: "retired", new.kid: "current"}


async def test_retired_key_stays_published_until_its_tokens_expire_then_is_pruned(
    settings: Settings, store: FileKeyStore, clock: Clock
) -> None:
    first = await ensure_key(store, settings, clock)
    assert first is not None
    second = await rotate(store, settings, now_=True, clock=clock)
    clock.now = second.activate_at + RETIRED_FOR - 0.01
    assert await prune(store, settings, clock) == []
    assert first.kid in await states(store, clock, settings)
    clock.advance(0.01)
    assert await prune(store, settings, clock) == [first.kid]
    assert list((await states(store, clock, settings)).values()) == ["current"]


async def test_rotation_while_a_key_is_pending_changes_nothing(
    settings: Settings, store: FileKeyStore, clock: Clock
) -> None:
    await ensure_key(store, settings, clock)
    pending = await rotate(store, settings, clock=clock)
    again = await rotate(store, settings, clock=clock)
    assert again.outcome == "pending"
    assert again.kid == pending.kid
    assert len(await store.load()) == 2


async def test_rotate_now_promotes_the_pending_key_instead_of_making_another(
    settings: Settings, store: FileKeyStore, clock: Clock
) -> None:
    first = await ensure_key(store, settings, clock)
    assert first is not None
    pending = await rotate(store, settings, clock=clock)
    clock.advance(1)
    promoted = await rotate(store, settings, now_=True, clock=clock)
    assert (promoted.outcome, promoted.kid) == ("promoted", pending.kid)
    assert await states(store, clock, settings) == {first.kid: "retired", pending.kid: "current"}


async def test_rotate_now_without_pending_key_creates_a_current_key(
    settings: Settings, store: FileKeyStore, clock: Clock
) -> None:
    first = await ensure_key(store, settings, clock)
    assert first is not None
    clock.advance(1)
    new = await rotate(store, settings, now_=True, size=3072, clock=clock)
    assert new.outcome == "created"
    assert await states(store, clock, settings) == {first.kid: "retired", new.kid: "current"}
    expected = key_algorithm(settings).bits or 3072  # curve keys have one size
    assert {r.kid: r.size for r in await store.load()}[new.kid] == expected


async def test_revoking_the_current_key_puts_a_fresh_key_in_its_place(
    settings: Settings, store: FileKeyStore, clock: Clock
) -> None:
    first = await ensure_key(store, settings, clock)
    assert first is not None
    clock.advance(1)
    await rotate(store, settings, now_=True, clock=clock)
    clock.advance(1)
    current = next(k for k, s in (await states(store, clock, settings)).items() if s == "current")
    replacement = await revoke(store, settings, current, clock)
    assert replacement is not None
    after = await states(store, clock, settings)
    assert current not in after
    assert after[replacement.kid] == "current"
    assert after[first.kid] == "retired", "a retired key must never sign again"


async def test_revoking_a_retired_key_removes_it_and_keeps_the_signer(
    settings: Settings, store: FileKeyStore, clock: Clock
) -> None:
    first = await ensure_key(store, settings, clock)
    assert first is not None
    clock.advance(1)
    second = await rotate(store, settings, now_=True, clock=clock)
    assert await revoke(store, settings, first.kid, clock) is None
    assert await states(store, clock, settings) == {second.kid: "current"}


async def test_revoking_an_unknown_kid_is_a_clear_error(
    settings: Settings, store: FileKeyStore, clock: Clock
) -> None:
    await ensure_key(store, settings, clock)
    with pytest.raises(KeyStoreError, match="no key with kid"):
        await revoke(store, settings, "A" * 43, clock)
    assert len(await store.load()) == 1


async def test_service_publishes_next_key_before_the_interval_ends(
    settings: Settings, store: FileKeyStore, clock: Clock
) -> None:
    first = await ensure_key(store, settings, clock)
    assert first is not None
    clock.advance(86400 - 600 - 1)
    assert await auto_rotate(store, settings, clock) is None
    clock.advance(1)
    new = await auto_rotate(store, settings, clock)
    assert new is not None
    assert new.activate_at == first.activate_at + 86400
    assert await auto_rotate(store, settings, clock) is None, "one step, not two"
    clock.advance(600)
    assert (await states(store, clock, settings))[new.kid] == "current"


async def test_late_service_still_publishes_for_the_full_delay(
    settings: Settings, store: FileKeyStore, clock: Clock
) -> None:
    await ensure_key(store, settings, clock)
    clock.advance(86400 * 3)
    new = await auto_rotate(store, settings, clock)
    assert new is not None
    assert new.activate_at == clock() + 600


async def test_key_manager_signs_with_the_current_key_as_time_passes(
    settings: Settings, store: FileKeyStore, clock: Clock
) -> None:
    first = await ensure_key(store, settings, clock)
    assert first is not None
    new = await rotate(store, settings, clock=clock)
    manager = KeyManager(store, settings, clock)
    await manager.load()
    assert manager.signing_key().kid == first.kid
    assert new.kid.encode() in manager.current_ring().jwks
    clock.advance(600)
    assert manager.signing_key().kid == new.kid


async def test_key_manager_keeps_last_good_keys_when_the_store_breaks(
    settings: Settings, store: FileKeyStore, clock: Clock, tmp_path: Path
) -> None:
    first = await ensure_key(store, settings, clock)
    assert first is not None
    manager = KeyManager(store, settings, clock)
    await manager.load()
    (tmp_path / f"{first.kid}.json").write_text("garbage")
    assert await manager.reload() is False
    assert manager.problem is not None
    assert "corrupted" in manager.problem
    assert manager.signing_key().kid == first.kid


async def test_key_manager_refuses_to_start_without_a_key(
    settings: Settings, store: FileKeyStore, clock: Clock
) -> None:
    with pytest.raises(KeyStoreError, match="no current signing key"):
        await KeyManager(store, settings, clock).load()


async def test_two_rotations_at_once_create_one_key(
    settings: Settings, tmp_path: Path, clock: Clock
) -> None:
    await ensure_key(FileKeyStore(tmp_path), settings, clock)
    results = await asyncio.gather(
        *(rotate(FileKeyStore(tmp_path), settings, clock=clock) for _ in range(4))
    )
    assert sorted(r.outcome for r in results) == ["created", "pending", "pending", "pending"]
    assert len({r.kid for r in results}) == 1
    assert sorted((await states(FileKeyStore(tmp_path), clock, settings)).values()) == [
        "current",
        "next",
    ]
