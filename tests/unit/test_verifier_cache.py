"""The key cache against a real JWKS server on 127.0.0.1 that counts requests and fails
on demand: no request per token, Cache-Control, background refresh, unknown kids,
outages (the last good keys keep serving, for a bounded time)."""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from authority.verifier import (
    CachePolicy,
    InvalidToken,
    IssuerMismatch,
    KeysUnavailable,
    Verifier,
    httpx_fetch,
)
from authority.verifier.cache import freshness
from tests.helpers.clock import Clock
from tests.helpers.verifier import (
    AUDIENCE,
    JWKS_PATH,
    METADATA_PATH,
    NOW,
    JwksServer,
    claims,
    header,
    jwks_server,
    rsa_key,
    sign,
)

POLICY = CachePolicy(stale_ttl=3600, refetch_cooldown=10, timeout=0.5)


@pytest.fixture
def server() -> Iterator[JwksServer]:
    with jwks_server(rsa_key()) as srv:
        yield srv


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


def make(server: JwksServer, clock: Clock, **options: Any) -> Verifier:
    return Verifier(
        server.issuer, AUDIENCE, clock=clock, cache=options.pop("cache", POLICY), **options
    )


def token(server: JwksServer, key: int = 0, kid: str | None = None) -> str:
    head = header(rsa_key(key), kid=kid) if kid else header(rsa_key(key))
    return sign(claims(iss=server.issuer, exp=int(NOW) + 10**7), head, rsa_key(key))


def settle(verifier: Verifier, timeout: float = 5) -> None:
    """Wait until no fetch is in flight (the cache's own state, not the server's)."""
    deadline = time.monotonic() + timeout
    while verifier._cache._inflight is not None:
        assert time.monotonic() < deadline, "a JWKS fetch is still running"
        time.sleep(0.005)


def test_warm_verifier_sends_no_request_per_token(server: JwksServer, clock: Clock) -> None:
    verifier = make(server, clock)
    good = token(server)
    for _ in range(500):
        assert verifier.verify(good)["sub"] == "svc"
    assert server.requests == {METADATA_PATH: 1, JWKS_PATH: 1}


def test_explicit_jwks_url_skips_the_metadata(server: JwksServer, clock: Clock) -> None:
    verifier = make(server, clock, jwks_url=server.url + JWKS_PATH)
    assert verifier.verify(token(server))["sub"] == "svc"
    assert server.requests == {JWKS_PATH: 1}


def test_keys_are_refreshed_in_the_background_before_max_age_with_the_etag(
    server: JwksServer, clock: Clock
) -> None:
    server.cache_control = "public, max-age=100"
    verifier = make(server, clock)
    good = token(server)
    verifier.verify(good)
    clock.advance(79)
    verifier.verify(good)
    settle(verifier)
    assert server.count() == 1
    clock.advance(2)
    assert verifier.verify(good)["sub"] == "svc"
    server.wait_for(JWKS_PATH, 2)
    settle(verifier)
    assert server.not_modified == 1
    assert server.count(METADATA_PATH) == 1
    clock.advance(79)  # the 304 renewed the keys for another max-age
    verifier.verify(good)
    settle(verifier)
    assert server.count() == 2


def test_a_slow_refresh_does_not_hold_up_verification(server: JwksServer, clock: Clock) -> None:
    verifier = make(server, clock)
    good = token(server)
    verifier.verify(good)
    server.mode, server.delay = "slow", 2.0
    clock.advance(290)
    started = time.monotonic()
    for _ in range(100):
        assert verifier.verify(good)["sub"] == "svc"
    assert time.monotonic() - started < 0.5
    assert server.count() <= 2


