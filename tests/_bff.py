"""The processes around ``examples/bff`` for ``tests/test_bff.py``: the example
resource server and the BFF itself, each a real uvicorn server on its own port."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.conftest import ROOT, cli_env, free_port


@dataclass
class Process:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def spawn(argv: list[str], workdir: Path, name: str, env: dict[str, str],
          port: int | None = None, wait: float = 30) -> Process:
    """Start ``argv`` with ``PORT`` set; return once its ``/health`` answers 200."""
    port = port or free_port()
    log = workdir / f"{name}-{port}.log"
    with log.open("w") as out:
        process = subprocess.Popen(argv, cwd=workdir, env={**env, "PORT": str(port)},
                                   stdout=out, stderr=subprocess.STDOUT)
    started = Process(process, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + wait
    while True:
        if process.poll() is not None:
            raise AssertionError(f"{name} exited {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{started.url}/health", timeout=1).status_code == 200:
                return started
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            started.stop()
            raise AssertionError(f"{name} not ready after {wait}s:\n{log.read_text()}")
        time.sleep(0.1)


def start_resource_server(workdir: Path, issuer: str, port: int | None = None) -> Process:
    return spawn([sys.executable, str(ROOT / "examples" / "resource_server.py")], workdir,
                 "resource-server", cli_env(AUTHORITY_ISSUER=issuer), port)


def start_bff(workdir: Path, authority_url: str, api_url: str, redis_url: str) -> Process:
    env = cli_env(PYTHONPATH=str(ROOT / "examples"), BFF_AUTHORITY_URL=authority_url,
                  BFF_API_URL=api_url, BFF_REDIS_URL=redis_url, BFF_COOKIE_SECURE="false")
    return spawn([sys.executable, "-m", "bff"], workdir, "bff", env)
