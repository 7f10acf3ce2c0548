"""Refresh token rotation under concurrency and reuse (README, "Tokens"), against real
``authority serve`` processes: two sharing one SQLite database (their writes queue on
its lock file, some on the event loop, some on the writer thread) and two sharing one
PostgreSQL database.

"N simultaneous refreshes with one token, on any number of replicas, give exactly one
winner when the grace is 0, and never a 5xx." The racing requests reach the servers
together (see ``simultaneously``); what the database holds afterwards is read through
a fresh connection.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import pytest

from tests.helpers.deployment import PASSWORD, USERNAME, Client, Deployment, database, provision
from tests.helpers.processes import Server

RACERS = 20
ISSUER = "http://authority.test"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def deployment(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    """Two replicas sharing the database: on SQLite the keys directory too, on
    PostgreSQL the (database) key store."""
    workdir = tmp_path_factory.mktemp(f"races-{request.param}")
    with database(request.param, workdir) as url:
        extra = {"AUTHORITY_KEYSTORE": "database"} if request.param == "postgresql" else {}
        # One issuer for every replica, whatever port each listens on.
        yield provision(workdir, url, AUTHORITY_ISSUER=ISSUER, **extra)


@pytest.fixture(scope="module")
def app(deployment: Deployment) -> Client:
    return deployment.create_client(
        "app", "--grant", "password", "--grant", "refresh_token", "--scope", "read"
    )


@pytest.fixture
def serve(deployment: Deployment) -> Iterator[Deployment]:
    """The deployment, whose servers started by the test are stopped after it."""
    yield deployment
    deployment.stop()


def start(deployment: Deployment, grace: int) -> list[Server]:
    servers = deployment.start(2, AUTHORITY_REFRESH_REUSE_GRACE=str(grace))
    warm_up(servers)
    return servers


def credentials(client: Client) -> tuple[str, str]:
    assert client.client_secret is not None
    return client.client_id, client.client_secret


def login(server: Server, client: Client) -> str:
    """A first refresh token, from the password grant."""
    response = httpx.post(
        f"{server.url}/oauth/token",
        data={"grant_type": "password", "username": USERNAME, "password": PASSWORD},
        auth=credentials(client),
        timeout=10,
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["refresh_token"]
    return token


def refresh(server: Server, client: Client, token: str) -> httpx.Response:
    return httpx.post(
        f"{server.url}/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": token},
        auth=credentials(client),
        timeout=10,
    )


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]

    @property
    def error(self) -> str:
        return str(self.body.get("error", ""))


def simultaneously(servers: list[Server], request: Callable[[str], bytes]) -> list[Answer]:
    """``RACERS`` HTTP requests, taking turns among the servers, that reach them at the
    same instant: every request but its last byte is sent first, so each server has
    parsed the headers and waits for the rest; then the last bytes go out in one tight
    loop, microseconds apart (last-byte synchronisation)."""
    targets = [urlsplit(servers[i % len(servers)].url) for i in range(RACERS)]
    payloads = [request(target.netloc) for target in targets]
    sockets = [socket.create_connection((t.hostname, t.port), timeout=30) for t in targets]
    try:
        for sock, payload in zip(sockets, payloads, strict=True):
            sock.sendall(payload[:-1])
        time.sleep(0.3)
        for sock, payload in zip(sockets, payloads, strict=True):
            sock.sendall(payload[-1:])
        answers = []
        for sock in sockets:
            response = http.client.HTTPResponse(sock)
            response.begin()
            answers.append(Answer(response.status, json.loads(response.read())))
        return answers
    finally:
        for sock in sockets:
            sock.close()


def refresh_together(servers: list[Server], client: Client, token: str) -> list[Answer]:
    client_id, secret = credentials(client)
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    body = urlencode({"grant_type": "refresh_token", "refresh_token": token}).encode()
    return simultaneously(
        servers,
        lambda host: (
            (
                f"POST /oauth/token HTTP/1.1\r\nHost: {host}\r\nAuthorization: Basic {basic}\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            ).encode()
            + body
        ),
    )


def warm_up(servers: list[Server]) -> None:
    """Make each server open its pool of database connections before a race: on a cold
    pool the first request to connect would win long before the others start."""
    answers = simultaneously(
        servers,
        lambda host: (
            f"GET /health/ready HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        ).encode(),
    )
    assert {a.status for a in answers} == {200}, answers


def digest(token: str) -> bytes:
    """SHA-256 of the token: how the authority stores it (tokens.refresh_token_hash),
    written out here instead of imported."""
    return hashlib.sha256(token.encode()).digest()


def stored(deployment: Deployment, token: str) -> Any:
    rows = deployment.query(
        "SELECT id, family_id, parent_id, consumed_at FROM refresh_tokens WHERE token_hash = :hash",
        hash=digest(token),
    )
    assert len(rows) == 1, f"refresh token stored {len(rows)} times"
    return rows[0]


def children(deployment: Deployment, token_id: int) -> list[Any]:
    return deployment.query(
        "SELECT token_hash, family_id FROM refresh_tokens WHERE parent_id = :id", id=token_id
    )


def family_revoked_at(deployment: Deployment, family_id: str) -> float | None:
    rows = deployment.query("SELECT revoked_at FROM refresh_families WHERE id = :id", id=family_id)
    assert len(rows) == 1
    revoked_at: float | None = rows[0].revoked_at
    return revoked_at


def summary(answers: list[Answer]) -> list[tuple[int, str]]:
    return [(a.status, a.error) for a in answers]


def test_without_grace_twenty_simultaneous_refreshes_have_exactly_one_winner_and_the_losers_revoke_the_family(  # noqa: E501
    serve: Deployment, app: Client
) -> None:
    servers = start(serve, grace=0)
    token = login(servers[0], app)
    answers = refresh_together(servers, app, token)

    outcomes = summary(answers)
    assert all(status < 500 for status, _ in outcomes), outcomes
    winners = [a for a in answers if a.status == 200]
    assert len(winners) == 1, outcomes
    assert sorted(outcomes) == sorted([(200, "")] + [(400, "invalid_grant")] * (RACERS - 1))

    presented = stored(serve, token)
    assert presented.consumed_at is not None
    child = children(serve, presented.id)
    assert len(child) == 1, f"{len(child)} children of one refresh token"
    assert bytes(child[0].token_hash) == digest(winners[0].body["refresh_token"])
    # With grace 0 the losers are reuse: the whole family is revoked, and committed.
    assert family_revoked_at(serve, presented.family_id) is not None
    late = refresh(servers[-1], app, winners[0].body["refresh_token"])
    assert (late.status_code, late.json()["error"]) == (400, "invalid_grant")


def test_within_the_grace_window_twenty_simultaneous_refreshes_all_get_distinct_tokens_of_the_same_family(  # noqa: E501
    serve: Deployment, app: Client
) -> None:
    servers = start(serve, grace=30)
    token = login(servers[0], app)
    answers = refresh_together(servers, app, token)

    assert [a.status for a in answers] == [200] * RACERS, summary(answers)
    issued = [a.body["refresh_token"] for a in answers]
    assert len(set(issued)) == RACERS
    assert token not in issued

    presented = stored(serve, token)
    for new in issued:
        row = stored(serve, new)
        assert (row.family_id, row.parent_id) == (presented.family_id, presented.id)
        assert row.consumed_at is None
    assert len(children(serve, presented.id)) == RACERS
    assert family_revoked_at(serve, presented.family_id) is None


def test_once_one_racing_sibling_is_used_the_others_are_consumed_and_using_one_revokes_the_family(
    serve: Deployment, app: Client
) -> None:
    """A family never forks (README, "Tokens"), on any replica."""
    servers = start(serve, grace=30)
    token = login(servers[0], app)
    answers = refresh_together(servers, app, token)
    assert [a.status for a in answers] == [200] * RACERS, summary(answers)
    issued = [a.body["refresh_token"] for a in answers]

    used = refresh(servers[0], app, issued[0])
    assert used.status_code == 200, used.text
    assert all(stored(serve, other).consumed_at is not None for other in issued[1:])
    replayed = refresh(servers[-1], app, issued[1])
    assert (replayed.status_code, replayed.json()["error"]) == (400, "invalid_grant")
    assert family_revoked_at(serve, stored(serve, token).family_id) is not None


def test_reuse_after_the_grace_window_revokes_the_whole_family_and_the_revocation_is_committed(
    serve: Deployment, app: Client
) -> None:
    servers = start(serve, grace=1)
    first, last = servers[0], servers[-1]
    a = login(first, app)
    rotated = refresh(first, app, a)
    assert rotated.status_code == 200, rotated.text
    b = rotated.json()["refresh_token"]
    family = stored(serve, a).family_id
    assert stored(serve, b).family_id == family
    assert family_revoked_at(serve, family) is None

    time.sleep(1.5)
    reused = refresh(last, app, a)
    assert (reused.status_code, reused.json()["error"]) == (400, "invalid_grant")
    # The request failed, yet the revocation it caused is committed: B is dead too,
    # on either replica, and a new connection sees the family revoked.
    assert family_revoked_at(serve, family) is not None
    for server in (first, last):
        refused = refresh(server, app, b)
        assert (refused.status_code, refused.json()["error"]) == (400, "invalid_grant")
