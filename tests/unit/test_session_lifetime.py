"""A login session has two lifetimes (README, "Tokens"): each refresh token lives
``REFRESH_TTL`` (sliding: every refresh gives a new one), and the session as a whole
never outlives ``REFRESH_FAMILY_TTL`` however often it is refreshed. Both hold at
``/oauth/token`` and at ``/auth/refresh``, on a clock the tests move."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import pytest_asyncio

from tests.helpers.clock import Clock
from tests.helpers.world import World, open_world, settings_in

pytestmark = pytest.mark.asyncio(loop_scope="module")
REFRESH_TTL, FAMILY_TTL = 1000, 2500
CLOCK = Clock()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def running_world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    settings = settings_in(
        Path(tmp_path_factory.mktemp("world")),
        refresh_ttl=REFRESH_TTL,
        refresh_family_ttl=FAMILY_TTL,
        maintenance_interval=3600,  # no pruning while a test moves the clock
    )
    async with open_world(settings, clock=CLOCK) as world:
        yield world


# Refresh a session at one endpoint: the new refresh token, or the refusal's ``error``.
Refresh = Callable[[str], Awaitable[tuple[str | None, str | None]]]


@pytest_asyncio.fixture(loop_scope="module", params=["/oauth/token", "/auth/refresh"])
async def endpoint(
    request: pytest.FixtureRequest, world: World
) -> tuple[Callable[[], Awaitable[str]], Refresh]:
    if request.param == "/oauth/token":
        session = await world.with_session()

        async def start() -> str:
            return str((await session.login())["refresh_token"])

        async def refresh(token: str) -> tuple[str | None, str | None]:
            answer = (await session.refresh(token)).json()
            return answer.get("refresh_token"), answer.get("error")

        return start, refresh

    name, _ = await world.new_user()

    async def start_auth() -> str:
        return str((await world.body_login(name))["refresh"])

    async def refresh_auth(token: str) -> tuple[str | None, str | None]:
        answer = (await world.browser().post("/auth/refresh", json={"refresh": token})).json()
        return answer.get("refresh"), answer.get("error")

    return start_auth, refresh_auth


async def test_a_session_refreshed_all_along_ends_at_its_absolute_lifetime(
    endpoint: tuple[Callable[[], Awaitable[str]], Refresh],
) -> None:
    start, refresh = endpoint
    token = await start()
    for step in (900, 900, 600):  # at 900, 1800, 2400 s: each within REFRESH_TTL of the last
        CLOCK.advance(step)
        new, error = await refresh(token)
        assert (error, new is not None) == (None, True)
        token = str(new)
    CLOCK.advance(FAMILY_TTL - 2400 + 1)  # 101 s after the last refresh: the session is over
    assert await refresh(token) == (None, "invalid_grant")


async def test_a_refresh_token_unused_for_longer_than_its_lifetime_is_refused(
    endpoint: tuple[Callable[[], Awaitable[str]], Refresh],
) -> None:
    start, refresh = endpoint
    fresh, stale = await start(), await start()
    CLOCK.advance(REFRESH_TTL - 1)
    assert (await refresh(fresh))[1] is None
    CLOCK.advance(2)  # REFRESH_TTL + 1 since login; the session has 1499 s left
    assert await refresh(stale) == (None, "invalid_grant")


async def test_refresh_tokens_near_the_end_live_only_until_the_session_ends(
    world: World,
) -> None:
    """The lifetime the answer gives shrinks to what the session has left."""
    name, _ = await world.new_user()
    token = (await world.body_login(name))["refresh"]
    lifetimes = []
    for step in (900, 900, 600):
        CLOCK.advance(step)
        answer = await world.browser().post("/auth/refresh", json={"refresh": token})
        assert answer.status_code == 200, answer.text
        token = answer.json()["refresh"]
        lifetimes.append(answer.json()["refresh_expires_in"])
    assert lifetimes == [REFRESH_TTL, FAMILY_TTL - 1800, FAMILY_TTL - 2400]
