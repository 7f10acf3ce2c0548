"""Real processes: the ``authority`` command and ``authority serve``, run with an
environment of their own on a free port of 127.0.0.1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
SERVE = [sys.executable, "-m", "authority", "serve"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli_env(**env: str) -> dict[str, str]:
    """The environment for an ``authority`` subprocess: nothing inherited but PATH-like
    basics, so a developer's ``AUTHORITY_*`` variables cannot leak into a test."""
    base = {k: v for k, v in os.environ.items() if not k.upper().startswith("AUTHORITY_")}
    base.update({"AUTHORITY_ENV": "test", "PYTHONUNBUFFERED": "1"})
    base.update(env)
    return base


def run_cli(
    workdir: Path,
    *args: str,
    env: dict[str, str] | None = None,
    input_: str | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "authority", *args],
        cwd=workdir,
        env=env or cli_env(),
        capture_output=True,
        text=True,
        input=input_,
        timeout=timeout,
        check=False,
    )


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


def start_server(
    workdir: Path, env: dict[str, str], wait: float = 30, command: list[str] = SERVE
) -> Server:
    """``authority serve`` (or ``command``, which must exec it) as a real process;
    returns once ``/health/ready`` answers."""
    port = free_port()
    env = {**env, "AUTHORITY_PORT": str(port), "AUTHORITY_HOST": "127.0.0.1"}
    log = workdir / f"server-{port}.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            command, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT, text=True
        )
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


def spawn(
    argv: list[str],
    workdir: Path,
    name: str,
    env: dict[str, str],
    port: int | None = None,
    wait: float = 30,
) -> Process:
    """Start ``argv`` with ``PORT`` set; return once its ``/health`` answers 200."""
    port = port or free_port()
    log = workdir / f"{name}-{port}.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            argv, cwd=workdir, env={**env, "PORT": str(port)}, stdout=out, stderr=subprocess.STDOUT
        )
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


def start_resource_server(
    workdir: Path, issuer: str, port: int | None = None, **env: str
) -> Process:
    """``examples/resource_server.py`` for ``issuer`` (``env``: more settings, such
    as ``AUTHORITY_AUDIENCE``), ready."""
    return spawn(
        [sys.executable, str(ROOT / "examples" / "resource_server.py")],
        workdir,
        "resource-server",
        cli_env(AUTHORITY_ISSUER=issuer, **env),
        port,
    )
