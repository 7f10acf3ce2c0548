"""What every benchmark needs: server processes on 127.0.0.1, wrk, and the machine.

Load only ever goes to 127.0.0.1, each wrk run is bounded by its duration (plus a
timeout), and every process started here is terminated (then killed) on the way out.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent
# Worker processes per server, the same for ours and the baseline.
WORKERS = int(os.environ.get("BENCH_WORKERS", "1"))
# wrk: one thread (the machine has 2 cores: one for wrk, one for the server).
WRK_THREADS = 1
WRK_CONNECTIONS = 32


class BenchError(Exception):
    """A benchmark could not run; the message is one line."""


# --- machine -------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": model,
        "python": platform.python_version(),
        "wrk": wrk_version(),
    }


def busy_cpus(seconds: float = 1.0) -> float:
    """How many CPUs' worth of time others used over ``seconds`` (from /proc/stat):
    a benchmark on a busy machine measures the neighbours too."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as stat:
            fields = [int(n) for n in stat.readline().split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields[:8]) - idle, sum(fields[:8])

    try:
        busy0, total0 = sample()
        time.sleep(seconds)
        busy1, total1 = sample()
    except OSError:
        return 0.0
    return len(os.sched_getaffinity(0)) * (busy1 - busy0) / max(1, total1 - total0)


# --- wrk -----------------------------------------------------------------------------


def wrk_binary() -> str:
    """The path of wrk, installed with apt-get when missing and we are root."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0:
        raise BenchError("wrk is not installed; install it with: sudo apt-get install -y wrk")
    print("bench: wrk not found, installing it with apt-get", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "wrk"]
    if subprocess.run(install, env=env, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, check=False)
        subprocess.run(install, env=env, check=False)
    found = shutil.which("wrk")
    if not found:
        raise BenchError("wrk is not installed and `apt-get install -y wrk` failed")
    return found


def wrk_version() -> str:
    path = shutil.which("wrk")
    if not path:
        return "not installed"
    # `wrk -v` prints its version (and usage) and exits non-zero.
    out = subprocess.run([path, "-v"], capture_output=True, text=True, check=False)
    words = (out.stdout or out.stderr).split()
    return " ".join(words[:2]) if words else "unknown"


@dataclass(frozen=True)
class WrkResult:
    requests_per_s: float
    latency_ms: dict[str, float]  # "p50", "p75", "p90", "p99"
    requests: int
    errors: int  # non-2xx/3xx responses plus socket errors

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests_per_s": self.requests_per_s,
            **{f"{k}_ms": v for k, v in self.latency_ms.items()},
            "requests": self.requests,
            "errors": self.errors,
        }


_TIME_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not match:
        raise BenchError(f"cannot read wrk latency {text!r}")
    return float(match[1]) * _TIME_UNITS_MS[match[2]]


def parse_wrk(output: str) -> WrkResult:
    """Read the text that ``wrk --latency`` prints."""
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    total = re.search(r"^\s*(\d+) requests in ", output, re.M)
    if not rps or not total:
        raise BenchError(f"cannot read wrk output: {output.strip()[:200]!r}")
    latency = {
        f"p{pct}": _ms(value)
        for pct, value in re.findall(r"^\s+(50|75|90|99)(?:\.0+)?%\s+(\S+)", output, re.M)
    }
    if "p50" not in latency or "p99" not in latency:
        raise BenchError("wrk printed no latency distribution (was --latency given?)")
    errors = 0
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    if non_2xx:
        errors += int(non_2xx[1])
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    return WrkResult(float(rps[1]), latency, int(total[1]), errors)


def wrk(url: str, duration: float, connections: int = WRK_CONNECTIONS) -> WrkResult:
    """One wrk run against ``url`` (which must be on 127.0.0.1)."""
    if not url.startswith(f"http://{HOST}:"):
        raise BenchError(f"refusing to load anything but {HOST}: {url}")
    command = [
        wrk_binary(),
        f"--threads={WRK_THREADS}",
        f"--connections={connections}",
        f"--duration={max(1, round(duration))}s",
        "--timeout=5s",
        "--latency",
        url,
    ]
    try:
        out = subprocess.run(
            command, capture_output=True, text=True, timeout=duration + 30, check=False
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"wrk did not finish within {duration + 30:.0f}s") from None
    if out.returncode != 0:
        raise BenchError(f"wrk failed: {(out.stderr or out.stdout).strip()[:200]}")
    return parse_wrk(out.stdout)


# --- servers -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def get(url: str, timeout: float = 2.0) -> tuple[int, Mapping[str, str], bytes]:
    """One GET: status, headers, body (error statuses are returned, not raised)."""
    try:
        # S310: callers only pass http://127.0.0.1 URLs.
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any AUTHORITY_* setting or metrics dir of the caller."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("AUTHORITY_") and k != "PROMETHEUS_MULTIPROC_DIR"
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return {**env, **extra}


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.port}{path}"

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server and its children (uvicorn workers)."""
        return sum(_cpu_seconds(pid) for pid in _process_tree(self.process.pid))

    def log_tail(self, lines: int = 5) -> str:
        with contextlib.suppress(OSError):
            return " | ".join(self.log.read_text(errors="replace").strip().splitlines()[-lines:])
        return ""