@pytest.mark.parametrize(
    ("control", "age", "seconds"),
    [
        ("public, max-age=300", None, 300),
        ("public, max-age=300", "100", 200),
        ('max-age="60"', None, 60),
        ("s-maxage=5, max-age=50", None, 50),
        ("no-store", None, 5),
        ("no-cache, max-age=600", None, 5),
        ("max-age=0", None, 5),
        ("max-age=999999999", None, 86400),
        ("max-age=abc", None, 300),
        (None, None, 300),
        ("public, max-age=300", "400", 5),
    ],
)
def test_freshness_follows_cache_control_within_the_policy(
    control: str | None, age: str | None, seconds: float
) -> None:
    headers = {k: v for k, v in (("cache-control", control), ("age", age)) if v is not None}
    assert freshness(headers, 300, CachePolicy()) == seconds


@pytest.mark.parametrize(
    ("control", "refresh_after"), [("public, max-age=10", 8), (None, 240), ("no-store", 4)]
)
def test_the_refresh_time_follows_the_servers_cache_control(
    server: JwksServer, clock: Clock, control: str | None, refresh_after: float
) -> None:
    server.cache_control = control
    verifier = make(server, clock)
    good = token(server)
    verifier.verify(good)
    clock.advance(refresh_after - 0.01)
    verifier.verify(good)
    settle(verifier)
    assert server.count() == 1
    clock.advance(0.02)
    verifier.verify(good)
    server.wait_for(JWKS_PATH, 2)


