"""``/auth`` bodies are JSON (README, "Logging in users"): any other Content-Type is a
415 in the /auth error shape, since ``text/plain`` is what a cross-site page may send
without a CORS preflight; a body nested thousands deep is a 400, not a crash. Requests
whose body is optional still work without one. Nothing changes on a refusal."""

from __future__ import annotations

import json

import pytest

from tests.helpers.world import PASSWORD, World, WorldConfig, csrf

pytestmark = pytest.mark.asyncio(loop_scope="module")
NOT_JSON = {"detail": "the body must be Content-Type: application/json"}


@pytest.fixture(scope="module")
def world_config() -> WorldConfig:
    return WorldConfig(settings={"login_max_failures_address": 1000})


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonx",
        "application/json; charset=latin-1",
        None,
    ],
)
@pytest.mark.parametrize("path", ["/auth/login", "/auth/register", "/auth/refresh"])
async def test_a_body_that_is_not_declared_json_is_a_415(
    world: World, path: str, content_type: str | None
) -> None:
    name, email = await world.new_user()
    body = {"username": name, "password": PASSWORD, "delivery": "body"}
    if path == "/auth/register":
        body = {"username": f"n{name}", "email": f"n{email}", "password": PASSWORD}
    headers = {} if content_type is None else {"Content-Type": content_type}
    async with world.unchanged():
        response = await world.browser().post(
            path, content=json.dumps(body).encode(), headers=headers
        )
    assert (response.status_code, response.json()) == (415, NOT_JSON)


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json; charset=utf-8", 'Application/JSON; charset="UTF-8"'],
)
async def test_json_with_or_without_a_utf8_charset_is_accepted(
    world: World, content_type: str
) -> None:
    name, _ = await world.new_user()
    body = {"username": name, "password": PASSWORD, "delivery": "body"}
    response = await world.browser().post(
        "/auth/login", content=json.dumps(body).encode(), headers={"Content-Type": content_type}
    )
    assert response.status_code == 200, response.text


async def test_cookie_refresh_and_logout_still_work_without_a_body(world: World) -> None:
    client = await world.logged_in()
    refreshed = await client.post("/auth/refresh", headers=csrf(client))
    assert refreshed.status_code == 200, refreshed.text
    logout = await client.post("/auth/logout", headers=csrf(client))
    assert logout.status_code == 200, logout.text
    assert (await client.get("/auth/me")).status_code == 401


@pytest.mark.parametrize("path", ["/auth/login", "/auth/register", "/auth/refresh", "/auth/logout"])
@pytest.mark.parametrize(
    "body", [b"[" * 5000 + b"]" * 5000, b'{"refresh": ' + b"[" * 5000 + b"]" * 5000 + b"}"]
)
async def test_deeply_nested_json_is_a_400_and_logs_no_error(
    world: World, caplog: pytest.LogCaptureFixture, path: str, body: bytes
) -> None:
    async with world.seen_by(caplog).unchanged():
        response = await world.browser().post(
            path, content=body, headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 400
    assert response.json() == {"detail": "malformed request: JSON nested too deeply"}
