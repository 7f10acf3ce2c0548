"""Shared fixtures: databases (SQLite, and PostgreSQL when configured), settings, and
real server processes.

PostgreSQL tests use ``AUTHORITY_TEST_POSTGRES_URL`` (``tests/pg_cluster.sh`` starts a
throwaway server). Without it they skip, unless ``AUTHORITY_TEST_REQUIRE_POSTGRES=1``
(set by ``.ci/run``), which turns the skip into a failure.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from authority.settings import Settings
from authority.storage.migrate import upgrade

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_URL = os.environ.get("AUTHORITY_TEST_POSTGRES_URL", "")
REQUIRE_POSTGRES = os.environ.get("AUTHORITY_TEST_REQUIRE_POSTGRES") == "1"
BACKENDS = ["sqlite", "postgresql"]


def need_postgres() -> str:
    if POSTGRES_URL:
        return POSTGRES_URL
    if REQUIRE_POSTGRES:
        pytest.fail("AUTHORITY_TEST_REQUIRE_POSTGRES=1 but AUTHORITY_TEST_POSTGRES_URL is unset")
    pytest.skip("PostgreSQL not configured (source tests/pg_cluster.sh; pg_cluster_start)")


def admin_sql(sql: str) -> None:
    """Run one statement on the PostgreSQL server, from sync or async test code."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, _admin(sql)).result()


async def _admin(sql: str) -> None:
    import asyncpg

    url = make_url(POSTGRES_URL)
    conn = await asyncpg.connect(host=url.host, port=url.port, user=url.username,
                                 password=url.password, database=url.database)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """The URL of a new empty PostgreSQL database, dropped on exit."""
    base = need_postgres()
    name = f"t_{secrets.token_hex(6)}"
    admin_sql(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def fresh_postgres_url() -> Iterator[str]:
    """A new empty PostgreSQL database for one test, dropped afterwards."""
    with postgres_database() as url:
        yield url


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of each backend."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'authority.db'}"
    return str(request.getfixturevalue("fresh_postgres_url"))


@pytest.fixture
def migrated_url(database_url: str) -> str:
    upgrade(database_url)
    return database_url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'authority.db'}"
    upgrade(url)
    return url


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    def build(**overrides: object) -> Settings:
        values: dict[str, object] = {
            "database_url": f"sqlite+aiosqlite:///{tmp_path / 'authority.db'}",
            "keys_dir": tmp_path / "keys", "env": "test",
        }
        values.update(overrides)
        return Settings(**values)  # type: ignore[arg-type]
    return build


class Clock:
    """A clock the tests move by hand."""

    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


# --- real processes ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli_env(**env: str) -> dict[str, str]:
    """The environment for an ``authority`` subprocess: nothing inherited but PATH-like
    basics, so a developer's ``AUTHORITY_*`` variables cannot leak into a test."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("AUTHORITY_")}
    base.update({"AUTHORITY_ENV": "test", "PYTHONUNBUFFERED": "1"})
    base.update(env)
    return base


def run_cli(workdir: Path, *args: str, env: dict[str, str] | None = None,
            input_: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "authority", *args], cwd=workdir, env=env or cli_env(),
        capture_output=True, text=True, input=input_, timeout=timeout, check=False)


@dataclass
class Server:
    process: subprocess.Popen[str]
    url: str
    log: Path
    env: dict[str, str] = field(default_factory=dict)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10)

    def stop(self) -> None:
        stop_process(self.process)


def stop_process(process: subprocess.Popen[Any]) -> None:
    """SIGTERM, and SIGKILL if it has not exited 10 s later."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


SERVE = [sys.executable, "-m", "authority", "serve"]


def start_server(workdir: Path, env: dict[str, str], wait: float = 30,
                 command: list[str] = SERVE) -> Server:
    """``authority serve`` (or ``command``, which must exec it) as a real process;
    returns once ``/health/ready`` answers."""
    port = free_port()
    env = {**env, "AUTHORITY_PORT": str(port), "AUTHORITY_HOST": "127.0.0.1"}
    log = workdir / f"server-{port}.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            command, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
    server = Server(process, f"http://127.0.0.1:{port}", log, env)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{server.url}/health/ready", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    server.stop()
    raise AssertionError(f"server not ready after {wait}s:\n{log.read_text()}")


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    """Servers started by a test are stopped after it, whatever happens."""
    started: list[Server] = []
    yield started
    for server in started:
        server.stop()
