"""What ``authority serve`` tells its operator on standard error (README, "Logs"): every
line one JSON object; each request one access line with its X-Request-ID; never a
token, secret, password or code; ``ACCESS_LOG=false`` silences the access log alone."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.deployment import PASSWORD, USERNAME, Deployment, provision
from tests.helpers.processes import Server, start_server

STDERR = "stderr.log"


def serve(deployment: Deployment, **env: str) -> Server:
    """``authority serve`` with its standard error, alone, in ``STDERR``."""
    (deployment.workdir / STDERR).write_text("")
    command = ["sh", "-c", f'exec "$0" -m authority serve 2>>{STDERR}', sys.executable]
    return start_server(deployment.workdir, {**deployment.env, **env}, command=command)


def stderr_lines(workdir: Path, until: str, timeout: float = 10) -> list[dict[str, Any]]:
    """Every line of the server's stderr as JSON, once ``until`` is in it."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = (workdir / STDERR).read_text()
        if until in text:
            break
        time.sleep(0.05)
    assert until in text, text
    return [json.loads(line) for line in text.splitlines()]


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    workdir = tmp_path_factory.mktemp("server-logs")
    return provision(workdir, f"sqlite+aiosqlite:///{workdir / 'authority.db'}")


def test_each_request_is_an_access_line_with_its_request_id_and_no_secret(
    deployment: Deployment,
) -> None:
    service = deployment.create_client("svc")
    server = serve(deployment)
    try:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            issued = http.post(
                "/oauth/token",
                data={"grant_type": "client_credentials"},
                auth=(service.client_id, str(service.client_secret)),
                headers={"X-Request-ID": "trace-42"},
            )
            assert issued.status_code == 200
            assert issued.headers["x-request-id"] == "trace-42"
            login = http.post(
                "/auth/login",
                json={"username": USERNAME, "password": PASSWORD, "delivery": "body"},
            )
            assert login.status_code == 200
            refreshed = http.post(
                "/auth/refresh", json={"refresh": login.json()["tokens"]["refresh"]}
            )
            assert refreshed.status_code == 200
            probe = http.get(
                "/nowhere",
                params={"code": "CODE-Zq81", "access_token": issued.json()["access_token"]},
                headers={"Authorization": f"Bearer {issued.json()['access_token']}"},
            )
            assert probe.status_code == 404
        lines = stderr_lines(deployment.workdir, probe.headers["x-request-id"])
    finally:
        server.stop()

    access = {line["request_id"]: line for line in lines if line["logger"] == "authority.access"}
    token_line = access["trace-42"]
    assert token_line["method"] == "POST"
    assert token_line["route"] == "/oauth/token"
    assert token_line["status"] == 200
    assert token_line["level"] == "INFO"
    assert token_line["time"].endswith("Z")
    assert isinstance(token_line["duration_ms"], float)
    # Ids the server made up are in the answers and in the log alike.
    assert access[login.headers["x-request-id"]]["route"] == "/auth/login"
    assert access[refreshed.headers["x-request-id"]]["route"] == "/auth/refresh"
    assert access[probe.headers["x-request-id"]]["route"] == "/nowhere"
    assert any(line["logger"].startswith("uvicorn") for line in lines)

    log = (deployment.workdir / STDERR).read_text()
    tokens = login.json()["tokens"] | {"new-" + k: v for k, v in refreshed.json()["tokens"].items()}
    secrets = [
        issued.json()["access_token"],
        str(service.client_secret),
        PASSWORD,
        "CODE-Zq81",
        *(v for v in tokens.values() if isinstance(v, str)),
    ]
    assert [s for s in secrets if s in log] == []


def test_access_log_false_silences_the_access_log_alone(deployment: Deployment) -> None:
    server = serve(deployment, AUTHORITY_ACCESS_LOG="false")
    try:
        answer = httpx.get(f"{server.url}/health/live", headers={"X-Request-ID": "quiet-1"})
        assert answer.headers["x-request-id"] == "quiet-1"
    finally:
        server.stop()
    lines = stderr_lines(deployment.workdir, "Finished server process")
    assert "quiet-1" not in (deployment.workdir / STDERR).read_text()
    assert not [line for line in lines if line["logger"] == "authority.access"]
