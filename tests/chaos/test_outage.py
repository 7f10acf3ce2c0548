"""A PostgreSQL outage under a running ``authority serve`` (README, "HTTP API"): a database
outage answers 503 with ``Retry-After`` and ``{"error": "temporarily_unavailable"}``,
on ``/oauth/*`` and on ``/auth/login`` and ``/auth/refresh`` (tokens in the body).

The server runs on a PostgreSQL cluster of the test's own (``tests/helpers/postgres.py``),
stopped like a crash (``pg_ctl stop --mode=immediate``) and started again. While it is
down, every answer of the token endpoint comes within 5 seconds and is a 503 with
``Retry-After``; revocation never claims success, introspection never says active.
Once it is back the same server process serves again, and nothing the failed requests
asked for happened.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.deployment import PASSWORD, USERNAME, Client, Deployment, provision
from tests.helpers.postgres import OwnPostgres, own_postgres
from tests.helpers.processes import Server

ISSUER = "http://authority.test"
DEADLINE = 5.0  # seconds: every answer during the outage comes sooner
OUTAGE = 3.0  # seconds of requests while PostgreSQL is down


@pytest.fixture
def postgres() -> Iterator[OwnPostgres]:
    with own_postgres() as cluster:
        yield cluster


@pytest.fixture
def deployment(postgres: OwnPostgres, tmp_path: Path) -> Iterator[Deployment]:
    """One server on the test's own PostgreSQL, keys in the database as replicas keep them."""
    deployment = provision(
        tmp_path,
        postgres.url,
        AUTHORITY_KEYSTORE="database",
        AUTHORITY_ISSUER=ISSUER,
        AUTHORITY_KEYSTORE_POLL_INTERVAL="0.5",
        AUTHORITY_REFRESH_REUSE_GRACE="0",
    )
    yield deployment
    deployment.stop()


@dataclass(frozen=True)
class Answer:
    name: str
    status: int
    seconds: float
    retry_after: str | None
    body: dict[str, Any]


def timed(name: str, send: Callable[[], httpx.Response]) -> Answer:
    started = time.monotonic()
    response = send()
    return Answer(
        name,
        response.status_code,
        time.monotonic() - started,
        response.headers.get("retry-after"),
        response.json(),
    )


def secret(client: Client) -> tuple[str, str]:
    assert client.client_secret is not None
    return client.client_id, client.client_secret


def requests_of(
    http: httpx.Client, browser: httpx.Client, refresh: str, access: str, first_party_refresh: str
) -> dict[str, Callable[[], httpx.Response]]:
    """Every kind of request a client may send while the database is down: the OAuth
    endpoints (``http`` authenticates the client) and the first-party ``/auth`` API
    with tokens in the body (``browser``)."""

    def post(path: str, **form: str) -> Callable[[], httpx.Response]:
        return lambda: http.post(path, data=form)

    def post_json(path: str, **body: str) -> Callable[[], httpx.Response]:
        return lambda: browser.post(path, json=body)

    return {
        "auth login": post_json(
            "/auth/login", username=USERNAME, password=PASSWORD, delivery="body"
        ),
        "auth refresh": post_json("/auth/refresh", refresh=first_party_refresh),
        "refresh": post("/oauth/token", grant_type="refresh_token", refresh_token=refresh),
        "password": post(
            "/oauth/token", grant_type="password", username=USERNAME, password=PASSWORD
        ),
        "revoke refresh": post("/oauth/revoke", token=refresh),
        "revoke access": post("/oauth/revoke", token=access),
        "introspect refresh": post("/oauth/introspect", token=refresh),
        "introspect access": post("/oauth/introspect", token=access),
    }


