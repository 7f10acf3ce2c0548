"""Soak: the real ``authority serve`` under a mixed load for minutes while its keys
rotate, to show that nothing fails, nothing is falsely rejected and memory stays flat.

The load (``bench/loadgen.py``'s connections, closed loop) mixes ``client_credentials``
(HTTP Basic), refresh rotation chains (a public client, one password grant per chain,
then rotation on every use), JWKS fetches, and offline verification of every issued
access token with ``authority.verifier.Verifier`` (discovering the served JWKS through
the metadata, as a resource server would), plus one older token from an archive of the
last ``ACCESS_TTL`` seconds, so that tokens signed by retired keys are checked too.

Meanwhile ``authority keys rotate`` and ``authority keys rotate --now`` alternate every
``ROTATE_EVERY`` seconds (the real CLI, in the server's work directory). The server runs
with short lifecycle settings (``SETTINGS``) so that rotations really happen during the
run: a plain rotation's key is published ``KEY_PUBLISH_DELAY`` s before it signs (longer
than the JWKS ``max-age`` plus the store poll, so a verifier has it in time), a ``--now``
key signs at once (the verifier must refetch on its unknown ``kid``; ``--now`` comes
less often than the verifier's refetch cooldown), and retired keys are pruned once the
tokens they signed have expired.

Logouts are mixed in (``bench/soak_logouts.py``): a worker logs in, verifies, logs
out, and every token it revoked must be refused by the verifier as ``revoked`` within
the status list's ttl (``AUTHORITY_STATUS_LIST_TTL``, 5 s here) plus one poll.

A *false rejection* is a token the server issued (a 200 answer) that the verifier
rejects while it is unexpired. Memory is the server's resident set (``VmRSS`` of its
process tree) sampled every second; the first third of the run is warm-up, and memory
is judged flat when the median of the last third is at most ``MEMORY_GROWTH_LIMIT``
times the median of the second third.

    python -m bench soak                 # the short mode that `make bench` runs
    python -m bench soak --duration 300  # the full soak
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import contextlib
import json
import random
import statistics
import threading
import time
from array import array
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from authority.verifier import InvalidToken, KeysUnavailable, Verifier
from bench.harness import HOST, BenchError, CpuMeter, Server, free_port, workdir
from bench.loadgen import Connection, error_code, get_request, percentiles, post_form, run_uvloop
from bench.oauth_setup import Deployment, basic_auth, deployment
from bench.soak_logouts import STATUS_LIST_TTL, WORKERS, Logouts

TITLE = "Soak: mixed load while keys rotate (`keys rotate` and `--now` alternately)"
SHORT_S, QUICK_S = 45.0, 30.0
ROTATE_EVERY = 8.0  # seconds between CLI rotations (plain and --now alternately)
ACCESS_TTL = 60
# Short lifecycle so that keys are published, promoted, retired and pruned within the run.
SETTINGS = {
    "AUTHORITY_ACCESS_TTL": str(ACCESS_TTL),
    "AUTHORITY_JWKS_MAX_AGE": "5",
    "AUTHORITY_LEEWAY": "5",
    "AUTHORITY_KEY_PUBLISH_DELAY": "7",
    "AUTHORITY_KEYSTORE_POLL_INTERVAL": "1",
    "AUTHORITY_MAINTENANCE_INTERVAL": "5",
    "AUTHORITY_STATUS_LIST_TTL": str(STATUS_LIST_TTL),
}
CONNECTIONS = {"client_credentials": 4, "refresh": 4, "jwks": 1}
KINDS = ("client_credentials", "refresh", "jwks", "verify", "verify_old")
ARCHIVE_EVERY = 0.25  # seconds between tokens kept for later verification
MEMORY_GROWTH_LIMIT = 1.05
AFTER_ROTATION = 2.0  # seconds after a rotation counted as its window for latency
JWKS_PATH = "/.well-known/jwks.json"


@dataclass
class Recorder:
    """Every request's send time and latency by kind, and everything that went wrong."""

    start: float
    times: dict[str, array[float]] = field(default_factory=lambda: {k: array("d") for k in KINDS})
    latencies: dict[str, array[float]] = field(
        default_factory=lambda: {k: array("d") for k in KINDS}
    )
    statuses: dict[str, Counter[str]] = field(default_factory=lambda: {k: Counter() for k in KINDS})
    rejections: list[dict[str, Any]] = field(default_factory=list)
    issued_kids: Counter[str] = field(default_factory=Counter)
    first_issued: dict[str, float] = field(default_factory=dict)  # kid -> s into the run
    published_kids: dict[str, float] = field(default_factory=dict)

    def add(self, kind: str, sent: float, status: int | str) -> None:
        self.times[kind].append(sent - self.start)
        self.latencies[kind].append(time.monotonic() - sent)
        self.statuses[kind][str(status)] += 1


