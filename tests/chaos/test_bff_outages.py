"""``examples/bff`` when what it stands on goes down (``tests/helpers/bff.py``): Redis
restarted mid-session (the BFF answers 503 while it is down, then the session is gone
and a clean login works), and the authority down during a refresh (the session is
kept, and 503 once the access token has expired).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers.bff import (
    COOKIE,
    CREDENTIALS,
    CSRF,
    Stack,
    active_families,
    emptied,
    force_expiry,
    log_in,
    rewrite,
    running_stack,
    second_authority,
    set_cookie,
    stored,
)

EXPIRED = {"detail": "session expired, log in again"}


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("bff-outages")) as started:
        yield started


@pytest.fixture
def stack(running: Stack) -> Stack:
    return emptied(running)


def test_redis_restart_mid_session_answers_503_while_down_then_a_clean_relogin(
    stack: Stack,
) -> None:
    with stack.browser() as browser:
        session_id = log_in(browser)
        assert browser.get("/api/me").status_code == 200
        families = active_families(stack)

        stack.redis.stop()
        for response in (
            browser.get("/api/me"),
            browser.get("/session"),
            browser.post("/logout", headers=CSRF),
            httpx.post(f"{stack.url}/login", json=CREDENTIALS, headers=CSRF),
        ):
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"].isdigit()
            assert response.json() == {"detail": "session store unavailable, retry later"}
        # the login that could not be stored was revoked at the authority, not orphaned
        assert active_families(stack) == families

        stack.redis.start()
        response = browser.get("/api/me")
        assert (response.status_code, response.json()) == (401, EXPIRED)
        assert set_cookie(response)["max-age"] == "0"
        assert COOKIE not in browser.cookies

        assert log_in(browser) != session_id
        assert browser.get("/api/me").status_code == 200


def test_authority_outage_during_refresh_keeps_the_session_and_answers_503_once_expired(
    stack: Stack,
    tmp_path: Path,
) -> None:
    with (
        second_authority(stack, tmp_path) as (authority, bff),
        httpx.Client(base_url=bff.url, timeout=20) as browser,
    ):
        session_id = log_in(browser)
        first = browser.get("/api/me").json()
        authority.stop()

        rewrite(stack, session_id, refresh_at=time.time() - 1)  # due, not yet expired
        still = browser.get("/api/me")
        assert still.status_code == 200, still.text
        assert still.json()["jti"] == first["jti"]

        force_expiry(stack, session_id)
        response = browser.get("/api/me")
        assert response.status_code == 503
        assert response.headers["retry-after"].isdigit()
        assert response.json() == {"detail": "authority unavailable, retry later"}
        assert set_cookie(response) is None
        record = stored(stack, session_id)
        assert record is not None
        assert record["refreshes"] == 0
