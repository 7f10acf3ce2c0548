"""The verifier's token status lists against a real server on 127.0.0.1 that serves the
JWKS and a status list, counts requests and fails on demand: revoked and clear bits,
lists of another origin never fetched, one fetch in flight per list, the ttl, the
bounded stale-if-error, fail open, and lists that must be refused."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from authority.verifier import CachePolicy, InvalidToken, StatusUnavailable, Verifier
from authority.verifier.asgi import BearerAuthMiddleware, Receive, Scope, Send
from authority.verifier.status_bits import encode, pack
from tests.helpers.clock import Clock
from tests.helpers.verifier import (
    AUDIENCE,
    JWKS_PATH,
    NOW,
    JwksServer,
    claims,
    header,
    jwks_server,
    rsa_key,
    sign,
)

STATUS_PATH = "/status/1"
# No test here waits for a timeout ("drop" closes the connection), so a loaded machine
# gets room: the single-flight tests hold their one answer back 0.3 s.
POLICY = CachePolicy(timeout=10, status_stale_ttl=300)
REVOKED, CLEAR = 7, 8


@pytest.fixture
def server() -> Iterator[JwksServer]:
    with jwks_server(rsa_key()) as srv:
        srv.cache_control = "public, max-age=300"
        publish(srv)
        yield srv


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


def status_jwt(
    server: JwksServer,
    revoked: tuple[int, ...] = (REVOKED,),
    *,
    key: int = 0,
    ttl: int = 60,
    size: int = 1024,
    **changes: Any,
) -> bytes:
    typ = changes.pop("typ", "statuslist+jwt")
    body = {
        "sub": server.url + STATUS_PATH,
        "iat": int(NOW),
        "exp": int(NOW) + 10**6,
        "ttl": ttl,
        "status_list": {"bits": 1, "lst": encode(pack(size, revoked))},
        **changes,
    }
    head = header(rsa_key(key), typ=typ)
    return sign({k: v for k, v in body.items() if v is not None}, head, rsa_key(key)).encode()


def publish(server: JwksServer, *revoked: int, **options: Any) -> None:
    server.extra[STATUS_PATH] = status_jwt(server, revoked or (REVOKED,), **options)


def make(server: JwksServer, clock: Clock, **options: Any) -> Verifier:
    return Verifier(server.issuer, AUDIENCE, clock=clock, **{"cache": POLICY, **options})


def token(server: JwksServer, idx: int = CLEAR, uri: str | None = None) -> str:
    status = {"status_list": {"idx": idx, "uri": uri or server.url + STATUS_PATH}}
    return sign(claims(iss=server.issuer, exp=int(NOW) + 10**7, status=status))


def fetches(server: JwksServer) -> int:
    return server.count(STATUS_PATH)


def test_a_clear_bit_verifies_and_a_set_bit_is_revoked(server: JwksServer, clock: Clock) -> None:
    verifier = make(server, clock)
    assert verifier.verify(token(server, CLEAR))["sub"] == "svc"
    with pytest.raises(InvalidToken) as refused:
        verifier.verify(token(server, REVOKED))
    assert refused.value.reason == "revoked"
    assert not isinstance(refused.value, StatusUnavailable)
    for _ in range(300):  # warm: no request per token
        verifier.verify(token(server, CLEAR))
    assert fetches(server) == 1


async def test_averify_reads_the_same_bits(server: JwksServer, clock: Clock) -> None:
    verifier = make(server, clock)
    assert (await verifier.averify(token(server, CLEAR)))["sub"] == "svc"
    with pytest.raises(InvalidToken, match="revoked"):
        await verifier.averify(token(server, REVOKED))
    assert fetches(server) == 1


def test_a_token_without_status_or_with_check_status_off_fetches_no_list(
    server: JwksServer, clock: Clock
) -> None:
    plain = sign(claims(iss=server.issuer, exp=int(NOW) + 10**7))
    assert make(server, clock).verify(plain)["sub"] == "svc"
    assert make(server, clock, check_status=False).verify(token(server, REVOKED))["sub"] == "svc"
    assert fetches(server) == 0


@pytest.mark.parametrize("where", ["other_port", "other_scheme", "other_host", "userinfo"])
def test_a_list_outside_the_issuers_origin_is_refused_and_never_fetched(
    server: JwksServer, clock: Clock, where: str
) -> None:
    with jwks_server(rsa_key()) as elsewhere:
        publish(elsewhere)
        port = server.url.rsplit(":", 1)[1]
        uri = {
            "other_port": elsewhere.url + STATUS_PATH,
            "other_scheme": f"https://127.0.0.1:{port}{STATUS_PATH}",
            "other_host": f"http://localhost:{port}{STATUS_PATH}",
            "userinfo": f"http://x@127.0.0.1:{port}{STATUS_PATH}",
        }[where]
        verifier = make(server, clock, status_fail_open=True)
        with pytest.raises(InvalidToken) as refused:
            verifier.verify(token(server, CLEAR, uri=uri))
        assert refused.value.reason == "invalid_claim"
        assert "origin" in refused.value.description
        assert elsewhere.total() == 0
        assert fetches(server) == 0


def test_threads_on_a_cold_list_share_one_fetch(server: JwksServer, clock: Clock) -> None:
    verifier = make(server, clock)
    verifier.load_keys()
    server.extra_mode, server.delay = "slow", 0.3
    good = token(server, CLEAR)
    results: list[str] = []
    start = threading.Barrier(50)

    def call() -> None:
        start.wait()
        results.append(verifier.verify(good)["sub"])

    threads = [threading.Thread(target=call) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == ["svc"] * 50
    assert fetches(server) == 1


async def test_tasks_on_a_cold_list_share_one_fetch(server: JwksServer, clock: Clock) -> None:
    verifier = make(server, clock)
    await verifier.aload_keys()
    server.extra_mode, server.delay = "slow", 0.3
    results = await asyncio.gather(*(verifier.averify(token(server, CLEAR)) for _ in range(100)))
    assert {r["sub"] for r in results} == {"svc"}
    assert fetches(server) == 1


@pytest.mark.parametrize(("control", "fresh"), [("public, max-age=300", 60), ("max-age=20", 20)])
def test_the_list_is_refetched_after_the_smaller_of_ttl_and_max_age(
    server: JwksServer, clock: Clock, control: str, fresh: float
) -> None:
    server.cache_control = control
    verifier = make(server, clock)
    verifier.verify(token(server, CLEAR))
    clock.advance(fresh - 0.1)
    verifier.verify(token(server, CLEAR))
    assert fetches(server) == 1
    publish(server, CLEAR)  # revoked meanwhile
    clock.advance(0.2)
    with pytest.raises(InvalidToken, match="revoked"):
        verifier.verify(token(server, CLEAR))
    assert fetches(server) == 2


def test_an_unchanged_list_is_revalidated_with_a_304(server: JwksServer, clock: Clock) -> None:
    verifier = make(server, clock)
    verifier.verify(token(server, CLEAR))
    clock.advance(61)
    verifier.verify(token(server, CLEAR))
    assert (fetches(server), server.not_modified) == (2, 1)
    assert verifier.status_list_age(server.url + STATUS_PATH) == 0
    clock.advance(59)
    verifier.verify(token(server, CLEAR))
    assert fetches(server) == 2


@pytest.mark.parametrize("mode", ["error", "garbage", "drop"])
def test_the_last_good_list_serves_for_a_bounded_time_then_status_unavailable(
    server: JwksServer, clock: Clock, mode: str
) -> None:
    verifier = make(server, clock)
    uri = server.url + STATUS_PATH
    verifier.verify(token(server, CLEAR))
    server.extra_mode = mode
    clock.advance(61)  # expired: the refetch fails, the stale list serves
    assert verifier.verify(token(server, CLEAR))["sub"] == "svc"
    with pytest.raises(InvalidToken, match="revoked"):  # its bits still count
        verifier.verify(token(server, REVOKED))
    assert fetches(server) == 2
    assert verifier.status_list_age(uri) == 61
    clock.advance(298)  # fresh until 60, stale until 60 + max(60, 300)
    assert verifier.verify(token(server, CLEAR))["sub"] == "svc"
    clock.advance(2)
    with pytest.raises(StatusUnavailable) as refused:
        verifier.verify(token(server, CLEAR))
    assert refused.value.reason == "status_unavailable"
    server.extra_mode = None
    clock.advance(60)  # after the retry backoff
    assert verifier.verify(token(server, CLEAR))["sub"] == "svc"
    assert verifier.status_list_age(uri) == 0


def test_no_list_at_all_is_status_unavailable_and_backs_off(
    server: JwksServer, clock: Clock
) -> None:
    server.extra_mode = "error"
    verifier = make(server, clock)
    assert verifier.status_list_age(server.url + STATUS_PATH) is None
    for _ in range(3):
        with pytest.raises(StatusUnavailable):
            verifier.verify(token(server, CLEAR))
    assert fetches(server) == 1


def test_fail_open_accepts_and_logs_once(
    server: JwksServer, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    server.extra_mode = "error"
    verifier = make(server, clock, status_fail_open=True)
    with caplog.at_level(logging.WARNING, "authority.verifier"):
        for _ in range(5):
            assert verifier.verify(token(server, CLEAR))["sub"] == "svc"
            clock.advance(2)
    opened = [r for r in caplog.records if "fail open" in r.getMessage()]
    assert len(opened) == 1
    server.extra_mode = None
    clock.advance(60)
    with pytest.raises(InvalidToken, match="revoked"):  # a list again: bits count
        verifier.verify(token(server, REVOKED))


@pytest.mark.parametrize(
    "change",
    [
        {"key": 1},
        {"typ": "JWT"},
        {"typ": "at+jwt"},
        {"sub": "http://127.0.0.1:1/status/1"},
        {"sub": None},
        {"exp": int(NOW) - 60},
        {"exp": None},
        {"status_list": {"bits": 2, "lst": encode(pack(1024, ()))}},
        {"status_list": {"bits": 1, "lst": "!!"}},
    ],
)
def test_a_list_that_is_not_valid_is_refused(
    server: JwksServer, clock: Clock, change: dict[str, Any]
) -> None:
    server.extra[STATUS_PATH] = status_jwt(server, **change)
    verifier = make(server, clock)
    with pytest.raises(StatusUnavailable):
        verifier.verify(token(server, CLEAR))
    assert fetches(server) == 1


def test_a_list_signed_by_an_unknown_key_refetches_the_jwks_once_per_cooldown(
    server: JwksServer, clock: Clock
) -> None:
    publish(server, key=1)
    verifier = make(server, clock)
    verifier.load_keys()
    with pytest.raises(StatusUnavailable):
        verifier.verify(token(server, CLEAR))
    assert server.count(JWKS_PATH) == 2
    clock.advance(2)  # after the list's retry backoff, within the JWKS cooldown
    with pytest.raises(StatusUnavailable):
        verifier.verify(token(server, CLEAR))
    assert (fetches(server), server.count(JWKS_PATH)) == (2, 2)
    server.keys = [rsa_key(), rsa_key(1)]  # the key is published
    clock.advance(10)
    assert verifier.verify(token(server, CLEAR))["sub"] == "svc"
    assert server.count(JWKS_PATH) == 3


async def test_the_asgi_middleware_answers_401_revoked_and_503_unavailable(
    server: JwksServer, clock: Clock
) -> None:
    async def echo(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": json.dumps(scope["auth"]).encode()})

    verifier = make(server, clock)
    app = BearerAuthMiddleware(echo, verifier)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://rs") as rs:

        async def call(idx: int) -> httpx.Response:
            return await rs.get("/", headers={"Authorization": f"Bearer {token(server, idx)}"})

        assert (await call(CLEAR)).status_code == 200
        revoked = await call(REVOKED)
        assert revoked.status_code == 401
        assert 'error="invalid_token"' in revoked.headers["www-authenticate"]
        assert (
            revoked.json()["error_description"] == "the token status list says the token is revoked"
        )
        server.extra_mode = "error"
        clock.advance(60 + 300 + 1)
        unavailable = await call(CLEAR)
        assert unavailable.status_code == 503
        assert unavailable.json()["error"] == "temporarily_unavailable"
        assert "retry-after" in unavailable.headers


def test_a_warm_status_check_fetches_nothing_more(server: JwksServer, clock: Clock) -> None:
    """Warm, a check is a lookup in memory (``bench/verify_status.py`` measures its
    cost): a thousand verifications within the ttl make no request."""
    verifier = make(server, clock)
    good = token(server, CLEAR)
    for _ in range(1000):
        verifier.verify(good)
    assert fetches(server) == 1
    assert server.count(JWKS_PATH) == 1


def test_a_list_as_large_as_the_authority_publishes_under_load_is_read(
    server: JwksServer, clock: Clock
) -> None:
    """At 1,000 tokens/s with 1% revoked the signed list is about 20 KiB, far more than
    an access token may be (8 KiB): it is read all the same, bit for bit."""
    rng = random.Random(7)  # noqa: S311 (test data, not a secret)
    revoked = sorted(rng.sample(range(990_000), 9_900))
    server.extra[STATUS_PATH] = status_jwt(server, tuple(revoked), size=1 << 21)
    assert len(server.extra[STATUS_PATH]) > 16 * 1024
    verifier = make(server, clock)
    clear = next(i for i in range(revoked[100], revoked[101]) if i not in revoked)
    assert verifier.verify(token(server, clear))["sub"] == "svc"
    for idx in (revoked[0], revoked[5_000], revoked[-1]):
        with pytest.raises(InvalidToken, match="revoked"):
            verifier.verify(token(server, idx))
    assert fetches(server) == 1