class Load:
    """The mixed load against one server, until ``deadline``."""

    def __init__(self, srv: Server, dep: Deployment, verifier: Verifier, rec: Recorder):
        self.srv, self.verifier, self.rec = srv, verifier, rec
        client_id, secret = dep.confidential_client()
        self.username, self.password, self.public_id = dep.user_and_public_client()
        port = srv.port
        self.cc_request = post_form(
            port,
            "/oauth/token",
            {"grant_type": "client_credentials"},
            {"Authorization": basic_auth(client_id, secret)},
        )
        self.jwks_request = get_request(port, JWKS_PATH)
        self.archive: deque[tuple[float, str]] = deque()
        self.archived_at = 0.0
        self.deadline = 0.0
        self.logouts = Logouts(self)

    def running(self) -> bool:
        return time.monotonic() < self.deadline

    async def connect(self) -> Connection:
        _, conn = await asyncio.get_running_loop().create_connection(
            Connection, HOST, self.srv.port
        )
        return conn

    async def exchange(self, conn: Connection, raw: bytes) -> tuple[Connection, int | str, bytes]:
        """One request; a transport failure is answered as a status (``transport``) and
        the connection replaced, so that one broken socket does not end the soak."""
        try:
            status, body = await conn.request(raw)
        except (OSError, TimeoutError) as exc:
            conn.close()
            with contextlib.suppress(OSError):
                conn = await self.connect()
            return conn, f"transport {type(exc).__name__}", b""
        return conn, status, body

    def _login(self) -> bytes:
        form = {
            "grant_type": "password",
            "username": self.username,
            "password": self.password,
            "client_id": self.public_id,
        }
        return post_form(self.srv.port, "/oauth/token", form)

    def _refresh(self, token: str) -> bytes:
        form = {"grant_type": "refresh_token", "refresh_token": token, "client_id": self.public_id}
        return post_form(self.srv.port, "/oauth/token", form)

    async def client_credentials(self) -> None:
        conn = await self.connect()
        while self.running():
            sent = time.monotonic()
            conn, status, body = await self.exchange(conn, self.cc_request)
            self.rec.add("client_credentials", sent, _status(status, body))
            if status == 200:
                await self.check(json.loads(body)["access_token"])
        conn.close()

    async def refresh(self) -> None:
        conn = await self.connect()
        token = None
        while self.running():
            if token is None:  # a new chain: its login is not measured
                conn, status, body = await self.exchange(conn, self._login())
                if status != 200:
                    raise BenchError(f"password grant answered {status}: {body[:200]!r}")
                token = json.loads(body)["refresh_token"]
                continue
            sent = time.monotonic()
            conn, status, body = await self.exchange(conn, self._refresh(token))
            self.rec.add("refresh", sent, _status(status, body))
            if status != 200:
                token = None  # the chain is broken: count it and start another
                continue
            answer = json.loads(body)
            token = answer["refresh_token"]
            await self.check(answer["access_token"])
        conn.close()

    async def jwks(self) -> None:
        conn = await self.connect()
        while self.running():
            sent = time.monotonic()
            conn, status, body = await self.exchange(conn, self.jwks_request)
            self.rec.add("jwks", sent, _status(status, body))
            if status == 200:
                for key in json.loads(body)["keys"]:
                    self.rec.published_kids.setdefault(key["kid"], sent - self.rec.start)
        conn.close()

    async def check(self, token: str) -> None:
        """Verify a fresh token, and one from the archive (its key may be retired)."""
        kid = _kid(token)
        self.rec.issued_kids[kid] += 1
        self.rec.first_issued.setdefault(kid, time.monotonic() - self.rec.start)
        await self.verify("verify", token)
        now = time.monotonic()
        if now - self.archived_at >= ARCHIVE_EVERY:
            self.archived_at = now
            self.archive.append((_exp(token), token))
        while self.archive and self.archive[0][0] < time.time() + 1:
            self.archive.popleft()  # expired or about to: only unexpired tokens count
        if self.archive:
            await self.verify("verify_old", random.choice(self.archive)[1])

    async def verify(self, kind: str, token: str) -> None:
        sent = time.monotonic()
        try:
            await self.verifier.averify(token)
        except (InvalidToken, KeysUnavailable) as exc:
            self.rec.add(kind, sent, "rejected")
            if _exp(token) > time.time():
                self.rec.rejections.append(
                    {
                        "t": round(sent - self.rec.start, 2),
                        "kind": kind,
                        "kid": _kid(token),
                        "reason": getattr(exc, "reason", type(exc).__name__),
                        "kid_published": _kid(token) in self.rec.published_kids,
                    }
                )
            return
        self.rec.add(kind, sent, 200)

    async def run(self, duration: float) -> None:
        self.deadline = time.monotonic() + duration
        workers = [
            *(self.client_credentials() for _ in range(CONNECTIONS["client_credentials"])),
            *(self.refresh() for _ in range(CONNECTIONS["refresh"])),
            *(self.jwks() for _ in range(CONNECTIONS["jwks"])),
            *(self.logouts.run() for _ in range(WORKERS)),
            self.logouts.sweeper(),
        ]
        await asyncio.gather(*workers)


