"""The verifier against the real app in process (``STATUS_LIST_TTL`` 2 s): an access
token verifies, is revoked at ``/oauth/revoke``, and within the ttl plus the app's
poll the same verifier says ``revoked``, with no request to the authority per token."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Mapping

import pytest

from authority.status.publisher import POLL
from authority.verifier import HttpResponse, InvalidToken, Verifier
from tests.helpers.world import World, WorldConfig

pytestmark = pytest.mark.asyncio(loop_scope="module")
ISSUER = "http://testserver.local"
TTL = 2


@pytest.fixture(scope="module")
def world_config() -> WorldConfig:
    return WorldConfig(settings={"issuer": ISSUER, "status_list_ttl": TTL}, session_scope="read")


def verifier_of(world: World, loop: asyncio.AbstractEventLoop, seen: Counter[str]) -> Verifier:
    """A verifier whose HTTP client is the app itself (its fetch thread runs each GET
    on the test's event loop)."""

    def fetch(url: str, headers: Mapping[str, str], timeout: float) -> HttpResponse:
        assert url.startswith(ISSUER)
        path = url.removeprefix(ISSUER)
        seen[path] += 1
        request = world.http.get(path, headers=dict(headers))
        response = asyncio.run_coroutine_threadsafe(request, loop).result(timeout)
        lowered = {k.lower(): v for k, v in response.headers.items()}
        return HttpResponse(response.status_code, lowered, response.content)

    audience = world.decode(world.access_token)["aud"]
    # jwks_url: the metadata endpoint refuses an http issuer (authlib), so skip it.
    return Verifier(ISSUER, audience, jwks_url=ISSUER + "/.well-known/jwks.json", fetch=fetch)


async def test_a_revoked_access_token_is_refused_within_the_ttl(world: World) -> None:
    seen: Counter[str] = Counter()
    verifier = verifier_of(world, asyncio.get_running_loop(), seen)
    access = world.access_token
    bystander = (await world.login())["access_token"]
    for _ in range(50):
        assert (await verifier.averify(access))["sub"]
    assert seen["/status/1"] == 1
    assert verifier.status_list_age(ISSUER + "/status/1") is not None
    response = await world.post("/oauth/revoke", {"token": access}, auth=world.basic("app"))
    assert response.status_code == 200
    started = time.monotonic()
    reason = None
    while reason is None:
        try:
            await verifier.averify(access)
        except InvalidToken as exc:
            reason = exc.reason
        else:
            assert time.monotonic() - started < TTL + 2 * POLL + 1, "still accepted"
            await asyncio.sleep(0.05)
    assert reason == "revoked"
    assert (await verifier.averify(bystander))["sub"]
    # One list fetch per ttl at most, however many verifications.
    assert seen["/status/1"] <= (time.monotonic() - started) / TTL + 2
