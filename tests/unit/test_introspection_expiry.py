"""Introspection (RFC 7662 section 2.2) says whether a token is active *now*: the issuer
allows itself no clock leeway, which is only for verifiers whose clocks drift."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.clock import Clock
from tests.helpers.world import open_world, settings_in

ACCESS_TTL, LEEWAY = 300, 30


async def test_an_access_token_is_inactive_at_introspection_the_moment_it_expires(
    tmp_path: Path,
) -> None:
    clock = Clock()
    settings = settings_in(tmp_path, access_ttl=ACCESS_TTL, leeway=LEEWAY)
    async with open_world(settings, clock=clock) as world:
        session = await world.with_session()
        token = session.access_token
        clock.advance(ACCESS_TTL - 1)
        assert (await session.introspect(token)).json()["active"] is True
        clock.advance(2)  # expired one second ago, well within the leeway
        assert (await session.introspect(token)).json() == {"active": False}