def _status(status: int | str, body: bytes) -> str:
    return str(status) if status in (200, 304) else f"{status} {error_code(body)}"


def _segment(token: str, index: int) -> dict[str, Any]:
    part = token.split(".")[index]
    return dict(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))))


def _kid(token: str) -> str:
    return str(_segment(token, 0)["kid"])


def _exp(token: str) -> float:
    return float(_segment(token, 1)["exp"])


class Background(threading.Thread):
    """Calls ``step(elapsed)`` at ``first`` seconds after ``origin`` (a monotonic time)
    and every ``every`` seconds after that, until stopped: a thread, so that a busy
    event loop does not delay it."""

    def __init__(self, origin: float, first: float, every: float, step: Any):
        super().__init__(daemon=True)
        self.origin, self.first, self.every, self.step = origin, first, every, step
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        at = self.first
        while not self.stopping.wait(max(0.0, self.origin + at - time.monotonic())):
            try:
                self.step(time.monotonic() - self.origin)
            except BaseException as exc:  # raised again by stop(), in the caller
                self.error = exc
                return
            at += self.every

    def stop(self) -> None:
        self.stopping.set()
        self.join(60)
        if self.error is not None:
            raise BenchError(f"soak background step failed: {self.error}") from self.error


# A key step the soak runs on a timer: (the deployment, the rotations so far, seconds in).
KeyStep = Callable[[Deployment, list[dict[str, Any]], float], None]


def rotation_entry(elapsed: float, started: float, done: Any, now: bool) -> dict[str, Any]:
    return {
        "t": round(elapsed, 2),
        "took_s": round(time.monotonic() - started, 2),
        "now": now,
        "outcome": done["outcome"],
        "kid": done["kid"],
    }