def _process_tree(pid: int) -> list[int]:
    pids, i = [pid], 0
    while i < len(pids):
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{pids[i]}/task").iterdir():
                pids += [int(c) for c in (task / "children").read_text().split()]
        i += 1
    return pids


def _cpu_seconds(pid: int) -> float:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)"
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def stop(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def server(
    name: str,
    command: Sequence[str],
    *,
    port: int,
    ready_path: str,
    cwd: Path,
    env: Mapping[str, str],
    timeout: float = 60.0,
) -> Iterator[Server]:
    """Start ``command`` (listening on ``port``), wait until ``ready_path`` answers 200,
    and stop it (terminate, then kill) on the way out."""
    log = cwd / f"{name}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            list(command), cwd=cwd, env=dict(env), stdout=sink, stderr=subprocess.STDOUT
        )
    running = Server(name, port, process, log)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise BenchError(f"{name} exited with {process.returncode}: {running.log_tail()}")
            with contextlib.suppress(OSError):
                if get(running.url(ready_path), timeout=1.0)[0] == 200:
                    break
            if time.monotonic() > deadline:
                raise BenchError(f"{name} not ready after {timeout:.0f}s: {running.log_tail()}")
            time.sleep(0.1)
        yield running
    finally:
        stop(process)


@contextlib.contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=prefix) as path:
        yield Path(path)


def authority(workdir: Path, port: int) -> contextlib.AbstractContextManager[Server]:
    """The real ``authority serve`` on a fresh SQLite database and file key store in
    ``workdir`` (after ``authority setup`` there), AUTHORITY_ENV=test."""
    env = clean_env(AUTHORITY_ENV="test", AUTHORITY_WORKERS=str(WORKERS))
    setup = subprocess.run(
        [sys.executable, "-m", "authority", "setup", "--json"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if setup.returncode != 0:
        raise BenchError(f"authority setup failed: {setup.stderr.strip()[-300:]}")
    return server(
        "authority",
        [sys.executable, "-m", "authority", "serve", "--port", str(port)],
        port=port,
        ready_path="/health/ready",
        cwd=workdir,
        env=env,
    )


def baseline(
    workdir: Path, port: int, factory: str, ready_path: str = "/", **env: str
) -> contextlib.AbstractContextManager[Server]:
    """A ``bench.baseline_apps`` factory served like ours (see ``bench/serve.py``)."""
    return server(
        f"baseline-{factory.rsplit(':', 1)[-1]}",
        [
            sys.executable,
            "-m",
            "bench.serve",
            factory,
            "--port",
            str(port),
            "--workers",
            str(WORKERS),
        ],
        port=port,
        ready_path=ready_path,
        cwd=workdir,
        env=clean_env(**env),
    )


def raise_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so every ``finally`` (process cleanup) runs."""

    def handler(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


# --- measuring -----------------------------------------------------------------------


def compare(
    targets: Mapping[str, tuple[Server, str]], duration: float, warmup: float, rounds: int = 2
) -> dict[str, Any]:
    """Warm every ``(server, path)`` up, then run wrk on each in turn for ``rounds``
    rounds (the order reversed every other round, so drift hits all alike) and keep each
    one's best run (highest requests/s). Returns ``{name: best run + "runs": [...]}``.

    Each run also records the server's CPU time per request (``cpu_us_per_request``),
    which other load on the machine disturbs much less than requests/s."""
    for srv, path in targets.values():
        wrk(srv.url(path), warmup)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in targets}
    names = list(targets)
    for i in range(rounds):
        for name in names if i % 2 == 0 else reversed(names):
            srv, path = targets[name]
            cpu = srv.cpu_seconds()
            result = wrk(srv.url(path), duration)
            cpu = srv.cpu_seconds() - cpu
            if result.errors:
                raise BenchError(f"{name}: {result.errors} errors under load on {path}")
            cpu_us = round(1e6 * cpu / max(1, result.requests), 1)
            runs[name].append({**result.as_dict(), "cpu_us_per_request": cpu_us})
    return {
        name: {**max(measured, key=lambda r: r["requests_per_s"]), "runs": measured}
        for name, measured in runs.items()
    }
