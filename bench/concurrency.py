"""Throughput and p99 latency of the token endpoint against concurrency: the
client_credentials benchmark (wrk) and the refresh benchmark (``bench/loadgen.py``
chains) at 1, 8, 32 and 64 connections, ours and the bare RS256 endpoint
(``bench.baseline_apps:rs256_token``) side by side, one short run each, in turn (the
order swapped at every level so that drift hits both alike).

The refresh chains log in once (64 password grants, 32 at a time: argon2id makes a
burst of logins slow enough to time out on 2 cores) and each level uses the first N of
them, so the sweep does not pay for logins at every level.

No target: the curves are for the record (the other benchmarks judge 32 connections).
"""

from __future__ import annotations

from typing import Any

from bench.harness import CpuMeter, Server, free_port, workdir, wrk, wrk_post_script
from bench.loadgen import RefreshChains
from bench.oauth_setup import basic_auth, deployment, rs256_baseline

TITLE = "Token endpoint against concurrency: throughput and p99, ours vs the bare RS256 endpoint"
LEVELS = (1, 8, 32, 64)
PATH = "/oauth/token"
SERIES = ("client_credentials", "refresh")
LOGIN_BATCH = 32


def _wrk_point(srv: Server, script: Any, connections: int, duration: float) -> dict[str, Any]:
    meter = CpuMeter(srv)
    result = wrk(srv.url(PATH), duration, connections=connections, script=script)
    return {**result.as_dict(), **meter.stop(result.requests)}


def _logged_in(srv: Server, client_id: str, username: str, password: str) -> RefreshChains:
    """``max(LEVELS)`` chains, logged in ``LOGIN_BATCH`` at a time (and warmed up)."""
    tokens: list[str] = []
    while len(tokens) < max(LEVELS):
        batch = RefreshChains(srv, client_id, username, password, LOGIN_BATCH)
        batch.run(1)
        tokens += batch.tokens
    return RefreshChains(srv, client_id, username, password, max(LEVELS), tokens=tokens)


def _chains_point(pool: RefreshChains, connections: int, duration: float) -> dict[str, Any]:
    part = RefreshChains(
        pool.srv,
        pool.client_id,
        pool.username,
        pool.password,
        connections,
        tokens=pool.tokens[:connections],
    )
    result = part.run(duration)
    pool.tokens[:connections] = part.tokens
    return result


def run(quick: bool) -> dict[str, Any]:
    duration, warmup = (2, 1) if quick else (4, 2)
    points: dict[str, list[dict[str, Any]]] = {name: [] for name in SERIES}
    with workdir("bench-concurrency-") as tmp:
        dep = deployment(tmp)
        cc_id, cc_secret = dep.confidential_client()
        username, password, public_id = dep.user_and_public_client()
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Authorization": basic_auth(cc_id, cc_secret),
        }
        script = wrk_post_script(tmp, "cc.lua", "grant_type=client_credentials", headers)
        port = free_port()
        with dep.serve(port) as ours, rs256_baseline(tmp, port, cc_id) as base:
            servers = {"ours": ours, "baseline": base}
            pools = {
                name: _logged_in(srv, public_id, username, password)
                for name, srv in servers.items()
            }
            for srv in servers.values():
                wrk(srv.url(PATH), warmup, script=script)
            for i, level in enumerate(LEVELS):
                order = list(servers) if i % 2 == 0 else list(reversed(servers))
                cc = {n: _wrk_point(servers[n], script, level, duration) for n in order}
                refresh = {n: _chains_point(pools[n], level, duration) for n in order}
                for series, measured in (("client_credentials", cc), ("refresh", refresh)):
                    points[series].append({"connections": level, **measured})
    return {
        "title": TITLE,
        "kind": "concurrency",
        "series": points,
        "levels": list(LEVELS),
        "method": (
            "client_credentials: wrk 1 thread, N connections; refresh: Python load generator "
            "(bench/loadgen.py), N refresh chains, closed loop"
        ),
        "setup": {"duration_s": duration, "warmup_s": warmup},
    }
