"""An unknown user and a wrong password get the same answer in the same time: both
verify a password hash (a dummy one for the unknown user) and do the same database
work. A shortcut for unknown users would answer them about a hundred times faster."""

from __future__ import annotations

import statistics
import time

import pytest

from authority.accounts import passwords
from tests.helpers.world import World, WorldConfig

pytestmark = pytest.mark.asyncio(loop_scope="module")
ROUNDS = 12


@pytest.fixture(scope="module")
def world_config() -> WorldConfig:
    return WorldConfig(
        settings={"login_max_failures_account": 1000, "login_max_failures_address": 1000}
    )


async def test_unknown_user_and_wrong_password_look_alike(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, _ = await world.new_user()
    verified: list[str | None] = []
    original = passwords.verify_password

    def counting(stored_hash: str | None, password: str) -> tuple[bool, bool]:
        verified.append(stored_hash)
        return original(stored_hash, password)

    monkeypatch.setattr(passwords, "verify_password", counting)
    client = world.browser()
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
