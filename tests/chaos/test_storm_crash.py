"""SIGKILL of ``authority serve`` in the middle of a refresh storm, then a restart
(README, "Tokens", with ``REFRESH_REUSE_GRACE=0`` so that the rules are strict).

Many sessions rotate their refresh tokens as fast as the server answers; at a random
moment the server is killed, requests still in flight. After each restart, read
through a fresh connection: no family has two live heads, no row is half-written
(every token in an existing family, every child under a consumed parent of its own
family, every consumed token with exactly one child); what the server acknowledged
survived (the newest token it handed out still refreshes); and presenting a token
known to be consumed is still reuse, revoking the family.
"""

from __future__ import annotations

import hashlib
import random
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.helpers.deployment import PASSWORD, USERNAME, Client, Deployment, database, provision
from tests.helpers.processes import Server

KILLS = 3
SESSIONS = 8  # rotating at once, one thread each
JITTER = random.Random()  # noqa: S311 (kill timing, nothing cryptographic)


@pytest.fixture(params=["sqlite", "postgresql"])
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployment]:
    with database(request.param, tmp_path) as url:
        deployment = provision(tmp_path, url, AUTHORITY_REFRESH_REUSE_GRACE="0")
        yield deployment
        deployment.stop()


@dataclass
class Session:
    """What one client knows of its session: every token it was given, in order, and
    whether a refresh was in flight (sent, never answered) when the server died."""

    tokens: list[str]
    in_flight: bool = False
    refreshes: int = 0


@dataclass
class Storm:
    server: Server
    app: Client
    sessions: list[Session] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    failures: list[str] = field(default_factory=list)

    def rotate_forever(self, session: Session) -> None:
        assert self.app.client_secret is not None
        with httpx.Client(
            base_url=self.server.url, timeout=10, auth=(self.app.client_id, self.app.client_secret)
        ) as http:
            while not self.stop.is_set():
                session.in_flight = True
                try:
                    response = http.post(
                        "/oauth/token",
                        data={"grant_type": "refresh_token", "refresh_token": session.tokens[-1]},
                    )
                except httpx.ConnectError:
                    session.in_flight = False  # the server was gone before it was sent
                    return
                except httpx.TransportError:
                    return  # killed: the request may or may not have been committed
                session.in_flight = False
                if response.status_code != 200:
                    self.failures.append(f"{response.status_code} {response.text}")
                    return
                session.tokens.append(response.json()["refresh_token"])
                session.refreshes += 1


