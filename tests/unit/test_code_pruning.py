"""Pruning of authorization codes (``authority tokens prune`` and the servers' loop): an
expired code goes once nothing is left for its replay to revoke: an unused one at
once, a used one when the session it opened is gone."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Connection, delete, select, update

from authority.sessions.pruning import prune_batch
from authority.storage.tables import AuthorizationCode, RefreshFamily, RefreshToken
from tests.helpers.authcode import CALLBACK, Pkce, code_for, exchange, log_in
from tests.helpers.postgres import BACKENDS
from tests.helpers.world import ClientSpec, World, WorldConfig, on_backend

pytestmark = pytest.mark.asyncio(loop_scope="module")
CLIENTS = {
    "spa": ClientSpec(
        True,
        ["authorization_code", "refresh_token"],
        scopes=("openid",),
        redirect_uris=(CALLBACK,),
        first_party=True,
    )
}


@pytest.fixture(scope="module", params=BACKENDS)
def world_config(request: pytest.FixtureRequest) -> Iterator[WorldConfig]:
    base = WorldConfig(clients=CLIENTS, settings={"maintenance_interval": 3600})
    with on_backend(base, request.param) as config:
        yield config


async def stored(world: World, code: str) -> bool:
    digest = hashlib.sha256(code.encode()).digest()
    found = await world.db.read(
        lambda c: c.execute(
            select(AuthorizationCode.code_hash).where(AuthorizationCode.code_hash == digest)
        ).first()
    )
    return found is not None


async def test_expired_codes_go_once_their_sessions_are_gone(world: World) -> None:
    name, _ = await world.new_user()
    browser = world.browser()
    await log_in(browser, name)
    unused = await code_for(world, browser, "spa", Pkce.new())
    pkce = Pkce.new()
    used = await code_for(world, browser, "spa", pkce)
    assert (await exchange(world, "spa", used, pkce.verifier)).status_code == 200
    fresh = await code_for(world, browser, "spa", Pkce.new())
    later = time.time() + world.settings.auth_code_ttl + 1
    # ``fresh`` is made "later": it has not expired then.
    digest = hashlib.sha256(fresh.encode()).digest()
    await world.db.write(
        lambda c: c.execute(
            update(AuthorizationCode)
            .where(AuthorizationCode.code_hash == digest)
            .values(expires_at=later + 60)
        )
    )
    await world.db.write(prune_batch, later, 100)
    assert not await stored(world, unused)
    assert await stored(world, used)  # its session lives: a replay must still revoke it
    assert await stored(world, fresh)
    used_hash = hashlib.sha256(used.encode()).digest()

    def drop_session(conn: Connection) -> None:
        family = conn.execute(
            select(AuthorizationCode.family_id).where(AuthorizationCode.code_hash == used_hash)
        ).scalar_one()
        conn.execute(delete(RefreshToken).where(RefreshToken.family_id == family))
        conn.execute(delete(RefreshFamily).where(RefreshFamily.id == family))

    await world.db.write(drop_session)
    await world.db.write(prune_batch, later, 100)
    assert not await stored(world, used)
