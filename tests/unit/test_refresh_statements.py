"""A refresh at ``/oauth/token`` makes no database call for its DPoP binding beyond its
rotation (``authority.sessions.binding``): the family's key is read with the token and
a first bind is written with the rotation. Counted, statement by statement, with a
SQLAlchemy ``before_cursor_execute`` listener: the statements that name
``refresh_families`` would be the rotation's own, but the rotation runs on the driver's
own connection on both backends (on PostgreSQL its one statement on asyncpg's
connection, ``sessions.one_statement``; on SQLite its lookup on the driver's cursor,
``sessions.hot``), so the listener sees none: any statement it sees is an extra one, for
a plain refresh as for a DPoP-bound one."""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from tests.helpers.dpop import make_proof
from tests.helpers.postgres import BACKENDS
from tests.helpers.world import PASSWORD, ClientSpec, World, WorldConfig, on_backend

pytestmark = pytest.mark.asyncio(loop_scope="module")
CLIENTS = {
    "spa": ClientSpec(True, ["password", "refresh_token"], ["read"]),
    "app": ClientSpec(False, ["password", "refresh_token"], ["read"]),
}


@pytest.fixture(scope="module", params=BACKENDS)
def world_config(request: pytest.FixtureRequest) -> Iterator[WorldConfig]:
    base = WorldConfig(settings={"maintenance_interval": 3600}, clients=CLIENTS)
    with on_backend(base, request.param) as config:
        yield config


@contextlib.contextmanager
def statements() -> Iterator[list[str]]:
    """The SQL of every statement any engine sends meanwhile."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        seen.append(sql)

    event.listen(Engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", record)


def proof(world: World) -> dict[str, str]:
    claims: dict[str, Any] = {
        "htu": f"{world.settings.issuer}/oauth/token",
        "iat": int(time.time()),
        "jti": secrets.token_urlsafe(16),
    }
    return {"DPoP": make_proof(None, **claims)}


async def login(world: World, client: str, headers: dict[str, str]) -> str:
    form = {
        "grant_type": "password",
        "username": (await world.new_user())[0],
        "password": PASSWORD,
    }
    if client == "spa":
        form["client_id"] = world.client_id("spa")
    response = await world.token(form, client=None if client == "spa" else client, headers=headers)
    assert response.status_code == 200, response.text
    return str(response.json()["refresh_token"])


async def family_statements(world: World, client: str, refresh_token: str, dpop: bool) -> int:
    """How many statements naming ``refresh_families`` one refresh sends."""
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    if client == "spa":
        form["client_id"] = world.client_id("spa")
    with statements() as seen:
        response = await world.token(
            form, client=None if client == "spa" else client, headers=proof(world) if dpop else {}
        )
    assert response.status_code == 200, response.text
    return sum("refresh_families" in sql for sql in seen)


async def test_a_refresh_sends_only_its_rotation_plain_or_dpop_bound(world: World) -> None:
    rotation = 0  # the rotation's own statements go past SQLAlchemy (see above)
    plain = await login(world, "app", {})
    assert await family_statements(world, "app", plain, dpop=False) == rotation
    bound = await login(world, "spa", proof(world))  # a public client's family is bound
    assert await family_statements(world, "spa", bound, dpop=True) == rotation
