"""Sign-up is throttled per client address (README, "Throttling"): a 429 with
``Retry-After`` in the ``/auth`` error shape, before any lookup or hashing, so taken
names cannot be collected at speed and a flood cannot fill the hashing queue."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from authority.accounts import passwords
from authority.accounts.throttle import REGISTRATIONS_PER_ADDRESS
from tests.helpers.world import World

pytestmark = pytest.mark.asyncio(loop_scope="module")
GOOD = "plain lowercase words are fine"


async def sign_up(world: World, name: str, address: str) -> httpx.Response:
    body = {"username": name, "email": f"{name}@example.org", "password": GOOD}
    return await world.browser(address).post("/auth/register", json={"delivery": "body", **body})


async def test_sign_ups_from_one_address_are_throttled_with_retry_after(world: World) -> None:
    taken, _ = await world.new_user()
    for _ in range(REGISTRATIONS_PER_ADDRESS):
        probe = await sign_up(world, taken, "198.51.100.30")
        assert probe.status_code == 400  # the answer stays useful...
    async with world.unchanged():
        throttled = await sign_up(world, taken, "198.51.100.30")  # ...but not at speed
    assert throttled.status_code == 429
    assert 0 < int(throttled.headers["retry-after"]) <= world.settings.login_failure_window
    assert set(throttled.json()) == {"detail"}
    assert (await sign_up(world, "newcomer30", "198.51.100.31")).status_code == 201


async def test_a_flood_of_sign_ups_from_one_address_never_reaches_the_hashing_queue(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    hashed = 0
    original = passwords.hash_password

    def counting(password: str) -> str:
        nonlocal hashed
        hashed += 1
        return original(password)

    monkeypatch.setattr(passwords, "hash_password", counting)
    responses = await asyncio.gather(
        *(sign_up(world, f"flood{n}", "198.51.100.40") for n in range(40))
    )
    statuses = [r.status_code for r in responses]
    assert statuses.count(201) == REGISTRATIONS_PER_ADDRESS, statuses
    assert statuses.count(429) == 40 - REGISTRATIONS_PER_ADDRESS, statuses
    assert hashed == REGISTRATIONS_PER_ADDRESS