def soak(
    prefix: str, duration: float, step: KeyStep, first: float, every: float, **env: str
) -> tuple[dict[str, Any], Recorder, Any]:
    """The mixed load for ``duration`` seconds against a fresh authority (``env`` added
    to ``SETTINGS``), with ``step`` run ``first`` seconds in and then every ``every``:
    the summary (logouts included), the recorder and ``keys list`` afterwards."""
    with workdir(prefix) as tmp:
        dep = deployment(tmp, **SETTINGS, **env)
        with dep.serve(free_port()) as srv:
            verifier = Verifier(srv.url(""), "default", leeway=int(SETTINGS["AUTHORITY_LEEWAY"]))
            verifier.load_keys()
            idle_rss = srv.rss_bytes()
            memory: list[tuple[float, int]] = []
            rotations: list[dict[str, Any]] = []

            def sample(elapsed: float) -> None:
                memory.append((round(elapsed, 2), srv.rss_bytes()))

            rec = Recorder(0.0)
            load = Load(srv, dep, verifier, rec)
            rec.start = time.monotonic()
            sampler = Background(rec.start, 0.0, 1.0, sample)
            stepper = Background(rec.start, first, every, lambda t: step(dep, rotations, t))
            meter = CpuMeter(srv)
            sampler.start()
            stepper.start()
            try:
                run_uvloop(load.run(duration))
                run_uvloop(load.logouts.drain())
            finally:
                stepper.stop()
                sampler.stop()
            elapsed = time.monotonic() - rec.start
            served = sum(len(rec.times[k]) for k in ("client_credentials", "refresh", "jwks"))
            cpu = meter.stop(served)
            keys_after = dep.cli("keys", "list")
    result = summarize(rec, memory, rotations, idle_rss, elapsed, cpu, keys_after)
    result["logouts"] = load.logouts.summary()
    return result, rec, keys_after


def rotate(dep: Deployment, rotations: list[dict[str, Any]], elapsed: float) -> None:
    now = len(rotations) % 2 == 1  # plain first, then --now, alternately
    started = time.monotonic()
    done = dep.cli("keys", "rotate", *(["--now"] if now else []))
    rotations.append(rotation_entry(elapsed, started, done, now))


def run(quick: bool, duration: float | None = None) -> dict[str, Any]:
    duration = duration or (QUICK_S if quick else SHORT_S)
    result, _, _ = soak("bench-soak-", duration, rotate, 2.0, ROTATE_EVERY)
    result["ok"] = result["ok"] and result["logouts"]["ok"]
    return result


