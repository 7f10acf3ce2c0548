"""Revocation reaches an offline resource server (README, "Revocation that reaches
resource servers"), end to end against real processes: ``authority serve`` with
``AUTHORITY_STATUS_LIST_TTL=2`` and ``examples/resource_server.py``.

For each way a token is revoked, the token first works at the resource server (200),
then, within the list's ttl plus one poll of the authority, is refused there as
``revoked`` (401); meanwhile the authority sees no request per API call, only the
resource server's list fetches, about one per ttl (counted in its access log).
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from authority.status.publisher import LIFETIME_TTLS, POLL, STATUS_PATH
from tests.helpers.processes import (
    Server,
    cli_env,
    run_cli,
    start_resource_server,
    start_server,
)

AUDIENCE = "api://orders"
TTL = 2
PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "another long passphrase"
# The latest a revocation may reach the resource server: its list is at most TTL old,
# and the authority's list follows the database within one POLL; plus the slack of a
# shared, noisy machine.
DEADLINE = TTL + POLL + 2.0
LEEWAY = 30  # the example resource server's Verifier (the default)
_names = itertools.count()


@dataclass
class Stack:
    workdir: Path
    env: dict[str, str]
    authority: Server
    api: str  # the resource server

    def cli(self, *args: str, input_: str | None = None) -> Any:
        result = run_cli(self.workdir, *args, "--json", env=self.env, input_=input_)
        assert result.returncode == 0, f"authority {' '.join(args)}: {result.stderr}"
        return json.loads(result.stdout)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.post(self.authority.url + path, timeout=10, **kwargs)

    def access_lines(self) -> list[dict[str, Any]]:
        """The authority's access log so far, one dict per request."""
        lines = []
        for line in self.authority.log.read_text().splitlines():
            if line.startswith("{") and '"authority.access"' in line:
                lines.append(json.loads(line))
        return lines

    def mark(self) -> int:
        """Where the access log is now: a request of our own (a 404), once its line was
        written (by the log's writer thread, after every earlier one)."""
        route = f"/mark-{next(_names)}"
        assert httpx.get(self.authority.url + route, timeout=10).status_code == 404
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            lines = self.access_lines()
            if lines and lines[-1]["route"] == route:
                return len(lines)
            time.sleep(0.05)
        raise AssertionError(f"{route} never reached the access log")

    def call(self, token: str) -> httpx.Response:
        return httpx.get(f"{self.api}/me", headers={"Authorization": f"Bearer {token}"})


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("status-e2e")
    env = cli_env(
        AUTHORITY_SECRET_KEY="k" * 40,
        AUTHORITY_AUDIENCE=AUDIENCE,
        AUTHORITY_DATABASE_URL=f"sqlite+aiosqlite:///{workdir / 'authority.db'}",
        AUTHORITY_KEYS_DIR=str(workdir / "keys"),
        AUTHORITY_STATUS_LIST_TTL=str(TTL),
        AUTHORITY_REFRESH_REUSE_GRACE="0",
    )
    setup = run_cli(workdir, "setup", env=env)
    assert setup.returncode == 0, setup.stderr
    authority = start_server(workdir, env)
    try:
        api = start_resource_server(workdir, authority.url, AUTHORITY_AUDIENCE=AUDIENCE)
        try:
            yield Stack(workdir, env, authority, api.url)
        finally:
            api.stop()
    finally:
        authority.stop()


# --- how each kind of revocation gets a token and revokes it ---------------------------


def _user(stack: Stack) -> str:
    name = f"user{next(_names)}"
    stack.cli(
        "users",
        "create",
        name,
        "--email",
        f"{name}@example.com",
        "--password-stdin",
        input_=PASSWORD + "\n",
    )
    return name


def _login(stack: Stack, name: str) -> dict[str, str]:
    response = stack.post(
        "/auth/login", json={"username": name, "password": PASSWORD, "delivery": "body"}
    )
    assert response.status_code == 200, response.text
    return dict(response.json()["tokens"])


def _service(stack: Stack) -> tuple[str, tuple[str, str]]:
    """A new ``client_credentials`` client, its name and credentials."""
    name = f"svc{next(_names)}"
    created = stack.cli("clients", "create", name)
    return name, (created["client_id"], created["client_secret"])


def _client_token(stack: Stack, credentials: tuple[str, str]) -> str:
    response = stack.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=credentials
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


Revoke = Callable[[], None]


def logout(stack: Stack) -> tuple[str, Revoke]:
    tokens = _login(stack, _user(stack))
    bearer = {"Authorization": f"Bearer {tokens['access']}"}
    return tokens["access"], lambda: _ok(stack.post("/auth/logout", headers=bearer))


def reuse(stack: Stack) -> tuple[str, Revoke]:
    tokens = _login(stack, _user(stack))

    def revoke() -> None:
        _ok(stack.post("/auth/refresh", json={"refresh": tokens["refresh"]}))
        replay = stack.post("/auth/refresh", json={"refresh": tokens["refresh"]})
        assert replay.status_code == 401, replay.text

    return tokens["access"], revoke


