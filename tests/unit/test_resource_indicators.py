"""The audience of a token (``grants/common.py``): ``resource`` (RFC 8707 section 2) is
the standard spelling of our ``audience`` parameter, and a client registered with
audiences gets its first when a request names none. A malformed, unknown or not
allowed target is ``invalid_target``; two different targets are ``invalid_request``;
a refused request changes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers.oauth import assert_oauth_error
from tests.helpers.world import ClientSpec, World, WorldConfig

pytestmark = pytest.mark.asyncio(loop_scope="module")
CLIENTS = {
    "app": ClientSpec(False, ["password", "refresh_token"], audiences=["api://orders"]),
    "orders": ClientSpec(False, ["client_credentials"], audiences=["api://orders", "api://stock"]),
    "plain": ClientSpec(False, ["client_credentials"]),
}


@pytest.fixture(scope="module")
def world_config() -> WorldConfig:
    return WorldConfig(clients=CLIENTS, session_scope="read")


def audience(world: World, body: dict[str, Any], expected: str) -> str:
    """The ``aud`` of the answer's access token, verified against ``expected``."""
    return str(world.decode(body["access_token"], audience=expected)["aud"])


async def test_a_client_registered_with_audiences_gets_its_first_by_default(
    world: World,
) -> None:
    orders = await world.token({"grant_type": "client_credentials"}, client="orders")
    assert audience(world, orders.json(), "api://orders") == "api://orders"
    # The session of ``app`` (password grant) was opened naming no audience.
    assert audience(world, world.session, "api://orders") == "api://orders"
    refreshed = await world.refresh(world.refresh_token)
    assert audience(world, refreshed.json(), "api://orders") == "api://orders"
    plain = await world.token({"grant_type": "client_credentials"}, client="plain")
    assert audience(world, plain.json(), "default") == world.settings.audience


@pytest.mark.parametrize(
    ("form", "expected"),
    [
        ({"resource": "api://stock"}, "api://stock"),
        ({"resource": "api://stock", "audience": "api://stock"}, "api://stock"),
        ({"audience": "api://stock"}, "api://stock"),
        ({"audience": "default"}, "default"),  # AUTHORITY_AUDIENCE stays nameable
    ],
)
async def test_resource_names_the_audience_like_the_audience_parameter(
    world: World, form: dict[str, str], expected: str
) -> None:
    response = await world.token({"grant_type": "client_credentials", **form}, client="orders")
    assert response.status_code == 200, response.text
    assert audience(world, response.json(), expected) == expected


@pytest.mark.parametrize(
    ("body", "error"),
    [
        pytest.param("resource=api%3A%2F%2Fpayroll", "invalid_target", id="not the client's"),
        pytest.param("audience=api%3A%2F%2Fpayroll", "invalid_target", id="audience not allowed"),
        pytest.param("resource=orders", "invalid_target", id="not an absolute URI"),
        pytest.param("resource=api%3A%2F%2Forders%23x", "invalid_target", id="fragment"),
        pytest.param("resource=api%3A%2F%2Forders+x", "invalid_target", id="space"),
        pytest.param("resource=%3A%2F%2Forders", "invalid_target", id="no scheme"),
        pytest.param(
            "resource=api%3A%2F%2Forders&resource=api%3A%2F%2Fstock",
            "invalid_target",
            id="two resources",
        ),
        pytest.param(
            "resource=api%3A%2F%2Forders&audience=api%3A%2F%2Fstock",
            "invalid_request",
            id="audience and resource differ",
        ),
    ],
)
async def test_a_bad_target_is_refused_and_changes_nothing(
    world: World, body: str, error: str
) -> None:
    async with world.unchanged():
        response = await world.token(f"grant_type=client_credentials&{body}", client="orders")
    assert_oauth_error(response, 400, error)


@pytest.mark.parametrize(
    ("form", "status", "error"),
    [
        ({"resource": "api://stock"}, 400, "invalid_target"),
        ({"resource": "api://orders", "audience": "default"}, 400, "invalid_request"),
    ],
)
async def test_a_refresh_keeps_its_audience_whatever_it_names(
    world: World, form: dict[str, str], status: int, error: str
) -> None:
    async with world.unchanged():
        response = await world.refresh(world.refresh_token, **form)
    assert_oauth_error(response, status, error)
    same = await world.refresh(world.refresh_token, resource="api://orders")
    assert audience(world, same.json(), "api://orders") == "api://orders"
