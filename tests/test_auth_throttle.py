"""Failed-login throttling (SPEC section 3): per account and per client address, 429 with
``Retry-After``, no lockout of other accounts, bounded password hashing, and limits
that hold across replicas because the counters live in the shared database."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from authority.accounts import passwords, throttle
from authority.accounts.throttle import Limits, record_failure, take_attempt
from authority.storage.database import Database
from authority.storage.migrate import upgrade
from tests._auth_fixtures import Site, open_site, site_settings
from tests._deployment import PASSWORD as ALICE_PASSWORD
from tests._deployment import USERNAME, database, provision
from tests._oauth_fixtures import PASSWORD
from tests.conftest import Clock

ACCOUNT_LIMIT, ADDRESS_LIMIT, WINDOW = 3, 8, 60


@pytest_asyncio.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    settings = site_settings(
        tmp_path,
        login_max_failures_account=ACCOUNT_LIMIT,
        login_max_failures_address=ADDRESS_LIMIT,
        login_failure_window=WINDOW,
    )
    async with open_site(settings) as opened:
        yield opened


async def attempt(
    site: Site, login: str, password: str, address: str = "198.51.100.1", field: str = "username"
) -> httpx.Response:
    return await site.browser(address).post(
        "/auth/login", json={field: login, "password": password, "delivery": "body"}
    )


async def test_an_account_is_throttled_after_repeated_failures_with_retry_after(
    site: Site,
) -> None:
    name, _ = await site.new_user()
    for n in range(ACCOUNT_LIMIT):
        response = await attempt(site, name, "wrong password", address=f"198.51.100.{n}")
        assert response.status_code == 401
    throttled = await attempt(site, name, PASSWORD, address="198.51.100.99")
    assert throttled.status_code == 429
    assert 0 < int(throttled.headers["retry-after"]) <= WINDOW
    assert throttled.json()["detail"]


async def test_hammering_one_account_does_not_lock_out_another(site: Site) -> None:
    victim, _ = await site.new_user()
    bystander, _ = await site.new_user()
    for _ in range(ACCOUNT_LIMIT + 2):
        await attempt(site, victim, "wrong password", address="198.51.100.50")
    ok = await attempt(site, bystander, PASSWORD, address="198.51.100.51")
    assert ok.status_code == 200, ok.text


async def test_an_address_is_throttled_across_accounts(site: Site) -> None:
    names = [(await site.new_user())[0] for _ in range(ADDRESS_LIMIT + 1)]
    for name in names[:ADDRESS_LIMIT]:
        assert (await attempt(site, name, "wrong password", "192.0.2.9")).status_code == 401
    throttled = await attempt(site, names[-1], PASSWORD, "192.0.2.9")
    assert throttled.status_code == 429
    assert int(throttled.headers["retry-after"]) > 0
    assert (await attempt(site, names[-1], PASSWORD, "192.0.2.10")).status_code == 200


async def test_a_burst_of_good_logins_from_one_address_is_not_throttled(site: Site) -> None:
    """Many people behind one NAT, or one back-end-for-frontend, logging in at once."""
    names = [(await site.new_user())[0] for _ in range(3 * ADDRESS_LIMIT)]
    responses = await asyncio.gather(
        *(attempt(site, name, PASSWORD, "192.0.2.77") for name in names)
    )
    assert [r.status_code for r in responses] == [200] * len(names)


async def test_unknown_accounts_are_throttled_like_known_ones(site: Site) -> None:
    for _ in range(ACCOUNT_LIMIT):
        assert (await attempt(site, "nobody-here", "wrong password")).status_code == 401
    assert (await attempt(site, "nobody-here", "wrong password")).status_code == 429


async def test_username_and_email_count_against_the_same_account(site: Site) -> None:
    name, email = await site.new_user()
    for n in range(ACCOUNT_LIMIT):
        field, login = ("username", name) if n % 2 else ("email", email)
        assert (await attempt(site, login, "wrong", field=field)).status_code == 401
    assert (await attempt(site, email, PASSWORD, field="email")).status_code == 429


async def test_a_success_resets_the_account_counter(site: Site) -> None:
    name, _ = await site.new_user()
    for _ in range(3):
        for _ in range(ACCOUNT_LIMIT - 1):
            assert (await attempt(site, name, "wrong password")).status_code == 401
        assert (await attempt(site, name, PASSWORD)).status_code == 200


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


async def test_concurrent_guesses_cannot_slip_past_the_limit(site: Site) -> None:
    name, _ = await site.new_user()
    responses = await asyncio.gather(
        *(attempt(site, name, f"guess {n}", address=f"203.0.113.{n}") for n in range(12))
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(401) == ACCOUNT_LIMIT, statuses
    assert statuses.count(429) == 12 - ACCOUNT_LIMIT, statuses


async def test_a_login_flood_beyond_the_hash_queue_is_told_to_retry(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hashing is bounded: past the queue, a login gets 503 + Retry-After at once
    instead of waiting in an unbounded pile."""
    monkeypatch.setattr(passwords, "MAX_WAITING", 2)
    names = [(await site.new_user())[0] for _ in range(30)]
    responses = await asyncio.gather(
        *(attempt(site, name, "wrong password", f"10.0.{n}.1") for n, name in enumerate(names))
    )
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {401, 503}, statuses
    busy = [r for r in responses if r.status_code == 503]
    assert busy, statuses
    assert all(r.headers["retry-after"] for r in busy)
    assert statuses.count(401) >= passwords.MAX_CONCURRENT_HASHES


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_limits_hold_across_replicas(backend: str, tmp_path: Path) -> None:
    with database(backend, tmp_path) as url:
        deployed = provision(
            tmp_path,
            url,
            AUTHORITY_LOGIN_MAX_FAILURES_ACCOUNT="4",
            AUTHORITY_LOGIN_FAILURE_WINDOW="120",
        )
        try:
            a, b = deployed.start(2)

            def login(server_url: str, password: str) -> int:
                return httpx.post(
                    f"{server_url}/auth/login",
                    json={"username": USERNAME, "password": password, "delivery": "body"},
                    timeout=30,
                ).status_code

            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                statuses = list(
                    pool.map(lambda n: login((a, b)[n % 2].url, f"wrong {n}"), range(10))
                )
            assert statuses.count(401) == 4, statuses
            assert statuses.count(429) == 6, statuses
            assert login(a.url, ALICE_PASSWORD) == 429
            assert login(b.url, ALICE_PASSWORD) == 429
        finally:
            deployed.stop()


