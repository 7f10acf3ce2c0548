"""Failed-login throttling (README, "Throttling"): per client address, and per account
with backoff per (account, address) pair; 429 with ``Retry-After``; no stranger can lock
an account, yet many addresses guessing one account stay slow; bounded password
hashing. (That the limits hold across replicas:
``tests/integration/test_auth_throttle_servers.py``.)"""

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


async def test_one_address_cannot_lock_out_a_user_who_has_the_right_password(
    world: World,
) -> None:
    name, _ = await world.new_user()
    statuses = [
        (await attempt(world, name, f"guess {n}", "198.51.100.66")).status_code
        for n in range(ACCOUNT_LIMIT + 3)
    ]
    assert statuses == [401] * ACCOUNT_LIMIT + [429] * 3
    owner = await attempt(world, name, PASSWORD, "192.0.2.200")
    assert owner.status_code == 200, owner.text
    # The guessing address stays held back after the owner's success.
    assert (await attempt(world, name, "guess", "198.51.100.66")).status_code == 429


async def test_attempts_refused_by_the_address_limit_do_not_count_against_the_account(
    world: World,
) -> None:
    victim, _ = await world.new_user()
    for _ in range(ADDRESS_LIMIT):
        other, _ = await world.new_user()
        assert (await attempt(world, other, "wrong", "192.0.2.66")).status_code == 401
    for _ in range(3 * ACCOUNT_LIMIT):
        assert (await attempt(world, victim, "wrong", "192.0.2.66")).status_code == 429
    ok = await attempt(world, victim, PASSWORD, "192.0.2.67")
    assert ok.status_code == 200, ok.text


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_many_addresses_guessing_one_account_are_slowed_by_a_growing_backoff(
    backend: str, tmp_path: Path
) -> None:
    """Ten addresses take turns at one account for a whole window: past the budget each
    guess waits for a gate whose step doubles, so they get a handful of guesses in all,
    and a refused attempt counts against nothing."""
    limits = Limits(account=3, address=100, window=160)  # steps of 10, 20, 40 s ...
    clock = Clock()
    with database(backend, tmp_path) as url:
        await asyncio.to_thread(upgrade, url)
        db = Database(url)
        try:
            admitted, waits = 0, []
            end = clock.now + limits.window - 1
            n = 0
            while clock.now < end:
                address = f"10.0.0.{n % 10}"
                n += 1
                wait = await db.write(take_attempt, "user:1", address, limits, clock())
                if wait is None:
                    admitted += 1
                    await db.write(record_failure, address, limits, clock())
                else:
                    waits.append(wait)
                clock.advance(1)
            assert limits.account < admitted <= limits.account + 10, admitted
            assert min(waits) > 0
            assert max(waits) <= limits.window
        finally:
            await db.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_a_guessing_address_backs_off_and_the_gates_end_with_their_window(
    backend: str, tmp_path: Path
) -> None:
    limits = Limits(account=2, address=100, window=WINDOW * 16)
    step = WINDOW  # a sixteenth of the window
    clock = Clock()
    with database(backend, tmp_path) as url:
        await asyncio.to_thread(upgrade, url)
        db = Database(url)
        try:
            for _ in range(2):
                assert await db.write(take_attempt, "user:1", "a", limits, clock()) is None
                await db.write(record_failure, "a", limits, clock())
            clock.advance(10)
            assert await db.write(take_attempt, "user:1", "a", limits, clock()) == step - 10
            # A new address is not held back by the guessing one.
            assert await db.write(take_attempt, "user:1", "b", limits, clock()) is None
            clock.advance(step)
            assert await db.write(take_attempt, "user:1", "a", limits, clock()) is None
            assert await db.write(take_attempt, "user:1", "a", limits, clock()) == 4 * step
            clock.advance(limits.window)
            assert await db.write(take_attempt, "user:1", "a", limits, clock()) is None
            clock.advance(limits.window)
            assert await db.write(throttle.prune, clock(), limits.window) == 4
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
