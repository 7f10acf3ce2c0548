"""The token endpoint's answer, sent without Litestar's general response path
(``authority.web.http.ReadyJson``): the same headers as any JSON answer of ours, its
length right, one request id, and the CORS headers when an allowed origin asks."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.world import ClientSpec, WorldConfig

pytestmark = pytest.mark.asyncio(loop_scope="module")
ORIGIN = "https://app.example"
CLIENTS = {"service": ClientSpec(False, ["client_credentials"], ["read"], ["billing"])}


async def test_a_token_answer_has_exactly_the_json_and_no_store_headers(tmp_path: Path) -> None:
    config = WorldConfig(settings={"secret_key": "s" * 40}, clients=CLIENTS)
    async with config.open(tmp_path) as world:
        answer = await world.http.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            headers={"Authorization": world.basic("service"), "X-Request-ID": "req-1"},
        )
    assert answer.status_code == 200
    assert answer.headers.get_list("content-type") == ["application/json"]
    assert answer.headers.get_list("cache-control") == ["no-store"]
    assert answer.headers.get_list("pragma") == ["no-cache"]
    assert answer.headers.get_list("x-request-id") == ["req-1"]
    assert int(answer.headers["content-length"]) == len(answer.content)
    assert answer.json()["token_type"] == "Bearer"


async def test_an_allowed_origin_gets_the_cors_headers_on_a_token_answer(tmp_path: Path) -> None:
    settings = {"secret_key": "s" * 40, "cors_origins": (ORIGIN,)}
    async with WorldConfig(settings=settings, clients=CLIENTS).open(tmp_path) as world:
        answer = await world.http.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            headers={"Authorization": world.basic("service"), "Origin": ORIGIN},
        )
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == ORIGIN
    assert answer.headers["access-control-allow-credentials"] == "true"
    assert answer.headers["cache-control"] == "no-store"
