"""What the BFF tests (``tests/browser/test_bff.py``, ``tests/chaos/test_bff_outages.py``)
run and look at: ``examples/bff`` end to end, with a real ``redis-server``, ``authority
serve``, the example resource server and two BFF processes sharing one Redis (as
behind a load balancer); the BFF's session records in Redis, and the refresh families
at the authority.

The authority runs with ``REFRESH_REUSE_GRACE=0``: a second refresh with one token
revokes the whole family, so "exactly one refresh" is strict.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx

from examples.bff.sessions import session_key
from tests.helpers.deployment import PASSWORD, USERNAME, Deployment, provision
from tests.helpers.processes import (
    ROOT,
    Process,
    Server,
    cli_env,
    free_port,
    spawn,
    start_resource_server,
)
from tests.helpers.redis_server import RedisServer, need_redis

COOKIE = "bff_session"
CSRF = {"X-Requested-With": "test"}
CREDENTIALS = {"username": USERNAME, "password": PASSWORD}


def start_bff(
    workdir: Path, authority_url: str, api_url: str, redis_url: str, **settings: str
) -> Process:
    """A BFF process (``python -m bff``); ``settings``: more or other ``BFF_*``."""
    env = cli_env(
        PYTHONPATH=str(ROOT / "examples"),
        BFF_AUTHORITY_URL=authority_url,
        BFF_API_URL=api_url,
        BFF_REDIS_URL=redis_url,
        **{"BFF_COOKIE_SECURE": "false", **settings},
    )
    return spawn([sys.executable, "-m", "bff"], workdir, "bff", env)


@contextlib.contextmanager
def another_bff(
    stack: Stack, workdir: Path, authority_url: str = "", api_url: str = "", **settings: str
) -> Iterator[Process]:
    """One more BFF on the stack's Redis (and authority and API unless named), with
    ``settings`` (``BFF_*``)."""
    bff = start_bff(
        workdir,
        authority_url or stack.authority.url,
        api_url or stack.api.url,
        stack.redis.url,
        **settings,
    )
    try:
        yield bff
    finally:
        bff.stop()


class FakeApi:
    """An API on 127.0.0.1 that records what reaches it and answers ``GET /<name>`` and
    ``POST /<name>`` with ``ANSWERS[name]``: (content type, body)."""

    ANSWERS: ClassVar[dict[str, tuple[str, bytes]]] = {
        "json": ("application/json", b'{"ok": true}'),
        "problem": ("application/problem+json; charset=utf-8", b'{"title": "no"}'),
        "html": ("text/html", b"<script>alert(document.cookie)</script>"),
        "sniffable": ("text/plain", b"<html><script>alert(1)</script></html>"),
        "empty": ("", b""),
    }

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                api.seen.append(
                    (self.command, self.path, {k.lower(): v for k, v in self.headers.items()})
                )
                kind, body = api.ANSWERS.get(self.path.strip("/"), ("application/json", b"{}"))
                self.send_response(200 if body else 204)
                if kind:
                    self.send_header("Content-Type", kind)
                self.send_header("Set-Cookie", "api=1; Path=/")
                self.send_header("X-Api-Internal", "secret")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = answer

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> FakeApi:
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@dataclass
class Stack:
    deployment: Deployment
    authority: Server
    redis: RedisServer
    api: Process
    bffs: list[Process]

    @property
    def url(self) -> str:
        return self.bffs[0].url

    def browser(self, index: int = 0) -> httpx.Client:
        """A client that keeps cookies, as a browser would."""
        return httpx.Client(base_url=self.bffs[index].url, timeout=20)


@contextlib.contextmanager
def running_stack(workdir: Path) -> Iterator[Stack]:
    """Redis, the authority (on SQLite), the resource server and two BFFs, started side
    by side in ``workdir``; all stopped on exit."""
    binary = need_redis()
    with contextlib.ExitStack() as cleanup, ThreadPoolExecutor(3) as pool:
        redis_server = RedisServer(binary, workdir)
        started_redis = pool.submit(redis_server.start)
        cleanup.callback(redis_server.stop)
        deployment = provision(
            workdir,
            f"sqlite+aiosqlite:///{workdir / 'authority.db'}",
            AUTHORITY_REFRESH_REUSE_GRACE="0",
        )
        cleanup.callback(deployment.stop)
        [authority] = deployment.start()
        started_redis.result()
        api_url = f"http://127.0.0.1:{free_port()}"
        futures = [
            pool.submit(
                start_resource_server, workdir, authority.url, int(api_url.rsplit(":", 1)[1])
            )
        ]
        futures += [
            pool.submit(start_bff, workdir, authority.url, api_url, redis_server.url)
            for _ in range(2)
        ]
        started, failures = [], []
        for future in futures:
            try:
                started.append(future.result())
            except AssertionError as exc:
                failures.append(exc)
        for process in started:
            cleanup.callback(process.stop)
        if failures:
            raise failures[0]
        api, *bffs = started
        yield Stack(deployment, authority, redis_server, api, bffs)


def emptied(running: Stack) -> Stack:
    """The running stack with an empty Redis (and Redis up, whatever the last test did)."""
    if running.redis.process is None:
        running.redis.start()
    with running.redis.client() as redis:
        redis.flushall()
    return running


def browser_at(process: Process, address: str) -> httpx.Client:
    """A browser at another loopback address (all of 127.0.0.0/8 is local on Linux),
    so that the BFF sees a client address of its own."""
    return httpx.Client(
        base_url=process.url, timeout=20, transport=httpx.HTTPTransport(local_address=address)
    )


def log_in(browser: httpx.Client) -> str:
    response = browser.post("/login", json=CREDENTIALS, headers=CSRF)
    assert response.status_code == 200, response.text
    return browser.cookies[COOKIE]


def set_cookie(response: httpx.Response, name: str = COOKIE) -> Any:
    """The BFF's session cookie as set by ``response``, or None."""
    for header in response.headers.get_list("set-cookie"):
        parsed = SimpleCookie(header)
        if name in parsed:
            return parsed[name]
    return None


