"""``examples/bff`` end to end (``tests/helpers/bff.py``): real ``redis-server``,
``authority serve``, the example resource server and two BFF processes sharing one
Redis (as behind a load balancer), driven by cookie-keeping HTTP clients as browsers.

The authority runs with ``REFRESH_REUSE_GRACE=0``: a second refresh with one token
revokes the whole family, so "exactly one refresh" is strict. Expiry is forced by
rewriting the session's times in Redis, as the clock would; a second authority
process with a 2-second access token shows the same with real time. (Redis and the
authority going down: ``tests/chaos/test_bff_outages.py``.)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from examples.bff.sessions import session_key
from tests.helpers.bff import (
    COOKIE,
    CREDENTIALS,
    CSRF,
    FakeApi,
    Stack,
    address_failures,
    another_bff,
    browser_at,
    emptied,
    family_of,
    force_expiry,
    log_in,
    revocation,
    running_stack,
    second_authority,
    set_cookie,
    stored,
    tokens_in_family,
)
from tests.helpers.deployment import USERNAME

REFRESH_TTL = 604800  # the authority's default
EXPIRED = {"detail": "session expired, log in again"}


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("bff")) as started:
        yield started


@pytest.fixture
def stack(running: Stack) -> Stack:
    return emptied(running)


def test_login_keeps_the_tokens_in_redis_and_gives_the_browser_only_an_httponly_cookie(
    stack: Stack,
) -> None:
    with stack.browser() as browser:
        response = browser.post("/login", json=CREDENTIALS, headers=CSRF)
        assert response.status_code == 200, response.text
        assert response.json()["user"]["username"] == USERNAME
        assert set(response.json()) == {"user"}
        assert response.headers["cache-control"] == "no-store"

        cookie = set_cookie(response)
        assert cookie["httponly"] is True
        assert cookie["samesite"] == "lax"
        assert cookie["path"] == "/"
        assert not cookie["secure"]  # BFF_COOKIE_SECURE=false in these tests
        assert REFRESH_TTL - 10 < int(cookie["max-age"]) <= REFRESH_TTL

        session_id = cookie.value
        record = stored(stack, session_id)
        assert record is not None
        for token in (record["access"], record["refresh"]):
            assert token not in response.text
            assert all(token not in value for value in response.headers.values())
        assert record["user"]["username"] == USERNAME
        assert record["access_expires_at"] > time.time() + 800  # the authority's 900 s
        with stack.redis.client() as redis:
            assert REFRESH_TTL - 10 < redis.ttl(session_key(session_id)) <= REFRESH_TTL
            assert all(session_id not in key for key in redis.keys("*"))

        assert browser.get("/session").json() == {
            "authenticated": True,
            "user": response.json()["user"],
        }


def test_wrong_password_is_a_401_that_stores_nothing(stack: Stack) -> None:
    with stack.browser() as browser:
        response = browser.post(
            "/login", headers=CSRF, json={"username": USERNAME, "password": "not it"}
        )
        assert response.status_code == 401
        assert response.json() == {"detail": "invalid username or password"}
        assert set_cookie(response) is None
        assert browser.get("/session").json() == {"authenticated": False}
    with stack.redis.client() as redis:
        assert redis.dbsize() == 0


def test_proxied_call_reaches_the_api_with_the_sessions_access_token(stack: Stack) -> None:
    with stack.browser() as browser:
        session_id = log_in(browser)
        response = browser.get("/api/me", params={"x": "1"})
        assert response.status_code == 200, response.text
        claims = response.json()
        record = stored(stack, session_id)
        assert record is not None
        assert claims["sub"] == str(stack.deployment.user_id)
        assert claims["username"] == USERNAME
        assert claims["sid"] == family_of(stack, record["refresh"])
        assert set_cookie(response) is None  # no refresh, no new cookie

        assert browser.get("/api/orders").status_code == 403  # the API's own answer
        assert browser.get("/api/nowhere").status_code == 404
        assert browser.get("/api/me%3Fx=1").status_code == 404  # not /me?x=1
        assert browser.get("/api/%2e%2e/health").status_code == 400

    anonymous = httpx.get(f"{stack.url}/api/me")
    assert (anonymous.status_code, anonymous.json()) == (401, {"detail": "not logged in"})
    forged = httpx.get(f"{stack.url}/api/me", headers={"Cookie": f"{COOKIE}={'x' * 43}"})
    assert (forged.status_code, forged.json()) == (401, EXPIRED)


def test_unsafe_requests_without_the_custom_header_are_refused(stack: Stack) -> None:
    with stack.browser() as browser:
        refused_login = browser.post("/login", json=CREDENTIALS)
        assert refused_login.status_code == 403
        assert refused_login.json() == {"detail": "missing X-Requested-With header"}
        with stack.redis.client() as redis:
            assert redis.dbsize() == 0

        session_id = log_in(browser)
        assert browser.post("/api/me").status_code == 403
        assert browser.post("/logout").status_code == 403
        assert stored(stack, session_id) is not None
        assert browser.get("/api/me").status_code == 200


def test_expired_access_token_is_refreshed_once_and_transparently(stack: Stack) -> None:
    with stack.browser() as browser:
        session_id = log_in(browser)
        before = browser.get("/api/me").json()
        old = stored(stack, session_id)
        assert old is not None
        force_expiry(stack, session_id)

        response = browser.get("/api/me")
        assert response.status_code == 200, response.text
        after = response.json()
        assert after["jti"] != before["jti"]
        assert after["sid"] == before["sid"]  # the same login session, rotated
        cookie = set_cookie(response)
        assert cookie.value == session_id
        assert REFRESH_TTL - 10 < int(cookie["max-age"]) <= REFRESH_TTL

        new = stored(stack, session_id)
        assert new is not None
        assert new["refreshes"] == 1
        assert (new["access"], new["refresh"]) != (old["access"], old["refresh"])
        assert new["refresh_at"] > time.time() + 800
        assert tokens_in_family(stack, before["sid"]) == 2

        again = browser.get("/api/me")
        assert again.json()["jti"] == after["jti"]
        assert tokens_in_family(stack, before["sid"]) == 2
        assert revocation(stack, before["sid"]) == (None, None)


def test_twenty_concurrent_calls_across_an_expiry_on_two_processes_refresh_exactly_once(
    stack: Stack,
) -> None:
    with stack.browser() as browser:
        session_id = log_in(browser)
        before = browser.get("/api/me").json()
    force_expiry(stack, session_id)

    start = threading.Barrier(20)

    def call(index: int) -> httpx.Response:
        with httpx.Client(base_url=stack.bffs[index % 2].url, timeout=30) as client:
            start.wait(10)
            return client.get("/api/me", headers={"Cookie": f"{COOKIE}={session_id}"})

    with ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(call, range(20)))

    assert [r.status_code for r in responses] == [200] * 20, [r.text for r in responses]
    jtis = {r.json()["jti"] for r in responses}
    assert len(jtis) == 1
    assert before["jti"] not in jtis
    assert sum(set_cookie(r) is not None for r in responses) == 1  # only the refresher's
    record = stored(stack, session_id)
    assert record is not None
    assert record["refreshes"] == 1
    assert tokens_in_family(stack, before["sid"]) == 2
    assert revocation(stack, before["sid"]) == (None, None)  # a second refresh would revoke
    with stack.redis.client() as redis:
        assert redis.keys("bff:lock:*") == []


def test_logout_revokes_the_family_at_the_authority_and_leaves_nothing_in_redis(
    stack: Stack,
) -> None:
    with stack.browser() as browser:
        session_id = log_in(browser)
        record = stored(stack, session_id)
        assert record is not None
        family = family_of(stack, record["refresh"])

        response = browser.post("/logout", headers=CSRF)
        assert (response.status_code, response.json()) == (200, {"detail": "logged out"})
        assert set_cookie(response)["max-age"] == "0"
        assert COOKIE not in browser.cookies
        with stack.redis.client() as redis:
            assert redis.dbsize() == 0

        revoked_at, reason = revocation(stack, family)
        assert revoked_at is not None
        assert reason == "logout"
        at_authority = httpx.post(
            f"{stack.authority.url}/auth/refresh", json={"refresh": record["refresh"]}
        )
        assert at_authority.status_code == 401
        assert at_authority.json()["error"] == "invalid_grant"

        assert browser.get("/api/me").json() == {"detail": "not logged in"}
    replayed = httpx.get(f"{stack.url}/api/me", headers={"Cookie": f"{COOKIE}={session_id}"})
    assert (replayed.status_code, replayed.json()) == (401, EXPIRED)


def test_session_revoked_at_the_authority_ends_at_the_next_refresh(stack: Stack) -> None:
    with stack.browser() as browser:
        session_id = log_in(browser)
        record = stored(stack, session_id)
        assert record is not None
        revoked = httpx.post(
            f"{stack.authority.url}/auth/logout", json={"refresh": record["refresh"]}
        )
        assert revoked.status_code == 200
        force_expiry(stack, session_id)

        response = browser.get("/api/me")
        assert (response.status_code, response.json()) == (401, EXPIRED)
        assert set_cookie(response)["max-age"] == "0"
        assert stored(stack, session_id) is None


def test_login_with_an_old_session_cookie_starts_a_new_session_and_ends_the_old_one(
    stack: Stack,
) -> None:
    with stack.browser() as browser:
        first = log_in(browser)
        old = stored(stack, first)
        assert old is not None
        second = log_in(browser)
        assert second != first
        assert stored(stack, first) is None
        assert revocation(stack, family_of(stack, old["refresh"]))[1] == "logout"
        assert browser.get("/api/me").status_code == 200


def test_errors_are_json_without_stack_traces(stack: Stack) -> None:
    with stack.browser() as browser:
        for response in (
            browser.get("/nowhere"),
            browser.post("/login", content=b"{not json", headers=CSRF),
            browser.post("/login", json={"password": "x"}, headers=CSRF),
            browser.post("/login", json=["a"], headers=CSRF),
        ):
            assert 400 <= response.status_code < 500, response.text
            assert response.headers["content-type"].startswith("application/json")
            assert set(response.json()) == {"detail"}
            assert "Traceback" not in response.text


def test_real_access_token_expiry_is_refreshed_transparently(
    stack: Stack,
    tmp_path: Path,
) -> None:
    with (
        second_authority(stack, tmp_path, AUTHORITY_ACCESS_TTL="2") as (_, bff),
        httpx.Client(base_url=bff.url, timeout=20) as browser,
    ):
        session_id = log_in(browser)
        first = browser.get("/api/me").json()
        before = stored(stack, session_id)
        assert before is not None
        time.sleep(2.2)
        second = browser.get("/api/me")
        assert second.status_code == 200, second.text
        assert second.json()["jti"] != first["jti"]
        record = stored(stack, session_id)
        assert record is not None
        assert record["refreshes"] == before["refreshes"] + 1
        assert tokens_in_family(stack, first["sid"]) == 1 + record["refreshes"]
        assert revocation(stack, first["sid"]) == (None, None)


def test_failed_logins_of_one_browser_do_not_throttle_another_behind_the_same_bff(
    stack: Stack,
    tmp_path: Path,
) -> None:
    """An authority that trusts the BFF (``TRUSTED_PROXIES``) counts failed logins per
    browser, by the address the BFF forwards; a browser's own ``X-Forwarded-For`` is
    not passed on, so it cannot dodge its count."""
    with (
        second_authority(
            stack,
            tmp_path,
            AUTHORITY_TRUSTED_PROXIES="127.0.0.1",
            AUTHORITY_LOGIN_MAX_FAILURES_ADDRESS="3",
        ) as (_, bff),
        browser_at(bff, "127.0.0.2") as attacker,
        browser_at(bff, "127.0.0.3") as user,
    ):

        def guess(n: int) -> httpx.Response:
            # A new unknown account each time, so that only the address count can trip.
            return attacker.post(
                "/login",
                json={"username": f"nobody{n}", "password": "wrong password"},
                headers={**CSRF, "X-Forwarded-For": f"198.51.100.{n}"},
            )

        guesses = [guess(n) for n in range(4)]
        assert [r.status_code for r in guesses] == [401, 401, 401, 429], guesses[-1].text
        assert guesses[-1].json() == {"detail": "too many attempts, retry later"}
        assert int(guesses[-1].headers["retry-after"]) > 0

        log_in(user)  # the same BFF, another browser: not throttled
        assert user.get("/api/me").status_code == 200
        assert guess(9).status_code == 429  # while the attacker still is

        failures = address_failures(stack)
        assert failures.get("127.0.0.2") == 3
        assert not any(address.startswith("198.51.100.") for address in failures)


def test_a_browser_on_the_bffs_own_host_cannot_name_its_address_with_x_forwarded_for(
    stack: Stack, tmp_path: Path
) -> None:
    """uvicorn trusts ``X-Forwarded-For`` from 127.0.0.1 unless told otherwise; the BFF
    tells it to trust no one unless ``BFF_TRUSTED_PROXIES`` names a proxy."""
    with (
        second_authority(
            stack,
            tmp_path,
            AUTHORITY_TRUSTED_PROXIES="127.0.0.1",
            AUTHORITY_LOGIN_MAX_FAILURES_ADDRESS="1000",
        ) as (_, bff),
        browser_at(bff, "127.0.0.1") as local,
    ):
        before = address_failures(stack).get("127.0.0.1", 0)
        for n in range(3):
            response = local.post(
                "/login",
                json={"username": f"spoofer{n}", "password": "wrong password"},
                headers={**CSRF, "X-Forwarded-For": f"203.0.113.{n}"},
            )
            assert response.status_code == 401, response.text
        failures = address_failures(stack)
        assert not any(address.startswith("203.0.113.") for address in failures)
        assert failures["127.0.0.1"] == before + 3


def test_a_bff_behind_a_proxy_it_trusts_passes_on_the_address_the_proxy_names(
    stack: Stack, tmp_path: Path
) -> None:
    with (
        second_authority(stack, tmp_path, AUTHORITY_TRUSTED_PROXIES="127.0.0.1") as (auth, _),
        another_bff(
            stack, tmp_path, authority_url=auth.url, BFF_TRUSTED_PROXIES="127.0.0.1"
        ) as bff,
        browser_at(bff, "127.0.0.1") as proxy,  # the proxy in front, on the same host
    ):
        response = proxy.post(
            "/login",
            json={"username": "proxied", "password": "wrong password"},
            headers={**CSRF, "X-Forwarded-For": "192.0.2.77"},
        )
        assert response.status_code == 401, response.text
    assert address_failures(stack).get("192.0.2.77") == 1


def test_the_bff_relays_only_json_and_only_the_headers_the_api_needs(
    stack: Stack, tmp_path: Path
) -> None:
    with (
        FakeApi() as api,
        another_bff(stack, tmp_path, api_url=api.url) as bff,
        httpx.Client(base_url=bff.url, timeout=20) as browser,
    ):
        log_in(browser)
        sent = {
            "Accept": "text/html",
            "Accept-Language": "fr",
            "Origin": bff.url,
            "Referer": bff.url + "/page",
            "X-Forwarded-For": "203.0.113.9",
            "If-None-Match": '"v1"',
        }
        response = browser.get("/api/json", headers=sent)
        assert response.status_code == 200, response.text
        assert response.json() == {"ok": True}
        assert response.headers["content-type"] == "application/json"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "x-api-internal" not in response.headers
        assert set_cookie(response, "api") is None

        method, path, headers = api.seen[-1]
        assert (method, path) == ("GET", "/json")
        assert headers["accept"] == "application/json"
        assert headers["if-none-match"] == '"v1"'
        assert headers["authorization"].startswith("Bearer ")
        for name in ("cookie", "accept-language", "origin", "referer", "x-forwarded-for"):
            assert name not in headers, name
        assert set(headers) <= {
            "host",
            "accept",
            "accept-encoding",
            "connection",
            "user-agent",
            "authorization",
            "if-none-match",
        }

        problem = browser.get("/api/problem")
        assert problem.status_code == 200
        assert problem.json() == {"title": "no"}
        assert browser.get("/api/empty").status_code == 204

        for name in ("html", "sniffable"):
            refused = browser.get(f"/api/{name}")
            assert refused.status_code == 502, name
            assert refused.json() == {"detail": "unexpected answer from the API"}
            assert refused.headers["x-content-type-options"] == "nosniff"
            assert "<script>" not in refused.text

        seen = len(api.seen)
        for kind in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
            form = browser.post("/api/json", content=b"a=1", headers={**CSRF, "Content-Type": kind})
            assert form.status_code == 415, kind
            assert form.json() == {"detail": "the API takes JSON bodies only"}
        assert len(api.seen) == seen, "nothing but JSON reaches the API"

        posted = browser.post("/api/json", json={"a": 1}, headers=CSRF)
        assert posted.status_code == 200, posted.text
        assert api.seen[-1][2]["content-type"] == "application/json"


def test_every_bff_answer_says_nosniff(stack: Stack) -> None:
    with stack.browser() as browser:
        answers = [
            browser.get("/health"),
            browser.get("/session"),
            browser.get("/nowhere"),
            browser.get("/api/me"),
            browser.post("/login", json={}, headers=CSRF),
        ]
        log_in(browser)
        answers += [browser.get("/api/me"), browser.get("/api/nowhere")]
    assert [r.headers.get("x-content-type-options") for r in answers] == ["nosniff"] * 7


def test_a_secure_session_cookie_has_the_host_prefix(stack: Stack, tmp_path: Path) -> None:
    with (
        another_bff(stack, tmp_path, BFF_COOKIE_SECURE="true") as bff,
        httpx.Client(base_url=bff.url, timeout=20) as browser,
    ):
        response = browser.post("/login", json=CREDENTIALS, headers=CSRF)
        assert response.status_code == 200, response.text
        assert set_cookie(response) is None
        cookie = set_cookie(response, "__Host-" + COOKIE)
        assert cookie["secure"] is True
        assert cookie["path"] == "/"
        assert not cookie["domain"]
        session = {"Cookie": f"__Host-{COOKIE}={cookie.value}"}
        assert httpx.get(f"{bff.url}/api/me", headers=session).status_code == 200
        plain = {"Cookie": f"{COOKIE}={cookie.value}"}
        assert httpx.get(f"{bff.url}/api/me", headers=plain).status_code == 401
        logout = httpx.post(f"{bff.url}/logout", headers={**session, **CSRF})
        assert set_cookie(logout, "__Host-" + COOKIE)["max-age"] == "0"
