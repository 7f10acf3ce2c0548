"""An unknown user and a wrong password get the same answer in the same time: both
verify a password hash (a dummy one for the unknown user) and do the same database
work. A shortcut for unknown users would answer them about a hundred times faster."""

from __future__ import annotations

import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from authority.accounts import passwords
from tests._auth_fixtures import Site, open_site, site_settings

ROUNDS = 12


@pytest_asyncio.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    settings = site_settings(
        tmp_path,
        login_max_failures_account=1000,
        login_max_failures_address=1000,
    )
    async with open_site(settings) as opened:
        yield opened


async def test_unknown_user_and_wrong_password_look_alike(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, _ = await site.new_user()
    verified: list[str | None] = []
    original = passwords.verify_password

    def counting(stored_hash: str | None, password: str) -> tuple[bool, bool]:
        verified.append(stored_hash)
        return original(stored_hash, password)

    monkeypatch.setattr(passwords, "verify_password", counting)
    client = site.browser()
    timings: dict[str, list[float]] = {"unknown": [], "wrong": []}
    answers: dict[str, set[tuple[int, str]]] = {"unknown": set(), "wrong": set()}
    for n in range(ROUNDS):
        # Interleaved, so that drift in machine load hits both alike.
        for kind, login in (("unknown", f"ghost-{n}"), ("wrong", name)):
            started = time.perf_counter()
            response = await client.post(
                "/auth/login",
                json={"username": login, "password": "not the password", "delivery": "body"},
            )
            timings[kind].append(time.perf_counter() - started)
            answers[kind].add((response.status_code, response.text))
    assert answers["unknown"] == answers["wrong"]
    assert len(answers["wrong"]) == 1
    # Every attempt verified a hash, the unknown ones against the dummy.
    assert len(verified) == 2 * ROUNDS
    assert verified.count(None) == ROUNDS
    ratio = statistics.median(timings["unknown"]) / statistics.median(timings["wrong"])
    assert 0.5 < ratio < 2.0, (ratio, timings)
