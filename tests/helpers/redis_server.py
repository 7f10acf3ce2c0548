"""A throwaway ``redis-server`` (Debian's package) on 127.0.0.1 for tests, without
persistence, so that a restart loses everything as a crashed cache would.

Tests that need it skip when the binary is missing, unless
``TEST_REQUIRE_REDIS=1`` (set by ``.ci/run``), which makes them fail.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import redis

from tests.helpers.processes import free_port, stop_process

REQUIRE_REDIS = os.environ.get("TEST_REQUIRE_REDIS") == "1"


def need_redis() -> str:
    """The path of ``redis-server``, or skip (fail when Redis is required)."""
    binary = shutil.which("redis-server") or shutil.which("redis-server", path="/usr/bin:/usr/sbin")
    if binary:
        return binary
    if REQUIRE_REDIS:
        pytest.fail("TEST_REQUIRE_REDIS=1 but redis-server is not installed")
    pytest.skip("redis-server not installed (apt-get install redis-server)")


class RedisServer:
    """One ``redis-server`` process; ``stop`` and ``start`` again keep its port."""

    def __init__(self, binary: str, workdir: Path):
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.log = workdir / f"redis-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, wait: float = 10) -> RedisServer:
        with self.log.open("a") as out:
            self.process = subprocess.Popen(
                [
                    self.binary,
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.workdir),
                    "--daemonize",
                    "no",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + wait
        while not self._pong():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"redis-server did not start:\n{self.log.read_text()}")
            time.sleep(0.05)
        return self

    def _pong(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
        self.process = None

    def client(self) -> redis.Redis:
        """A client of this server; close it (``with server.client() as r:``)."""
        return redis.Redis.from_url(self.url, decode_responses=True)
