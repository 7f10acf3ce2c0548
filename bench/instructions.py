"""Instructions per request, counted under callgrind: ours against the bare RS256
endpoint, for ``refresh_token`` (SQLite) and ``client_credentials``, one worker each.

Requests/s and CPU time on a shared machine move with other machines' load (runs of
one server differing by 2x were seen); instructions executed do not. Each server runs
under ``valgrind --tool=callgrind`` (about 50 times slower, so start-up takes minutes);
after a warm-up its counters are zeroed, ``REQUESTS`` requests are sent one after the
other on one connection, and the counters are dumped: the instructions of every thread
of the process. What the process does on its own meanwhile (ours polls the status
list, leases indexes, watches the key store) is measured as well, over a quiet spell,
and subtracted at its rate per second. Instructions are not time (signing runs more
instructions per cycle than the interpreter does): beside them, KCachegrind's cycle
estimate from the simulated caches and branch predictor (``estimated_cycles``). Both
change only when the code does: this is the benchmark to see our own cost per
request move, for the record; the goals stay judged on time (``bench/workers.py``).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from bench.harness import HOST, BenchError, Server, clean_env, free_port, server, workdir
from bench.oauth_setup import basic_auth, deployment

TITLE = "Instructions per request (callgrind): ours vs the bare RS256 endpoint, 1 worker"
READY_S = 900.0  # start-up under callgrind: minutes, not seconds


def _callgrind(out: Path) -> list[str]:
    valgrind = shutil.which("valgrind")
    if valgrind is None or shutil.which("callgrind_control") is None:
        raise BenchError("valgrind (callgrind) is not installed: apt-get install valgrind")
    return [
        valgrind,
        "--tool=callgrind",
        "--cache-sim=yes",
        "--branch-sim=yes",
        f"--callgrind-out-file={out}/callgrind.%p",
    ]


def estimated_cycles(events: dict[str, int]) -> int:
    """KCachegrind's cycle estimate, CEst = Ir + 10 Bm + 10 L1m + 100 LLm: the
    interpreter's cost is more in its misses and mispredicted branches than in its
    instructions, a signature's the other way round."""
    l1 = sum(events.get(name, 0) for name in ("I1mr", "D1mr", "D1mw"))
    ll = sum(events.get(name, 0) for name in ("ILmr", "DLmr", "DLmw"))
    mispredicted = events.get("Bcm", 0) + events.get("Bim", 0)
    return events["Ir"] + 10 * mispredicted + 10 * l1 + 100 * ll