def password_change(stack: Stack) -> tuple[str, Revoke]:
    name = _user(stack)
    other_session, this_session = _login(stack, name), _login(stack, name)
    body = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    bearer = {"Authorization": f"Bearer {this_session['access']}"}
    return other_session["access"], lambda: _ok(
        stack.post("/auth/password", json=body, headers=bearer)
    )


def set_password(stack: Stack) -> tuple[str, Revoke]:
    name = _user(stack)
    return _login(stack, name)["access"], lambda: stack.cli(
        "users", "set-password", name, "--password-stdin", input_=NEW_PASSWORD + "\n"
    )


def user_disabled(stack: Stack) -> tuple[str, Revoke]:
    name = _user(stack)
    return _login(stack, name)["access"], lambda: stack.cli("users", "disable", name)


def client_disabled(stack: Stack) -> tuple[str, Revoke]:
    name, credentials = _service(stack)
    return _client_token(stack, credentials), lambda: stack.cli("clients", "disable", name)


def access_token_revoked(stack: Stack) -> tuple[str, Revoke]:
    _, credentials = _service(stack)
    token = _client_token(stack, credentials)
    return token, lambda: _ok(stack.post("/oauth/revoke", data={"token": token}, auth=credentials))


def _ok(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text


KINDS = [
    logout,
    reuse,
    password_change,
    set_password,
    user_disabled,
    client_disabled,
    access_token_revoked,
]
# The authority's own routes a revocation uses (not the resource server's doing).
REVOKING = {"/auth/logout", "/auth/refresh", "/auth/password", "/oauth/revoke"}


@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.__name__)
def test_a_revoked_token_is_refused_at_the_resource_server_within_the_ttl(
    stack: Stack, kind: Callable[[Stack], tuple[str, Revoke]]
) -> None:
    token, revoke = kind(stack)
    assert stack.call(token).status_code == 200
    before = stack.mark()
    started = time.monotonic()

    revoke()
    revoked_at = time.monotonic()
    calls = 0
    while True:
        answer = stack.call(token)
        calls += 1
        if answer.status_code != 200:
            break
        assert time.monotonic() - revoked_at < DEADLINE, "the revocation never arrived"
        time.sleep(0.05)
    waited = time.monotonic() - revoked_at
    assert answer.status_code == 401, answer.text
    assert answer.json()["error"] == "invalid_token"
    assert "revoked" in answer.json()["error_description"]
    for _ in range(20):  # refused from the cached list: no request to the authority
        assert stack.call(token).status_code == 401
        calls += 1

    window = time.monotonic() - started
    seen = [line["route"] for line in stack.access_lines()[before : stack.mark() - 1]]
    fetches = [route for route in seen if route not in REVOKING]
    assert set(fetches) <= {STATUS_PATH}, seen
    assert len(fetches) <= window / TTL + 1, (len(fetches), window)
    assert calls > 2 * len(fetches)
    print(
        f"{kind.__name__}: refused {waited:.2f} s after the revocation; "
        f"{calls} calls, {len(fetches)} list fetches in {window:.2f} s"
    )


def test_with_the_authority_down_the_last_list_serves_until_its_exp_then_503(
    stack: Stack,
) -> None:
    """Last in this module: it stops the authority. The resource server keeps its last
    good list past the ttl (revoked tokens still refused), never past the list's ``exp``
    (``LIFETIME_TTLS`` ttls after it was signed) plus the verifier's leeway; then it
    answers 503 ``temporarily_unavailable`` (``status_unavailable``), not 401."""
    _, credentials = _service(stack)
    valid = _client_token(stack, credentials)
    revoked = _client_token(stack, credentials)
    _ok(stack.post("/oauth/revoke", data={"token": revoked}, auth=credentials))
    deadline = time.monotonic() + DEADLINE
    while stack.call(revoked).status_code == 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert stack.call(valid).status_code == 200

    stack.authority.stop()
    stopped = time.monotonic()
    limit = LIFETIME_TTLS * TTL + LEEWAY + TTL + 5.0
    served = 0
    while True:
        # The revoked token first: while the stale list serves, its bit still counts
        # (401); once the list is past its exp both tokens get 503. Asking in this order
        # means an expiry between the two calls is seen as the end, not as a failure.
        answer = stack.call(revoked)
        if answer.status_code != 401:
            break
        answer = stack.call(valid)
        if answer.status_code != 200:
            break
        served += 1
        assert time.monotonic() - stopped < limit, "the stale list served too long"
        time.sleep(0.5)
    lasted = time.monotonic() - stopped
    assert stack.call(valid).status_code == 503  # the list is gone for every token
    assert stack.call(revoked).status_code == 503
    assert served > 0
    assert lasted > TTL  # the last good list outlived its ttl
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"] == "temporarily_unavailable"
    assert "retry-after" in answer.headers
    print(f"authority down: the last list served {lasted:.1f} s, then 503")