def login(server: Server, app: Client) -> dict[str, Any]:
    response = httpx.post(
        f"{server.url}/oauth/token",
        auth=secret(app),
        timeout=10,
        data={"grant_type": "password", "username": USERNAME, "password": PASSWORD},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_while_postgresql_is_down_every_endpoint_answers_503_in_time_and_the_server_recovers_without_a_restart(  # noqa: E501
    postgres: OwnPostgres, deployment: Deployment
) -> None:
    app = deployment.create_client("app", "--grant", "password", "--grant", "refresh_token")
    (server,) = deployment.start(1)
    session = login(server, app)
    refresh, access = session["refresh_token"], session["access_token"]
    http = httpx.Client(base_url=server.url, timeout=30, auth=secret(app))
    browser = httpx.Client(base_url=server.url, timeout=30)
    try:
        first_party = browser.post(
            "/auth/login", json={"username": USERNAME, "password": PASSWORD, "delivery": "body"}
        )
        assert first_party.status_code == 200, first_party.text
        requests = requests_of(
            http, browser, refresh, access, first_party.json()["tokens"]["refresh"]
        )
        outage_and_recovery(postgres, server, app, requests)
    finally:
        http.close()
        browser.close()


def outage_and_recovery(
    postgres: OwnPostgres,
    server: Server,
    app: Client,
    requests: dict[str, Callable[[], httpx.Response]],
) -> None:
    before = timed("introspect access", requests["introspect access"])
    assert (before.status, before.body["active"]) == (200, True)

    postgres.stop()
    stopped = time.monotonic()
    answers: list[Answer] = []
    first_503: float | None = None
    with ThreadPoolExecutor(len(requests)) as pool:
        while time.monotonic() - stopped < OUTAGE:
            for answer in pool.map(lambda item: timed(*item), requests.items()):
                answers.append(answer)
                if first_503 is None and answer.status == 503:
                    first_503 = time.monotonic() - stopped
        ready = httpx.get(f"{server.url}/health/ready", timeout=DEADLINE)

    assert first_503 is not None
    assert first_503 < DEADLINE
    slow = [a for a in answers if a.seconds >= DEADLINE]
    assert not slow, slow[:3]
    wrong = [
        a
        for a in answers
        if (a.status, a.retry_after, a.body.get("error")) != (503, "5", "temporarily_unavailable")
    ]
    assert not wrong, wrong[:3]
    assert len(answers) >= 3 * len(requests), "too few rounds to mean anything"
    assert ready.status_code == 503
    # The public answer names the check; the driver's words go to the log only.
    assert ready.json()["checks"]["database"] == "unavailable"
    assert "database unreachable" in server.log.read_text()
    print(
        f"outage: first 503 after {first_503:.3f}s, {len(answers)} answers, slowest "
        f"{max(a.seconds for a in answers):.3f}s"
    )

    postgres.start()
    restarted = time.monotonic()
    while (back := timed("introspect access", requests["introspect access"])).status != 200:
        assert back.status == 503, back
        assert time.monotonic() - restarted < 20, "no recovery 20 s after PostgreSQL came back"
        time.sleep(0.1)
    print(f"recovered {time.monotonic() - restarted:.3f}s after PostgreSQL was back")
    assert server.process.poll() is None, "the server had to restart"
    # Nothing the failed requests asked for happened: the session was not revoked, the
    # refresh token was not consumed.
    assert back.body["active"] is True
    rotated = timed("refresh", requests["refresh"])
    assert rotated.status == 200, rotated
    assert timed("auth refresh", requests["auth refresh"]).status == 200
    assert httpx.get(f"{server.url}/health/ready", timeout=5).status_code == 200
    # And everything works again: reuse detection and revocation commit.
    reused = timed("refresh", requests["refresh"])
    assert (reused.status, reused.body["error"]) == (400, "invalid_grant")
    assert timed("introspect access", requests["introspect access"]).body == {"active": False}
    fresh = login(server, app)
    with httpx.Client(base_url=server.url, timeout=10, auth=secret(app)) as http:
        assert http.post("/oauth/revoke", data={"token": fresh["refresh_token"]}).status_code == 200
        assert http.post("/oauth/introspect", data={"token": fresh["access_token"]}).json() == {
            "active": False
        }
