"""Failed-login throttling (README, "HTTP API"): per account and per client address, 429 with
``Retry-After``, no lockout of other accounts, bounded password hashing. (That the
limits hold across replicas: ``tests/integration/test_auth_throttle_servers.py``.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from authority.accounts import passwords, throttle
from authority.accounts.throttle import Limits, record_failure, take_attempt
from authority.storage.database import Database
from authority.storage.migrate import upgrade
from tests.helpers.clock import Clock
from tests.helpers.deployment import database
from tests.helpers.world import PASSWORD, World, WorldConfig

pytestmark = pytest.mark.asyncio(loop_scope="module")
ACCOUNT_LIMIT, ADDRESS_LIMIT, WINDOW = 3, 8, 60


@pytest.fixture(scope="module")
def world_config() -> WorldConfig:
    return WorldConfig(
        settings={
            "login_max_failures_account": ACCOUNT_LIMIT,
            "login_max_failures_address": ADDRESS_LIMIT,
            "login_failure_window": WINDOW,
        }
    )


@pytest_asyncio.fixture(loop_scope="module")
async def running_world(world_config: WorldConfig, tmp_path: Path) -> AsyncIterator[World]:
    """A new app and database for every test: the counters start at zero."""
    async with world_config.open(tmp_path) as opened:
        yield opened


async def attempt(
    world: World, login: str, password: str, address: str = "198.51.100.1", field: str = "username"
) -> httpx.Response:
    return await world.browser(address).post(
        "/auth/login", json={field: login, "password": password, "delivery": "body"}
    )


async def test_an_account_is_throttled_after_repeated_failures_with_retry_after(
    world: World,
) -> None:
    name, _ = await world.new_user()
    for n in range(ACCOUNT_LIMIT):
        response = await attempt(world, name, "wrong password", address=f"198.51.100.{n}")
        assert response.status_code == 401
    throttled = await attempt(world, name, PASSWORD, address="198.51.100.99")
    assert throttled.status_code == 429
    assert 0 < int(throttled.headers["retry-after"]) <= WINDOW
    assert throttled.json()["detail"]


async def test_hammering_one_account_does_not_lock_out_another(world: World) -> None:
    victim, _ = await world.new_user()
    bystander, _ = await world.new_user()
    for _ in range(ACCOUNT_LIMIT + 2):
        await attempt(world, victim, "wrong password", address="198.51.100.50")
    ok = await attempt(world, bystander, PASSWORD, address="198.51.100.51")
    assert ok.status_code == 200, ok.text


async def test_an_address_is_throttled_across_accounts(world: World) -> None:
    names = [(await world.new_user())[0] for _ in range(ADDRESS_LIMIT + 1)]
    for name in names[:ADDRESS_LIMIT]:
        assert (await attempt(world, name, "wrong password", "192.0.2.9")).status_code == 401
    throttled = await attempt(world, names[-1], PASSWORD, "192.0.2.9")
    assert throttled.status_code == 429
    assert int(throttled.headers["retry-after"]) > 0
    assert (await attempt(world, names[-1], PASSWORD, "192.0.2.10")).status_code == 200


async def test_a_burst_of_good_logins_from_one_address_is_not_throttled(world: World) -> None:
    """Many people behind one NAT, or one back-end-for-frontend, logging in at once."""
    names = [(await world.new_user())[0] for _ in range(3 * ADDRESS_LIMIT)]
    responses = await asyncio.gather(
        *(attempt(world, name, PASSWORD, "192.0.2.77") for name in names)
    )
    assert [r.status_code for r in responses] == [200] * len(names)


async def test_unknown_accounts_are_throttled_like_known_ones(world: World) -> None:
    for _ in range(ACCOUNT_LIMIT):
        assert (await attempt(world, "nobody-here", "wrong password")).status_code == 401
    assert (await attempt(world, "nobody-here", "wrong password")).status_code == 429


async def test_username_and_email_count_against_the_same_account(world: World) -> None:
    name, email = await world.new_user()
    for n in range(ACCOUNT_LIMIT):
        field, login = ("username", name) if n % 2 else ("email", email)
        assert (await attempt(world, login, "wrong", field=field)).status_code == 401
    assert (await attempt(world, email, PASSWORD, field="email")).status_code == 429


async def test_a_success_resets_the_account_counter(world: World) -> None:
    name, _ = await world.new_user()
    for _ in range(3):
        for _ in range(ACCOUNT_LIMIT - 1):
            assert (await attempt(world, name, "wrong password")).status_code == 401
        assert (await attempt(world, name, PASSWORD)).status_code == 200


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_the_lock_ends_with_its_window_and_counters_are_pruned(
    backend: str, tmp_path: Path
) -> None:
    limits = Limits(account=2, address=100, window=WINDOW)
    clock = Clock()
    with database(backend, tmp_path) as url:
        await asyncio.to_thread(upgrade, url)
        db = Database(url)
        try:
            for _ in range(2):
                assert await db.write(take_attempt, "user:1", "a", limits, clock()) is None
                await db.write(record_failure, "a", limits, clock())
            clock.advance(10)
            assert await db.write(take_attempt, "user:1", "a", limits, clock()) == WINDOW - 10
            clock.advance(WINDOW - 10)
            assert await db.write(take_attempt, "user:1", "a", limits, clock()) is None
            clock.advance(WINDOW)
            assert await db.write(throttle.prune, clock(), WINDOW) == 2
        finally:
            await db.dispose()


async def test_concurrent_guesses_cannot_slip_past_the_limit(world: World) -> None:
    name, _ = await world.new_user()
    responses = await asyncio.gather(
        *(attempt(world, name, f"guess {n}", address=f"203.0.113.{n}") for n in range(12))
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(401) == ACCOUNT_LIMIT, statuses
    assert statuses.count(429) == 12 - ACCOUNT_LIMIT, statuses


async def test_a_login_flood_beyond_the_hash_queue_is_told_to_retry(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hashing is bounded: past the queue, a login gets 503 + Retry-After at once
    instead of waiting in an unbounded pile."""
    monkeypatch.setattr(passwords, "MAX_WAITING", 2)
    names = [(await world.new_user())[0] for _ in range(30)]
    responses = await asyncio.gather(
        *(attempt(world, name, "wrong password", f"10.0.{n}.1") for n, name in enumerate(names))
    )
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {401, 503}, statuses
    busy = [r for r in responses if r.status_code == 503]
    assert busy, statuses
    assert all(r.headers["retry-after"] for r in busy)
    assert statuses.count(401) >= passwords.MAX_CONCURRENT_HASHES