def stored(stack: Stack, session_id: str) -> dict[str, Any] | None:
    with stack.redis.client() as redis:
        raw = redis.get(session_key(session_id))
    return json.loads(raw) if raw else None


def rewrite(stack: Stack, session_id: str, **fields: float) -> None:
    """Change fields of the stored session record, keeping its TTL."""
    with stack.redis.client() as redis:
        key = session_key(session_id)
        record = json.loads(redis.get(key))
        record.update(fields)
        assert redis.set(key, json.dumps(record), keepttl=True, xx=True)


def force_expiry(stack: Stack, session_id: str) -> None:
    """Make the stored access token expired, as time would."""
    past = time.time() - 1
    rewrite(stack, session_id, refresh_at=past, access_expires_at=past)


@contextlib.contextmanager
def second_authority(stack: Stack, workdir: Path, **env: str) -> Iterator[tuple[Server, Process]]:
    """Another authority process on the same database and keys, under the first one's
    issuer (so the API accepts its tokens), with ``env``; and a BFF of its own."""
    [authority] = stack.deployment.start(1, **{"AUTHORITY_ISSUER": stack.authority.url, **env})
    try:
        bff = start_bff(workdir, authority.url, stack.api.url, stack.redis.url)
        try:
            yield authority, bff
        finally:
            bff.stop()
    finally:
        authority.stop()


def family_of(stack: Stack, refresh: str) -> str:
    rows = stack.deployment.query(
        "SELECT family_id FROM refresh_tokens WHERE token_hash = :hash",
        hash=hashlib.sha256(refresh.encode()).digest(),
    )
    assert len(rows) == 1
    return str(rows[0][0])


def tokens_in_family(stack: Stack, family: str) -> int:
    rows = stack.deployment.query(
        "SELECT count(*) FROM refresh_tokens WHERE family_id = :family", family=family
    )
    return int(rows[0][0])


def revocation(stack: Stack, family: str) -> tuple[float | None, str | None]:
    rows = stack.deployment.query(
        "SELECT revoked_at, revoke_reason FROM refresh_families WHERE id = :family", family=family
    )
    return rows[0].revoked_at, rows[0].revoke_reason


def address_failures(stack: Stack) -> dict[str, int]:
    """The authority's failed-login counters per client address."""
    rows = stack.deployment.query(
        "SELECT key, failures FROM login_throttle WHERE key LIKE 'address:%'"
    )
    return {row.key.removeprefix("address:"): int(row.failures) for row in rows}


def active_families(stack: Stack) -> int:
    rows = stack.deployment.query("SELECT count(*) FROM refresh_families WHERE revoked_at IS NULL")
    return int(rows[0][0])
