"""What every benchmark needs: server processes on 127.0.0.1, wrk, and the machine.

Load only ever goes to 127.0.0.1, each wrk run is bounded by its duration (plus a
timeout), and every process started here is terminated (then killed) on the way out.
"""

from __future__ import annotations

import contextlib
import json
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


def wrk(
    url: str,
    duration: float,
    connections: int = WRK_CONNECTIONS,
    script: Path | None = None,
) -> WrkResult:
    """One wrk run against ``url`` (which must be on 127.0.0.1), with an optional Lua
    ``script`` (method, body, headers: see ``wrk_post_script``)."""
    if not url.startswith(f"http://{HOST}:"):
        raise BenchError(f"refusing to load anything but {HOST}: {url}")
    command = [
        wrk_binary(),
        f"--threads={WRK_THREADS}",
        f"--connections={connections}",
        f"--duration={max(1, round(duration))}s",
        "--timeout=5s",
        "--latency",
        *([f"--script={script}"] if script is not None else []),
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


def _lua_string(value: str) -> str:
    safe = " =&:/+_.-"
    return '"' + "".join(c if c.isalnum() or c in safe else f"\\{ord(c):03d}" for c in value) + '"'


def wrk_post_script(directory: Path, name: str, body: str, headers: Mapping[str, str]) -> Path:
    """A wrk Lua script (written to ``directory/name``) that POSTs ``body`` with
    ``headers`` on every request."""
    lines = ['wrk.method = "POST"', f"wrk.body = {_lua_string(body)}"]
    lines += [f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in headers.items()]
    path = directory / name
    path.write_text("\n".join(lines) + "\n")
    return path


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

    def rss_bytes(self) -> int:
        """Resident memory of the server and its children (``VmRSS``, /proc/PID/status)."""
        return sum(_rss_bytes(pid) for pid in _process_tree(self.process.pid))

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


def _rss_bytes(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
    return int(found[1]) * 1024 if found else 0


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


def authority(
    workdir: Path, port: int, *, name: str = "authority", setup: bool = True, **env: str
) -> contextlib.AbstractContextManager[Server]:
    """The real ``authority serve`` on a fresh SQLite database and file key store in
    ``workdir`` (after ``authority setup`` there unless ``setup`` is false),
    AUTHORITY_ENV=test, plus any ``AUTHORITY_*`` settings in ``env``."""
    environment = authority_env(**env)
    if setup:
        authority_cli(workdir, environment, "setup")
    return server(
        name,
        [sys.executable, "-m", "authority", "serve", "--port", str(port)],
        port=port,
        ready_path="/health/ready",
        cwd=workdir,
        env=environment,
    )


def authority_env(**env: str) -> dict[str, str]:
    """The environment of every ``authority`` process of a benchmark."""
    return clean_env(**{"AUTHORITY_ENV": "test", "AUTHORITY_WORKERS": str(WORKERS), **env})


def authority_cli(
    workdir: Path,
    env: Mapping[str, str],
    *args: str,
    stdin: str | None = None,
    timeout: float = 120,
) -> Any:
    """Run ``authority ARGS --json`` in ``workdir``; returns the parsed JSON output."""
    try:
        out = subprocess.run(
            [sys.executable, "-m", "authority", *args, "--json"],
            cwd=workdir,
            env=dict(env),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"authority {' '.join(args)} took over {timeout:.0f}s") from None
    if out.returncode != 0:
        raise BenchError(f"authority {' '.join(args)} failed: {out.stderr.strip()[-300:]}")
    return json.loads(out.stdout)


def baseline(
    workdir: Path,
    port: int,
    factory: str,
    ready_path: str = "/",
    workers: int | None = None,
    **env: str,
) -> contextlib.AbstractContextManager[Server]:
    """A ``bench.baseline_apps`` factory served like ours (see ``bench/serve.py``),
    with ``workers`` (default ``BENCH_WORKERS``)."""
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
            str(workers or WORKERS),
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


def _machine_busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (all CPUs, from /proc/stat)."""
    with open("/proc/stat") as stat:
        fields = [int(n) for n in stat.readline().split()[1:]]
    busy = sum(fields[:8]) - fields[3] - fields[4]  # minus idle and iowait
    return busy / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    """CPU time of this process (the load generator) and its finished children (wrk)."""
    own = os.times()
    return own.user + own.system + own.children_user + own.children_system


class CpuMeter:
    """CPU used during a measurement: by the server, by the load (this process and
    wrk) and by everything else on the machine (``others_cpus``: other engineers'
    test runs, which slow the server down and make requests/s noisy)."""

    def __init__(self, srv: Server):
        self.srv = srv
        self.start()

    def start(self) -> None:
        self.t0 = time.monotonic()
        self.server0 = self.srv.cpu_seconds()
        self.own0 = _own_cpu_seconds()
        self.machine0 = _machine_busy_seconds()

    def stop(self, requests: int) -> dict[str, float]:
        wall = max(1e-9, time.monotonic() - self.t0)
        server = self.srv.cpu_seconds() - self.server0
        load = _own_cpu_seconds() - self.own0
        machine = _machine_busy_seconds() - self.machine0
        others = max(0.0, machine - server - load) / wall
        return {
            "cpu_us_per_request": round(1e6 * server / max(1, requests), 1),
            "server_cpus": round(server / wall, 2),
            "load_cpu_us_per_request": round(1e6 * load / max(1, requests), 1),
            "others_cpus": round(others, 2),
        }


# Above this many CPUs used by others during a run, requests/s is too noisy to compare
# and the verdict uses server CPU per request instead.
NOISY_OTHERS_CPUS = 0.25


def best_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the highest requests/s, with the lowest CPU per request of all runs
    (the least disturbed estimate), and every run under ``runs``."""
    best = max(runs, key=lambda r: r["requests_per_s"])
    return {
        **best,
        "cpu_us_per_request": min(r["cpu_us_per_request"] for r in runs),
        "others_cpus": max(r.get("others_cpus", 0.0) for r in runs),
        "runs": runs,
    }


def verdict(
    ours: Mapping[str, Any], base: Mapping[str, Any], target: float, higher_is_better: bool = True
) -> dict[str, Any]:
    """The ratio ours/baseline by requests/s and by CPU per request (baseline CPU / ours:
    the requests/s ratio a CPU-bound server would show), and whether ``target`` is met,
    judged on requests/s unless other load made it noisy.

    With ``higher_is_better`` false the ratio is a cost (baseline rps / ours, ours CPU /
    baseline) that must stay at or below ``target``."""
    rps = ours["requests_per_s"] / base["requests_per_s"]
    cpu = base["cpu_us_per_request"] / ours["cpu_us_per_request"]
    if not higher_is_better:
        rps, cpu = 1 / rps, 1 / cpu
    noisy = max(ours.get("others_cpus", 0.0), base.get("others_cpus", 0.0)) > NOISY_OTHERS_CPUS
    basis = "cpu_us_per_request" if noisy else "requests_per_s"
    value = cpu if noisy else rps
    met = value >= target if higher_is_better else value <= target
    return {
        "ratio": rps,
        "cpu_ratio": cpu,
        "basis": basis,
        "ratio_used": value,
        "target": target,
        "target_op": ">=" if higher_is_better else "<=",
        "meets_target": met,
    }


def compare(
    targets: Mapping[str, tuple[Server, str] | tuple[Server, str, Path]],
    duration: float,
    warmup: float,
    rounds: int = 2,
) -> dict[str, Any]:
    """Warm every ``(server, path[, wrk script])`` up, then run wrk on each in turn for
    ``rounds`` rounds (the order reversed every other round, so drift hits all alike)
    and keep each one's best run (see ``best_of``). Returns ``{name: best run + "runs":
    [...]}``.

    Each run also records the server's CPU time per request (``cpu_us_per_request``),
    which other load on the machine disturbs much less than requests/s, and the CPUs
    used by others meanwhile (``others_cpus``)."""

    def target(name: str) -> tuple[Server, str, Path | None]:
        entry = targets[name]
        return entry[0], entry[1], entry[2] if len(entry) > 2 else None  # type: ignore[misc]

    for name in targets:
        srv, path, script = target(name)
        wrk(srv.url(path), warmup, script=script)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in targets}
    names = list(targets)
    for i in range(rounds):
        for name in names if i % 2 == 0 else reversed(names):
            srv, path, script = target(name)
            meter = CpuMeter(srv)
            result = wrk(srv.url(path), duration, script=script)
            cpu = meter.stop(result.requests)
            if result.errors:
                raise BenchError(f"{name}: {result.errors} errors under load on {path}")
            runs[name].append({**result.as_dict(), **cpu})
    return {name: best_of(measured) for name, measured in runs.items()}