def summarize(
    rec: Recorder,
    memory: list[tuple[float, int]],
    rotations: list[dict[str, Any]],
    idle_rss: int,
    elapsed: float,
    cpu: dict[str, float],
    keys_after: Any,
) -> dict[str, Any]:
    third = elapsed / 3
    kinds = {}
    for kind in KINDS:
        statuses = rec.statuses[kind]
        kinds[kind] = {
            "requests": len(rec.times[kind]),
            "requests_per_s": round(len(rec.times[kind]) / elapsed, 1),
            **percentiles(list(rec.latencies[kind])),
            "statuses": dict(statuses),
            "5xx": sum(n for s, n in statuses.items() if s.startswith("5")),
            "failed": sum(n for s, n in statuses.items() if s not in ("200", "304")),
            "drift": _drift(rec, kind, third),
            "rotation_windows": _windows(rec, kind, rotations),
        }
    second = [rss for t, rss in memory if third <= t < 2 * third]
    last = [rss for t, rss in memory if t >= 2 * third]
    if not second or not last:
        raise BenchError("too few memory samples: run the soak for longer")
    growth = statistics.median(last) / statistics.median(second)
    mib = 1024 * 1024
    return {
        "title": TITLE,
        "kind": "soak",
        "setup": {
            "duration_s": round(elapsed, 1),
            "rotate_every_s": ROTATE_EVERY,
            "connections": CONNECTIONS,
            "settings": SETTINGS,
            "memory_growth_limit": MEMORY_GROWTH_LIMIT,
        },
        "kinds": kinds,
        "requests": sum(k["requests"] for name, k in kinds.items() if not name.startswith("v")),
        "verifications": kinds["verify"]["requests"] + kinds["verify_old"]["requests"],
        "5xx": sum(k["5xx"] for k in kinds.values()),
        "failed": sum(k["failed"] for name, k in kinds.items() if not name.startswith("v")),
        "false_rejections": len(rec.rejections),
        "rejections": rec.rejections[:20],
        "rotations": rotations,
        "issued_kids": dict(rec.issued_kids),
        "published_kids": rec.published_kids,
        "keys_after": keys_after,
        "memory": {
            "samples": [(t, round(rss / mib, 2)) for t, rss in memory],
            "idle_mib": round(idle_rss / mib, 1),
            "start_mib": round(memory[0][1] / mib, 1),
            "end_mib": round(memory[-1][1] / mib, 1),
            "max_mib": round(max(rss for _, rss in memory) / mib, 1),
            "second_third_median_mib": round(statistics.median(second) / mib, 1),
            "last_third_median_mib": round(statistics.median(last) / mib, 1),
            "growth": round(growth, 4),
            "flat": growth <= MEMORY_GROWTH_LIMIT,
        },
        "timeline": _timeline(rec, elapsed),
        **cpu,
        "ok": (
            not rec.rejections
            and all(k["5xx"] == 0 for k in kinds.values())
            and growth <= MEMORY_GROWTH_LIMIT
            and len(rec.issued_kids) >= 3
        ),
    }


def _select(rec: Recorder, kind: str, keep: Any) -> list[float]:
    return [lat for t, lat in zip(rec.times[kind], rec.latencies[kind], strict=True) if keep(t)]


def _rate_and_latency(latencies: list[float], seconds: float) -> dict[str, float]:
    p = percentiles(latencies)
    return {
        "requests_per_s": round(len(latencies) / max(1e-9, seconds), 1),
        "p50_ms": p["p50_ms"],
        "p99_ms": p["p99_ms"],
    }


def _drift(rec: Recorder, kind: str, third: float) -> dict[str, dict[str, float]]:
    """Rate and latency of the second third (after warm-up: the baseline) and the last."""
    return {
        "second_third": _rate_and_latency(
            _select(rec, kind, lambda t: third <= t < 2 * third), third
        ),
        "last_third": _rate_and_latency(_select(rec, kind, lambda t: t >= 2 * third), third),
    }


def _windows(rec: Recorder, kind: str, rotations: list[dict[str, Any]]) -> dict[str, Any]:
    """Latency in the ``AFTER_ROTATION`` seconds after each rotation started against the
    rest of the run (the baseline)."""
    starts = [r["t"] for r in rotations]
    ends = [r["t"] + r["took_s"] + AFTER_ROTATION for r in rotations]

    def inside(t: float) -> bool:
        i = bisect.bisect_right(starts, t) - 1
        return i >= 0 and t < ends[i]

    return {
        "after_rotation": percentiles(_select(rec, kind, inside)),
        "otherwise": percentiles(_select(rec, kind, lambda t: not inside(t))),
    }


def _timeline(rec: Recorder, elapsed: float) -> dict[str, list[int]]:
    """Requests per whole second of the run, by kind (the last partial second left out)."""
    seconds = max(1, int(elapsed))
    timeline = {}
    for kind in KINDS:
        counts = [0] * seconds
        for t in rec.times[kind]:
            if t < seconds:
                counts[int(t)] += 1
        timeline[kind] = counts
    return timeline