def login(http: httpx.Client) -> str:
    response = http.post(
        "/oauth/token", data={"grant_type": "password", "username": USERNAME, "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    return str(response.json()["refresh_token"])


def storm_and_kill(deployment: Deployment, app: Client) -> tuple[list[Session], int]:
    """Start a server, log in ``SESSIONS`` times, rotate them all at once and SIGKILL the
    server after a random moment; returns the sessions and how many requests died."""
    (server,) = deployment.start(1)
    assert app.client_secret is not None
    with httpx.Client(
        base_url=server.url, timeout=10, auth=(app.client_id, app.client_secret)
    ) as http:
        storm = Storm(server, app, [Session([login(http)]) for _ in range(SESSIONS)])
    threads = [threading.Thread(target=storm.rotate_forever, args=(s,)) for s in storm.sessions]
    for thread in threads:
        thread.start()
    # Let the storm build up, then kill at a random instant within a few rotations.
    while sum(s.refreshes for s in storm.sessions) < 3 * SESSIONS and not storm.failures:
        time.sleep(0.005)
    time.sleep(JITTER.uniform(0, 0.05))
    server.process.send_signal(signal.SIGKILL)
    server.process.wait()
    storm.stop.set()
    for thread in threads:
        thread.join(30)
    deployment.servers.clear()
    assert not storm.failures, storm.failures[:3]
    return storm.sessions, sum(s.in_flight for s in storm.sessions)


def assert_no_half_written_rows(deployment: Deployment) -> None:
    def none(sql: str) -> None:
        rows = deployment.query(sql)
        assert not rows, f"{sql}: {rows[:5]}"

    # Every token belongs to an existing family, and every family has its first token.
    none(
        "SELECT t.id FROM refresh_tokens t LEFT JOIN refresh_families f "
        "ON f.id = t.family_id WHERE f.id IS NULL"
    )
    none(
        "SELECT f.id FROM refresh_families f WHERE (SELECT count(*) FROM refresh_tokens t "
        "WHERE t.family_id = f.id AND t.parent_id IS NULL) != 1"
    )
    # A child hangs under a consumed parent of its own family: the consume and the
    # insert committed together.
    none(
        "SELECT c.id FROM refresh_tokens c LEFT JOIN refresh_tokens p ON p.id = c.parent_id "
        "WHERE c.parent_id IS NOT NULL AND (p.id IS NULL OR p.family_id != c.family_id "
        "OR p.consumed_at IS NULL)"
    )
    # Grace 0: a consumed token has exactly one child (no consume without its child,
    # no sibling).
    none(
        "SELECT p.id FROM refresh_tokens p WHERE p.consumed_at IS NOT NULL AND "
        "(SELECT count(*) FROM refresh_tokens c WHERE c.parent_id = p.id) != 1"
    )
    # No family with two live heads.
    none(
        "SELECT t.family_id FROM refresh_tokens t JOIN refresh_families f "
        "ON f.id = t.family_id WHERE t.consumed_at IS NULL AND f.revoked_at IS NULL "
        "GROUP BY t.family_id HAVING count(*) > 1"
    )


def assert_acknowledged_tokens_survived(deployment: Deployment, sessions: list[Session]) -> None:
    """Every token the server handed out is stored; all but the newest are consumed."""
    for session in sessions:
        for n, token in enumerate(session.tokens):
            rows = deployment.query(
                "SELECT consumed_at FROM refresh_tokens WHERE token_hash = :h",
                h=hashlib.sha256(token.encode()).digest(),
            )
            assert len(rows) == 1, f"token {n} of {len(session.tokens)} lost"
            if n < len(session.tokens) - 1:
                assert rows[0].consumed_at is not None, f"token {n} no longer consumed"


def refresh(http: httpx.Client, token: str) -> httpx.Response:
    return http.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": token})


def test_a_server_killed_during_a_refresh_storm_leaves_one_live_head_per_family_and_reuse_still_detected(  # noqa: E501
    deployment: Deployment,
) -> None:
    app = deployment.create_client("app", "--grant", "password", "--grant", "refresh_token")
    died_in_flight = committed_unanswered = 0
    for kill in range(KILLS):
        sessions, in_flight = storm_and_kill(deployment, app)
        died_in_flight += in_flight
        assert_no_half_written_rows(deployment)
        assert_acknowledged_tokens_survived(deployment, sessions)

        (server,) = deployment.start(1)
        assert app.client_secret is not None
        with httpx.Client(
            base_url=server.url, timeout=10, auth=(app.client_id, app.client_secret)
        ) as http:
            for session in sessions:
                newest = refresh(http, session.tokens[-1])
                if session.in_flight:
                    # The lost request either committed (its token is consumed: reuse)
                    # or not (it still rotates); never anything else.
                    assert newest.status_code in (200, 400), newest.text
                else:
                    # Acknowledged before the kill, so it survived it.
                    assert newest.status_code == 200, f"kill {kill}: {newest.text}"
                if newest.status_code != 200:
                    committed_unanswered += 1
                    assert "already used" in newest.json()["error_description"], newest.text
                # A token known to be consumed is still caught as reuse...
                consumed = session.tokens[:-1] or session.tokens[-1:] * (newest.status_code == 200)
                if consumed:
                    old = refresh(http, JITTER.choice(consumed))
                    assert old.status_code == 400, old.text
                    # (Once a reuse has revoked the family, the answer says so.)
                    said = "already used" if newest.status_code == 200 else "been revoked"
                    assert said in old.json()["error_description"], old.text
                # ...and took the family with it.
                if newest.status_code == 200:
                    latest = refresh(http, newest.json()["refresh_token"])
                    assert (latest.status_code, latest.json()["error"]) == (400, "invalid_grant")
        deployment.stop()
        assert_no_half_written_rows(deployment)
        live = deployment.query(
            "SELECT count(*) AS n FROM refresh_families WHERE revoked_at IS NULL"
        )
        assert live[0].n == 0, "a family survived the reuse of one of its tokens"
    print(
        f"{KILLS} kills, {died_in_flight} refreshes in flight when the server died, "
        f"{committed_unanswered} of them committed"
    )
    assert died_in_flight >= KILLS, "the kills did not land during the storm"
