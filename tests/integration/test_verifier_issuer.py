"""A resource server configured with the authority's issuer plus a trailing slash (the
usual slip): against a real ``authority serve``, every token is refused as
``wrong_issuer`` with both issuers in the error and in the log, and the middleware
answers 401, not the 503 of an outage (docs/verifier.md, "Failure modes")."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from authority.verifier import InvalidToken, IssuerMismatch, KeysUnavailable, Verifier
from authority.verifier.asgi import BearerAuthMiddleware, Receive, Scope, Send
from tests.helpers.deployment import Deployment, provision
from tests.helpers.processes import Server


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    workdir = tmp_path_factory.mktemp("verifier-issuer")
    deployment: Deployment = provision(workdir, f"sqlite+aiosqlite:///{workdir / 'a.db'}")
    service = deployment.create_client("svc")
    [server] = deployment.start()
    try:
        issued = httpx.post(
            f"{server.url}/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(service.client_id, str(service.client_secret)),
        )
        assert issued.status_code == 200, issued.text
        yield server, issued.json()["access_token"]
    finally:
        deployment.stop()


async def protected(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def test_the_exact_issuer_verifies(authority: tuple[Server, str]) -> None:
    server, token = authority
    assert Verifier(server.url, "default").verify(token)["iss"] == server.url


def test_a_trailing_slash_is_wrong_issuer_with_both_issuers(
    authority: tuple[Server, str], caplog: pytest.LogCaptureFixture
) -> None:
    server, token = authority
    caplog.set_level(logging.WARNING, "authority.verifier")
    verifier = Verifier(server.url + "/", "default")
    with pytest.raises(IssuerMismatch) as refused:
        verifier.load_keys()
    message = str(refused.value)
    assert f"expects issuer '{server.url}/'" in message
    assert f"names '{server.url}'" in message
    assert [r.levelname for r in caplog.records] == ["ERROR"]
    assert f"'{server.url}/'" in caplog.records[0].getMessage()
    with pytest.raises(InvalidToken) as again:
        verifier.verify(token)
    assert again.value.reason == "wrong_issuer"
    assert not isinstance(again.value, KeysUnavailable)


async def test_the_middleware_answers_401_naming_both_issuers_not_503(
    authority: tuple[Server, str],
) -> None:
    server, token = authority
    app: Any = BearerAuthMiddleware(protected, Verifier(server.url + "/", "default"))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api"
    ) as client:
        answer = await client.get("/orders", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 401
    assert answer.json()["error"] == "invalid_token"
    challenge = answer.headers["www-authenticate"]
    assert challenge.startswith('Bearer error="invalid_token"')
    assert f"'{server.url}/'" in challenge
    assert f"'{server.url}'" in challenge
