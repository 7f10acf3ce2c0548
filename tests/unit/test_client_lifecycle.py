"""What ``authority clients rotate-secret|disable|enable|delete`` do to a running server
(README, "Command line"): the old secret works until its overlap ends and never after,
a new secret works at once, a disabled client is ``invalid_client`` and its sessions
are revoked, its tokens inactive. A server trusts a client record it read for at most
``CACHE_TTL`` seconds of its clock: that is the bound within which a change that
takes something away reaches it."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from click.testing import CliRunner
from sqlalchemy import select

from authority.accounts.clients import CACHE_TTL
from authority.cli.main import main
from authority.signing.file_store import FileKeyStore
from authority.signing.manager import ensure_key
from authority.storage.database import Database
from authority.storage.migrate import upgrade
from authority.storage.tables import Client, RefreshFamily
from tests.helpers.clock import Clock
from tests.helpers.oauth import assert_oauth_error, basic
from tests.helpers.world import PASSWORD, ClientSpec, World, open_world, settings_in

pytestmark = pytest.mark.asyncio(loop_scope="module")
SECRET_KEY = "s" * 40
CLIENTS = {
    "service": ClientSpec(False, ["client_credentials"]),
    "app": ClientSpec(False, ["password", "refresh_token"]),
}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest_asyncio.fixture(loop_scope="module")
async def world(tmp_path: Path, clock: Clock) -> AsyncIterator[World]:
    settings = settings_in(tmp_path, secret_key=SECRET_KEY)
    await asyncio.to_thread(upgrade, settings.database_url)
    settings.keys_dir.mkdir()
    await ensure_key(FileKeyStore(settings.keys_dir), settings)
    # The CLI writes times from the real clock: the app's starts there, after its key.
    clock.now = time.time() + 1
    async with open_world(settings, CLIENTS, clock=clock) as opened:
        opened.user = await opened.add_user("alice", "alice@example.com")
        yield opened


async def cli(world: World, *args: str) -> dict[str, Any]:
    """``authority ARGS --json`` on the world's database, as an operator runs it."""
    env = {
        "AUTHORITY_ENV": "test",
        "AUTHORITY_DATABASE_URL": world.settings.database_url,
        "AUTHORITY_KEYS_DIR": str(world.settings.keys_dir),
        "AUTHORITY_SECRET_KEY": SECRET_KEY,
    }
    result = await asyncio.to_thread(
        CliRunner().invoke, main, [*args, "--json"], env=env, prog_name="authority"
    )
    assert result.exit_code == 0, result.stderr
    return dict(json.loads(result.stdout))


async def client_token(world: World, secret: str, client: str = "service") -> Any:
    return await world.token(
        {"grant_type": "client_credentials"}, auth=basic(world.client_id(client), secret)
    )


async def assert_refused(world: World, secret: str) -> None:
    """The secret is ``invalid_client``, with client_secret_basic and client_secret_post."""
    assert_oauth_error(await client_token(world, secret), 401, "invalid_client")
    post = await world.token(
        {
            "grant_type": "client_credentials",
            "client_id": world.client_id("service"),
            "client_secret": secret,
        },
        client=None,
    )
    assert_oauth_error(post, 401, "invalid_client")


async def test_the_old_secret_works_during_the_overlap_and_never_after(
    world: World, clock: Clock
) -> None:
    old = world.secrets["service"]
    assert (await client_token(world, old)).status_code == 200  # the server caches it
    rotated = await cli(world, "clients", "rotate-secret", "service", "--overlap", "60")
    new = rotated["client_secret"]
    # The cached record knows only the old secret: the new one is read afresh at once.
    assert (await client_token(world, new)).status_code == 200
    until = await previous_secret_until(world)
    clock.now = until - 1
    assert (await client_token(world, old)).status_code == 200
    assert (await client_token(world, new)).status_code == 200
    clock.now = until  # the overlap has ended; the record read a second ago is cached
    await assert_refused(world, old)
    assert (await client_token(world, new)).status_code == 200


async def previous_secret_until(world: World) -> float:
    db = Database(world.settings.database_url)
    try:
        until = await db.read(
            lambda conn: conn.execute(
                select(Client.previous_secret_until).where(
                    Client.client_id == world.client_id("service")
                )
            ).scalar_one()
        )
    finally:
        await db.dispose()
    assert until is not None
    return float(until)


async def test_without_overlap_the_old_secret_stops_within_the_cache_bound(
    world: World, clock: Clock
) -> None:
    old = world.secrets["service"]
    assert (await client_token(world, old)).status_code == 200
    new = (await cli(world, "clients", "rotate-secret", "service"))["client_secret"]
    clock.advance(CACHE_TTL)
    await assert_refused(world, old)
    assert (await client_token(world, new)).status_code == 200


async def test_a_disabled_client_is_refused_its_sessions_revoked_and_its_tokens_inactive(
    world: World, clock: Clock
) -> None:
    app = world.basic("app")
    login = await world.login(scope=None)
    service_token = (await client_token(world, world.secrets["service"])).json()["access_token"]
    assert (await world.introspect(login["access_token"], "service")).json()["active"] is True

    disabled = await cli(world, "clients", "disable", "app")
    assert disabled["sessions_revoked"] == 1
    # In the disabling transaction: the session is revoked, read through a fresh engine.
    db = Database(world.settings.database_url)
    try:
        revoked = await db.read(
            lambda conn: conn.execute(
                select(RefreshFamily.revoked_at).where(
                    RefreshFamily.client_id == world.client_id("app")
                )
            ).scalar_one()
        )
    finally:
        await db.dispose()
    assert revoked is not None
    # Introspection reads the client afresh: its access tokens are inactive at once.
    assert (await world.introspect(login["access_token"], "service")).json() == {"active": False}
    assert (await world.introspect(service_token, "service")).json()["active"] is True

    clock.advance(CACHE_TTL)
    form = {"grant_type": "password", "username": "alice", "password": PASSWORD}
    assert_oauth_error(await world.token(form, auth=app), 401, "invalid_client")
    refresh = {"grant_type": "refresh_token", "refresh_token": login["refresh_token"]}
    assert_oauth_error(await world.token(refresh, auth=app), 401, "invalid_client")

    # Enabled again, it logs in anew; the sessions revoked by disabling stay revoked.
    await cli(world, "clients", "enable", "app")
    assert (await world.token(form, auth=app)).status_code == 200
    assert_oauth_error(await world.token(refresh, auth=app), 400, "invalid_grant")


async def test_a_deleted_client_is_refused_and_its_tokens_are_inactive(
    world: World, clock: Clock
) -> None:
    token = (await client_token(world, world.secrets["service"])).json()["access_token"]
    await cli(world, "clients", "delete", "service")
    introspected = await world.post("/oauth/introspect", {"token": token}, auth=world.basic("app"))
    assert introspected.json() == {"active": False}
    clock.advance(CACHE_TTL)
    await assert_refused(world, world.secrets["service"])
