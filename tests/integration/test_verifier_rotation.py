"""Zero false rejections across key rotation against a live authority: tokens from
``client_credentials`` are verified as they are issued while ``authority keys rotate``
and then ``authority keys rotate --now`` run."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from authority.verifier import CachePolicy, HttpResponse, InvalidToken, Verifier, urllib_fetch
from tests.helpers.processes import Server, cli_env, run_cli, start_server

AUDIENCE = "api://orders"


def cli(workdir: Path, env: dict[str, str], *args: str) -> dict[str, str]:
    result = run_cli(workdir, *args, "--json", env=env)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def kid(token: str) -> str:
    head = token.split(".")[0]
    return str(json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))["kid"])


class CountingFetch:
    def __init__(self) -> None:
        self.urls: list[str] = []

    def __call__(self, url: str, headers: Mapping[str, str], timeout: float) -> HttpResponse:
        self.urls.append(url)
        return urllib_fetch(url, headers, timeout)


@dataclass
class Traffic:
    """Gets a token and verifies it with every verifier, again and again."""

    authority: Server
    client: dict[str, str]
    verifiers: list[Verifier] = field(default_factory=list)
    kids: list[str] = field(default_factory=list)
    checked: dict[int, list[str]] = field(default_factory=dict)
    rejected: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(base_url=self.authority.url, timeout=10) as http:
            while not self.stop.is_set():
                response = http.post(
                    "/oauth/token",
                    data={"grant_type": "client_credentials"},
                    auth=(self.client["client_id"], self.client["client_secret"]),
                )
                assert response.status_code == 200, response.text
                token = response.json()["access_token"]
                self.kids.append(kid(token))
                for verifier in list(self.verifiers):
                    try:
                        verifier.verify(token)
                    except InvalidToken as exc:
                        self.rejected.append(f"{kid(token)}: {exc}")
                    self.checked.setdefault(id(verifier), []).append(kid(token))

    def wait(self, condition: Callable[[], bool], what: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            assert not self.rejected, self.rejected
            time.sleep(0.02)


def test_tokens_keep_verifying_across_rotate_and_rotate_now(
    tmp_path: Path, servers: list[Server]
) -> None:
    env = cli_env(
        AUTHORITY_SECRET_KEY="k" * 40,
        AUTHORITY_AUDIENCE=AUDIENCE,
        AUTHORITY_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'authority.db'}",
        AUTHORITY_KEYS_DIR=str(tmp_path / "keys"),
        AUTHORITY_KEYSTORE_POLL_INTERVAL="0.5",
        AUTHORITY_JWKS_MAX_AGE="1",
        AUTHORITY_KEY_PUBLISH_DELAY="2",
    )
    cli(tmp_path, env, "setup")
    with ThreadPoolExecutor(2) as pool:
        client = pool.submit(cli, tmp_path, env, "clients", "create", "svc")
        authority = start_server(tmp_path, env)
        servers.append(authority)
        traffic = Traffic(authority, client.result())
    # Follows max-age=1: learns a published key before it signs.
    follower = Verifier(authority.url, AUDIENCE, cache=CachePolicy(min_max_age=0.5))
    traffic.verifiers.append(follower)
    loop = threading.Thread(target=traffic.run, daemon=True)
    loop.start()
    try:
        traffic.wait(lambda: len(traffic.kids) >= 5, "the first tokens")
        first = traffic.kids[0]

        cli(tmp_path, env, "keys", "rotate")
        traffic.wait(lambda: traffic.kids[-1] != first, "tokens signed by the rotated key")
        second = traffic.kids[-1]

        # Warm now, then never refreshed on schedule: only the unknown kid can teach it.
        fetch = CountingFetch()
        sleeper = Verifier(
            authority.url, AUDIENCE, fetch=fetch, cache=CachePolicy(min_max_age=3600)
        )
        sleeper.load_keys()
        assert {first, second} <= sleeper.kids
        traffic.verifiers.append(sleeper)

        cli(tmp_path, env, "keys", "rotate", "--now")
        traffic.wait(
            lambda: traffic.kids[-1] not in (first, second), "tokens signed by the --now key"
        )
        third = traffic.kids[-1]
        traffic.wait(
            lambda: traffic.checked.get(id(sleeper), []).count(third) >= 5,
            "the sleeper to verify tokens of the --now key",
        )
    finally:
        traffic.stop.set()
        loop.join(10)
    assert traffic.rejected == []
    assert len({first, second, third}) == 3
    assert traffic.checked[id(follower)].count(third) >= 5
    # Its first fetch (metadata, JWKS), then one JWKS refetch for the --now key's kid;
    # status list fetches (once per its ttl) are the status cache's business, not the keys'.
    key_fetches = [url for url in fetch.urls if not url.endswith("/status/1")]
    assert len(key_fetches) == 3, fetch.urls
    assert key_fetches[0].endswith("/.well-known/oauth-authorization-server")