def test_unknown_kids_from_fifty_threads_cause_at_most_one_fetch(
    server: JwksServer, clock: Clock
) -> None:
    verifier = make(server, clock)
    verifier.load_keys()
    before = server.total()
    forged = [token(server, kid=secrets.token_urlsafe(32)) for _ in range(20)]
    start = threading.Barrier(50)
    reasons: list[str] = []

    def attack() -> None:
        start.wait()
        for n in range(20):
            try:
                verifier.verify(forged[n])
            except InvalidToken as exc:
                reasons.append(exc.reason)

    threads = [threading.Thread(target=attack) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    settle(verifier)
    assert reasons == ["unknown_kid"] * 1000
    assert server.total() - before <= 1


def test_unknown_kid_refetches_again_only_after_the_cooldown(
    server: JwksServer, clock: Clock
) -> None:
    verifier = make(server, clock)
    verifier.load_keys()
    stranger = token(server, kid="unknown-kid")
    for step, fetches in ((0, 2), (9.9, 2), (0.1, 3)):
        clock.advance(step)
        with pytest.raises(InvalidToken, match="unknown_kid"):
            verifier.verify(stranger)
        assert server.count() == fetches


def test_a_new_key_is_fetched_on_its_first_token(server: JwksServer, clock: Clock) -> None:
    verifier = make(server, clock)
    verifier.load_keys()
    server.keys = [rsa_key(), rsa_key(1)]
    assert verifier.verify(token(server, key=1))["sub"] == "svc"
    assert server.count() == 2
    assert verifier.verify(token(server, key=0))["sub"] == "svc"


def test_a_new_kid_arriving_during_an_older_refresh_gets_a_fetch_of_its_own(
    server: JwksServer, clock: Clock
) -> None:
    verifier = make(server, clock)
    verifier.load_keys()
    server.mode, server.delay = "slow", 0.3
    clock.advance(241)
    verifier.verify(token(server))  # starts a background refresh
    server.wait_for(JWKS_PATH, 2)
    server.keys = [rsa_key(), rsa_key(1)]  # published after that refresh was answered
    assert verifier.verify(token(server, key=1))["sub"] == "svc"
    assert server.count() == 3


def test_a_key_dropped_from_the_jwks_stops_verifying_after_the_refresh(
    server: JwksServer, clock: Clock
) -> None:
    """``authority keys revoke``: the key leaves the JWKS and, at the next refresh, the
    verifier's cache."""
    verifier = make(server, clock)
    verifier.verify(token(server))
    server.keys = [rsa_key(1)]
    clock.advance(241)
    verifier.verify(token(server))  # still cached; starts the refresh
    settle(verifier)
    with pytest.raises(InvalidToken, match="unknown_kid"):
        verifier.verify(token(server))


@pytest.mark.parametrize("mode", ["error", "garbage", "empty", "huge", "drop", "slow"])
def test_last_good_keys_serve_through_an_outage_for_the_stale_ttl(
    server: JwksServer, clock: Clock, mode: str
) -> None:
    verifier = make(server, clock)
    good = token(server)
    verifier.verify(good)
    server.mode, server.delay = mode, 1.0
    clock.advance(301)  # expired: a refresh starts and fails
    assert verifier.verify(good)["sub"] == "svc"
    server.wait_for(JWKS_PATH, 2)
    settle(verifier)
    for _ in range(200):  # and no request per token while it keeps failing
        assert verifier.verify(good)["sub"] == "svc"
    assert server.count() == 2
    clock.advance(3598)
    assert verifier.verify(good)["sub"] == "svc"
    settle(verifier)
    clock.advance(2)  # past the stale limit: the keys are no longer trusted
    with pytest.raises(KeysUnavailable):
        verifier.verify(good)
    assert verifier.kids, "a failed fetch must not wipe the cache"
    server.mode = "ok"
    clock.advance(60)  # after the retry backoff
    assert verifier.verify(good)["sub"] == "svc"


def test_cold_start_while_the_authority_is_down_backs_off_then_recovers(
    server: JwksServer, clock: Clock
) -> None:
    server.mode = "error"
    verifier = make(server, clock)
    with pytest.raises(KeysUnavailable):
        verifier.verify(token(server))
    with pytest.raises(KeysUnavailable):
        verifier.load_keys()
    assert server.total() == 1, "a failure is not retried before the backoff"
    clock.advance(1)
    with pytest.raises(KeysUnavailable):
        verifier.verify(token(server))
    assert server.total() == 2
    server.mode = "ok"
    clock.advance(2)
    verifier.load_keys()
    assert verifier.verify(token(server))["sub"] == "svc"


def test_threads_starting_cold_share_one_fetch(server: JwksServer, clock: Clock) -> None:
    server.mode, server.delay = "slow", 0.2
    verifier = make(server, clock)
    good = token(server)
    subjects: list[str] = []
    threads = [
        threading.Thread(target=lambda: subjects.append(verifier.verify(good)["sub"]))
        for _ in range(50)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert subjects == ["svc"] * 50
    assert server.requests == {METADATA_PATH: 1, JWKS_PATH: 1}


async def test_tasks_starting_cold_share_one_fetch(server: JwksServer, clock: Clock) -> None:
    server.mode, server.delay = "slow", 0.2
    verifier = make(server, clock)
    good = token(server)
    results = await asyncio.gather(*(verifier.averify(good) for _ in range(100)))
    assert {r["sub"] for r in results} == {"svc"}
    assert server.requests == {METADATA_PATH: 1, JWKS_PATH: 1}


async def test_averify_with_the_authority_down_is_keys_unavailable(
    server: JwksServer, clock: Clock
) -> None:
    server.mode = "drop"
    with pytest.raises(KeysUnavailable):
        await make(server, clock).averify(token(server))


def test_metadata_naming_another_issuer_is_refused(server: JwksServer, clock: Clock) -> None:
    server.issuer = "https://evil.example"
    verifier = Verifier(server.url, AUDIENCE, clock=clock, cache=POLICY)
    with pytest.raises(IssuerMismatch) as refused:
        verifier.verify(token(server))
    assert refused.value.reason == "wrong_issuer"
    assert (refused.value.expected, refused.value.found) == (server.url, "https://evil.example")
    assert server.requests == {METADATA_PATH: 1}  # its keys are never fetched


def test_a_trailing_slash_is_wrong_issuer_naming_both_issuers_not_keys_unavailable(
    server: JwksServer, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    verifier = Verifier(server.url + "/", AUDIENCE, clock=clock, cache=POLICY)
    with pytest.raises(InvalidToken) as refused:
        verifier.load_keys()
    assert not isinstance(refused.value, KeysUnavailable)
    assert refused.value.reason == "wrong_issuer"
    both = (f"expects issuer '{server.url}/'", f"names '{server.url}'", "trailing slash")
    assert all(part in str(refused.value) for part in both), str(refused.value)
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors
    assert all(part in errors[0] for part in both)
    # Every token is refused the same way, sync and async, while the retries back off.
    for _ in range(3):
        with pytest.raises(IssuerMismatch):
            verifier.verify(token(server))
    with pytest.raises(IssuerMismatch):
        asyncio.run(verifier.averify(token(server)))


def test_once_the_issuers_agree_the_keys_load(server: JwksServer, clock: Clock) -> None:
    server.issuer = server.url + "/"  # the authority was misconfigured
    verifier = Verifier(server.url, AUDIENCE, clock=clock, cache=POLICY)
    with pytest.raises(IssuerMismatch):
        verifier.verify(token(server))
    server.issuer = server.url  # fixed
    clock.advance(POLICY.retry_max)
    assert verifier.verify(token(server))["sub"] == "svc"


def test_a_token_of_another_issuer_says_both_issuers(server: JwksServer, clock: Clock) -> None:
    verifier = make(server, clock, jwks_url=server.url + JWKS_PATH)
    other = sign(claims(iss=server.url + "/", exp=int(NOW) + 10**7), header(rsa_key(0)), rsa_key(0))
    with pytest.raises(InvalidToken) as refused:
        verifier.verify(other)
    assert refused.value.reason == "wrong_issuer"
    assert f"iss is '{server.url}/', not '{server.url}'" in str(refused.value)


def test_an_httpx_client_can_replace_urllib(server: JwksServer, clock: Clock) -> None:
    server.cache_control = "max-age=10"
    with httpx.Client() as client:
        verifier = make(server, clock, fetch=httpx_fetch(client))
        good = token(server)
        verifier.verify(good)
        clock.advance(9)
        verifier.verify(good)
        server.wait_for(JWKS_PATH, 2)
        settle(verifier)
    assert server.not_modified == 1
    assert verifier.verify(good)["sub"] == "svc"


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("client", ["urllib", "httpx"])
def test_a_redirecting_jwks_endpoint_is_a_failed_fetch_that_keeps_the_last_good_keys(
    server: JwksServer, clock: Clock, status: int, client: str
) -> None:
    with jwks_server(rsa_key(1)) as elsewhere, httpx.Client(follow_redirects=True) as http:
        options = {"fetch": httpx_fetch(http)} if client == "httpx" else {}
        verifier = make(server, clock, **options)
        good = token(server)
        verifier.verify(good)
        server.mode, server.redirect_status = "redirect", status
        server.redirect_to = elsewhere.url
        clock.advance(301)  # expired: the refresh meets the redirect
        assert verifier.verify(good)["sub"] == "svc"
        server.wait_for(JWKS_PATH, 2)
        settle(verifier)
        assert elsewhere.total() == 0, "the redirect must not be followed"
        assert verifier.kids == {header(rsa_key(0))["kid"]}
        clock.advance(60)  # after the backoff: the other origin's key is still unknown
        with pytest.raises(InvalidToken, match="unknown_kid"):
            verifier.verify(token(server, key=1))
        settle(verifier)
        assert elsewhere.total() == 0


@pytest.mark.parametrize("client", ["urllib", "httpx"])
def test_a_redirecting_metadata_endpoint_leaves_a_cold_verifier_without_keys(
    server: JwksServer, clock: Clock, client: str
) -> None:
    with jwks_server(rsa_key(0)) as elsewhere, httpx.Client(follow_redirects=True) as http:
        elsewhere.issuer = server.issuer  # its metadata would be acceptable if fetched
        options = {"fetch": httpx_fetch(http)} if client == "httpx" else {}
        server.mode, server.redirect_to = "redirect", elsewhere.url
        with pytest.raises(KeysUnavailable):
            make(server, clock, **options).verify(token(server))
        assert server.requests == {METADATA_PATH: 1}
        assert elsewhere.total() == 0