def _control(option: str, srv: Server) -> None:
    done = subprocess.run(
        ["callgrind_control", option, str(srv.process.pid)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0 or "OK" not in done.stdout:
        raise BenchError(f"callgrind_control {option}: {done.stdout.strip()} {done.stderr}")


def _counted(srv: Server, out: Path, work: Callable[[], None]) -> tuple[dict[str, int], float]:
    """The events of ``srv`` (``Ir``: instructions, misses, mispredicted branches) while
    ``work()`` runs, and the seconds it took."""
    _control("-z", srv)
    started = time.monotonic()
    work()
    seconds = time.monotonic() - started
    before = set(out.glob(f"callgrind.{srv.process.pid}.*"))
    _control("-d", srv)
    deadline = time.monotonic() + 120
    while not (dumps := set(out.glob(f"callgrind.{srv.process.pid}.*")) - before):
        if time.monotonic() > deadline:
            raise BenchError(f"{srv.name}: callgrind wrote no dump")
        time.sleep(0.2)
    (dump,) = dumps
    for _ in range(600):  # written in one go, the summary line near its end
        names: list[str] = []
        for line in dump.read_text(errors="replace").splitlines():
            if line.startswith("events:"):
                names = line.split()[1:]
            if line.startswith("summary:") and names:
                counts = [int(value) for value in line.split()[1:]]
                return dict(zip(names, counts, strict=False)), seconds
        time.sleep(0.2)
    raise BenchError(f"{srv.name}: no summary in {dump.name}")


class Client:
    """One keep-alive connection, requests one after the other."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection(HOST, port, timeout=300)

    def post(self, path: str, form: dict[str, str], **headers: str) -> dict[str, Any]:
        body = urlencode(form)
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            self.conn.request("POST", path, body=body, headers=headers)
            response = self.conn.getresponse()
        except (ConnectionError, http.client.RemoteDisconnected):
            # The server closed the idle connection (its keep-alive timeout): again.
            self.conn.close()
            self.conn = http.client.HTTPConnection(HOST, self.port, timeout=300)
            self.conn.request("POST", path, body=body, headers=headers)
            response = self.conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise BenchError(f"POST {path} answered {response.status}: {data[:200]!r}")
        return dict(json.loads(data))


def _measure(
    srv: Server, out: Path, requests: int, idle_s: float, warmup: int, kinds: dict[str, Any]
) -> dict[str, Any]:
    """Instructions and estimated cycles per request of each kind (``{name:
    one_request}``), what the process did on its own meanwhile removed."""
    idle, idle_seconds = _counted(srv, out, lambda: time.sleep(idle_s))
    idle_rates = {
        "instructions": idle["Ir"] / idle_seconds,
        "cycles": estimated_cycles(idle) / idle_seconds,
    }
    result: dict[str, Any] = {
        "idle_instructions_per_s": round(idle_rates["instructions"]),
        "idle_cycles_per_s": round(idle_rates["cycles"]),
    }
    for name, one in kinds.items():
        for _ in range(warmup):
            one()
        events, seconds = _counted(srv, out, lambda one=one: [one() for _ in range(requests)])
        totals = {"instructions": events["Ir"], "cycles": estimated_cycles(events)}
        result[name] = {
            "requests": requests,
            "seconds": round(seconds, 1),
            "events": events,
            **{
                f"{what}_per_request": round((total - idle_rates[what] * seconds) / requests)
                for what, total in totals.items()
            },
        }
    return result


def run(quick: bool) -> dict[str, Any]:
    requests, idle_s, warmup = (40, 5.0, 10) if quick else (200, 15.0, 30)
    with workdir("bench-instructions-") as tmp, contextlib.ExitStack() as stack:
        out = tmp / "callgrind"
        out.mkdir()
        prefix = _callgrind(out)
        (tmp / "ours").mkdir()
        dep = deployment(tmp / "ours")
        username, password, public_id = dep.user_and_public_client()
        cc_id, cc_secret = dep.confidential_client()
        port = free_port()
        ours = stack.enter_context(
            server(
                "authority-callgrind",
                [*prefix, sys.executable, "-m", "authority", "serve", "--port", str(port)],
                port=port,
                ready_path="/health/ready",
                cwd=dep.workdir,
                env={**dep.env, "AUTHORITY_WORKERS": "1"},
                timeout=READY_S,
            )
        )
        base_port = free_port()
        base = stack.enter_context(
            server(
                "baseline-callgrind",
                [
                    *prefix,
                    sys.executable,
                    "-m",
                    "bench.serve",
                    "bench.baseline_apps:rs256_token",
                    "--port",
                    str(base_port),
                    "--workers",
                    "1",
                ],
                port=base_port,
                ready_path="/health",
                cwd=tmp,
                env=clean_env(
                    BENCH_ALG="RS256",
                    BENCH_ISSUER=f"http://{HOST}:{port}",
                    BENCH_CLIENT_ID=public_id,
                ),
                timeout=READY_S,
            )
        )
        login = (public_id, username, password, (cc_id, cc_secret))
        results = {
            "ours": _measure(ours, out, requests, idle_s, warmup, _kinds(ours, *login)),
            "baseline": _measure(base, out, requests, idle_s, warmup, _kinds(base, *login)),
        }
    ratios = {
        f"{kind}:{what}": round(
            results["ours"][kind][f"{what}_per_request"]
            / results["baseline"][kind][f"{what}_per_request"],
            3,
        )
        for kind in ("refresh_token", "client_credentials")
        for what in ("instructions", "cycles")
    }
    return {
        "title": TITLE,
        "kind": "instructions",
        "results": results,
        "ratios": ratios,
        "method": (
            f"valgrind --tool=callgrind, 1 uvicorn worker each; {requests} requests one "
            f"after the other on one connection after {warmup} of warm-up; the process's "
            f"instructions on its own over {idle_s:.0f} s of quiet subtracted"
        ),
    }


def _kinds(
    srv: Server, client_id: str, username: str, password: str, cc: tuple[str, str]
) -> dict[str, Callable[[], None]]:
    client = Client(srv.port)
    login = {
        "grant_type": "password",
        "username": username,
        "password": password,
        "client_id": client_id,
    }
    chain = [client.post("/oauth/token", login)["refresh_token"]]

    def refresh() -> None:
        form = {"grant_type": "refresh_token", "refresh_token": chain[0], "client_id": client_id}
        chain[0] = client.post("/oauth/token", form)["refresh_token"]

    def client_credentials() -> None:
        client.post(
            "/oauth/token",
            {"grant_type": "client_credentials"},
            Authorization=basic_auth(*cc),
        )

    return {"refresh_token": refresh, "client_credentials": client_credentials}