@pytest.mark.slow
def test_forwarded_addresses_count_only_from_trusted_proxies(tmp_path: Path) -> None:
    deployed = provision(
        tmp_path,
        f"sqlite+aiosqlite:///{tmp_path / 'a.db'}",
        AUTHORITY_LOGIN_MAX_FAILURES_ADDRESS="3",
    )
    try:
        direct = deployed.start()[0]
        proxied = deployed.start(AUTHORITY_TRUSTED_PROXIES="127.0.0.1")[0]

        def login(server_url: str, account: str, forwarded_for: str) -> int:
            return httpx.post(
                f"{server_url}/auth/login",
                json={"username": account, "password": "wrong password", "delivery": "body"},
                headers={"X-Forwarded-For": forwarded_for},
                timeout=30,
            ).status_code

        # Behind a trusted proxy each forwarded address has its own count...
        assert [login(proxied.url, f"p{n}", "198.51.100.1") for n in range(4)] == [
            401,
            401,
            401,
            429,
        ]
        assert login(proxied.url, "p9", "198.51.100.2") == 401
        # ...while a direct client cannot dodge its count by naming other addresses.
        assert [login(direct.url, f"d{n}", f"192.0.2.{n}") for n in range(4)] == [
            401,
            401,
            401,
            429,
        ]
    finally:
        deployed.stop()
