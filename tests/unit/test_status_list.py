"""The token status list end to end in process (README, "Revocation that reaches
resource servers"): every access token names its index, ``GET /status/1`` serves the
signed list with its cache headers, and each kind of revocation sets the bit of the
tokens it revokes (seen by the app's own poll of the database), and no other."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import jwt
import pytest
from click.testing import CliRunner

from authority.accounts.users import get_user
from authority.cli.main import main
from authority.sessions.families import revoke_client_families
from authority.sessions.lifecycle import set_user_active
from authority.status.indexes import FLUSH
from authority.status.publisher import POLL
from authority.verifier.status_bits import decode, is_set
from tests.helpers.world import World, WorldConfig

pytestmark = pytest.mark.asyncio(loop_scope="module")
URI = "http://testserver.local/status/1"


@pytest.fixture(scope="module")
def world_config() -> WorldConfig:
    return WorldConfig(
        settings={"issuer": "http://testserver.local", "refresh_reuse_grace": 0},
        session_scope="read",
    )


def index(world: World, access_token: str) -> int:
    ref = world.decode(access_token)["status"]["status_list"]
    assert ref["uri"] == URI
    assert isinstance(ref["idx"], int)
    return int(ref["idx"])


async def status_token(world: World) -> dict[str, Any]:
    response = await world.http.get("/status/1")
    assert response.status_code == 200, response.text
    token = response.text
    kid = jwt.get_unverified_header(token)["kid"]
    return dict(jwt.decode(token, world.jwks[kid].key, ["RS256"], options={"verify_aud": False}))


async def bit(world: World, idx: int, *, becomes: bool = True) -> bool:
    """The bit of ``idx`` once the app's poll had time to see a change (or the last
    value seen, after two polls and a half)."""
    deadline = time.monotonic() + 2.5 * POLL
    while True:
        found = is_set(decode((await status_token(world))["status_list"]["lst"]), idx)
        if found is becomes or time.monotonic() > deadline:
            return bool(found)
        await asyncio.sleep(0.1)


async def test_every_access_token_names_a_fresh_index_of_the_list(world: World) -> None:
    first = index(world, world.access_token)
    refreshed = await world.refresh(world.refresh_token)
    assert refreshed.status_code == 200
    service = await world.token({"grant_type": "client_credentials"}, client="service")
    assert service.status_code == 200, service.text
    held = {first, index(world, refreshed.json()["access_token"])}
    held.add(index(world, service.json()["access_token"]))
    assert len(held) == 3


async def test_the_list_is_a_signed_statuslist_jwt_served_with_etag_and_304(
    world: World,
) -> None:
    response = await world.http.get("/status/1", headers={"Accept": "application/statuslist+jwt"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/statuslist+jwt"
    assert response.headers["cache-control"] == f"public, max-age={world.settings.status_list_ttl}"
    etag = response.headers["etag"]
    assert etag.startswith('"')
    assert etag.endswith('"')
    header = jwt.get_unverified_header(response.text)
    assert header["typ"] == "statuslist+jwt"
    assert header["kid"] in {key.key_id for key in world.jwks.keys}
    claims = await status_token(world)
    assert claims["sub"] == URI
    assert claims["ttl"] == world.settings.status_list_ttl
    assert claims["exp"] > claims["iat"] + claims["ttl"]
    assert claims["status_list"]["bits"] == 1
    assert len(decode(claims["status_list"]["lst"])) == world.settings.status_list_size // 8
    again = await world.http.get("/status/1", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    other = await world.http.get("/status/1", headers={"If-None-Match": '"other"'})
    assert other.status_code == 200


async def test_revoking_an_access_token_sets_its_bit_and_no_other(world: World) -> None:
    bystander = index(world, (await world.login())["access_token"])
    idx = index(world, world.access_token)
    response = await world.post(
        "/oauth/revoke", {"token": world.access_token}, auth=world.basic("app")
    )
    assert response.status_code == 200
    assert await bit(world, idx)
    assert not await bit(world, bystander, becomes=True)


async def test_revoking_a_refresh_token_sets_the_bits_of_its_familys_access_tokens(
    world: World,
) -> None:
    older = index(world, world.access_token)
    rotated = (await world.refresh(world.refresh_token)).json()
    response = await world.post(
        "/oauth/revoke", {"token": rotated["refresh_token"]}, auth=world.basic("app")
    )
    assert response.status_code == 200
    assert await bit(world, older)
    assert await bit(world, index(world, rotated["access_token"]))


async def test_refresh_token_reuse_sets_the_bits_of_the_whole_family(world: World) -> None:
    rotated = (await world.refresh(world.refresh_token)).json()
    assert (await world.refresh(world.refresh_token)).status_code == 400  # reuse
    assert await bit(world, index(world, world.access_token))
    assert await bit(world, index(world, rotated["access_token"]))


async def test_disabling_the_user_sets_the_bits_of_all_their_sessions(world: World) -> None:
    second = index(world, (await world.login())["access_token"])
    user = await world.db.read(get_user, world.user_id)
    assert user is not None
    await world.db.write(set_user_active, user, False, time.time())
    assert await bit(world, index(world, world.access_token))
    assert await bit(world, second)


async def test_disabling_a_client_sets_the_bits_of_its_users_sessions(world: World) -> None:
    other = index(world, (await world.login(client="other"))["access_token"])
    await world.db.write(revoke_client_families, world.client_id("app"), "test", time.time())
    assert await bit(world, index(world, world.access_token))
    assert not await bit(world, other, becomes=True)


def clients_command(world: World, *args: str) -> None:
    """``authority clients ARGS`` against this world's database (the real CLI)."""
    settings = world.settings
    env = {
        "AUTHORITY_ENV": "test",
        "AUTHORITY_DATABASE_URL": settings.database_url,
        "AUTHORITY_KEYS_DIR": str(settings.keys_dir),
        "AUTHORITY_SECRET_KEY": "s" * 40,
    }
    result = CliRunner().invoke(main, ["clients", *args], env=env, prog_name="authority")
    assert result.exit_code == 0, result.stderr


