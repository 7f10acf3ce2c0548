"""Failed-login throttling (README, "HTTP API") against real ``authority serve`` processes:
the limits hold across replicas because the counters live in the shared database, and
forwarded addresses count only from trusted proxies."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import httpx
import pytest

from tests.helpers.deployment import PASSWORD as ALICE_PASSWORD
from tests.helpers.deployment import USERNAME, database, provision


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
