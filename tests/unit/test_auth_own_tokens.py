"""``/auth`` accepts only the access tokens it issued itself: those of the first-party
client ``authority-web`` for the authority's own audience (README, "Logging in users").
A token that another client, or a resource server, was given is a 401 there and
changes nothing, though it is validly signed and names a live session."""

from __future__ import annotations

import time

import jwt
import pytest

from tests.helpers.stores import current_signing_key
from tests.helpers.world import World

pytestmark = pytest.mark.asyncio(loop_scope="module")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_password_grant_token_of_another_client_cannot_read_the_user(
    world: World,
) -> None:
    session = await world.with_session()
    assert world.decode(session.access_token)["client_id"] == world.client_id("app")
    me = await world.browser().get("/auth/me", headers=bearer(session.access_token))
    assert me.status_code == 401
    assert "email" not in me.text
    check = await world.browser().get("/auth/check", headers=bearer(session.access_token))
    assert check.json() == {"authenticated": False}


async def test_a_token_of_another_client_cannot_end_the_users_sessions(world: World) -> None:
    session = await world.with_session()
    async with world.unchanged():
        response = await world.browser().post(
            "/auth/logout-all", headers=bearer(session.access_token)
        )
    assert response.status_code == 401
    await session.assert_refresh_works(session.refresh_token)


async def test_a_first_party_token_for_another_audience_is_refused(world: World) -> None:
    """A resource server that received an /auth-shaped token for itself cannot replay
    it at /auth: the audience must be the authority's own."""
    name, _ = await world.new_user()
    claims = world.decode((await world.body_login(name))["access"])
    key = current_signing_key(world.settings)

    def signed(audience: str) -> str:
        edited = {**claims, "aud": audience, "jti": f"{audience}-{time.time_ns()}"}
        return jwt.encode(
            edited, key.private_key, "RS256", headers={"kid": key.kid, "typ": "at+jwt"}
        )

    # The same token signed again for our own audience is accepted: only the aud differs.
    own = await world.browser().get("/auth/me", headers=bearer(signed("default")))
    assert own.status_code == 200
    foreign = signed("orders-api")
    async with world.unchanged():
        me = await world.browser().get("/auth/me", headers=bearer(foreign))
        logout_all = await world.browser().post("/auth/logout-all", headers=bearer(foreign))
    assert (me.status_code, logout_all.status_code) == (401, 401)