async def test_disabling_a_client_sets_the_bits_of_its_client_credentials_tokens(
    world: World,
) -> None:
    """They belong to no family: their indexes are written with their client once a
    second. Introspection agrees with the list, even after the client is enabled again."""
    form = {"grant_type": "client_credentials", "scope": "read"}
    older = (await world.token(form, client="service")).json()["access_token"]
    await asyncio.sleep(2 * FLUSH)  # written by the app's flush
    newer = (await world.token(form, client="service")).json()["access_token"]
    bystander = index(world, world.access_token)
    assert (await world.introspect(older, client="service")).json()["active"] is True
    try:
        await asyncio.to_thread(clients_command, world, "disable", world.client_id("service"))
        assert await bit(world, index(world, older))
        assert await bit(world, index(world, newer))  # written after the disabling, or before
        assert not await bit(world, bystander, becomes=True)
    finally:
        await asyncio.to_thread(clients_command, world, "enable", world.client_id("service"))
    for revoked_token in (older, newer):
        assert (await world.introspect(revoked_token, client="service")).json() == {"active": False}
    fresh = (await world.token(form, client="service")).json()["access_token"]
    assert not await bit(world, index(world, fresh), becomes=True)
    assert (await world.introspect(fresh, client="service")).json()["active"] is True


def metric(text: str, name: str) -> float:
    """The value of an unlabelled sample of the ``/metrics`` text."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


async def test_the_metrics_give_the_lists_size_its_bits_and_its_rebuilds(world: World) -> None:
    before = (await world.http.get("/metrics")).text
    rebuilds = metric(before, "authority_status_list_rebuilds_total")
    idx = index(world, world.access_token)
    response = await world.post(
        "/oauth/revoke", {"token": world.access_token}, auth=world.basic("app")
    )
    assert response.status_code == 200
    assert await bit(world, idx)
    served = await world.http.get("/status/1")
    text = (await world.http.get("/metrics")).text
    assert metric(text, "authority_status_list_rebuilds_total") > rebuilds
    assert metric(text, "authority_status_list_bytes") == len(served.content)
    lst = (await status_token(world))["status_list"]["lst"]
    bits = decode(lst)
    assert metric(text, "authority_status_list_bits_set") == sum(
        bin(byte).count("1") for byte in bits
    )
