"""Throughput against worker processes: the token endpoint with 1 and 2 uvicorn workers,
``refresh_token`` on SQLite and on PostgreSQL and ``client_credentials``, each against
the bare RS256 endpoint (``bench.baseline_apps:rs256_token``) under the same worker
count, side by side in one run. Each goal is judged on the median over the rounds of
the ratio within a round (``paired_ratios``).

For each worker count, three servers run at once with the same options: ours on SQLite,
ours on PostgreSQL (a throwaway local cluster with PostgreSQL's default durability,
``fsync`` on: ``bench/postgres.py``; the row is skipped, with one line saying why, when
none can be started) and the baseline. Each is measured in turn, the order reversed
every other round, and each keeps its best run (``harness.best_of``):

- refresh: ``bench/loadgen.py`` chains (each answer's refresh token presented by the
  next request), 32 connections, closed loop; and again at 64 connections for p99;
- client_credentials: wrk, 32 connections, HTTP Basic (SQLite; it reads no table on
  the hot path).

Server CPU per request counts the server's process tree (all workers); on PostgreSQL
the database server's own CPU per request is recorded beside it. The goals (issue 14)
are judged on requests/s ratios, p99 ratios and CPU ratios of the same run.
"""

from __future__ import annotations

import contextlib
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.harness import (
    BenchError,
    CpuMeter,
    Server,
    best_of,
    free_port,
    workdir,
    wrk,
    wrk_post_script,
)
from bench.loadgen import RefreshChains
from bench.oauth_setup import Deployment, basic_auth, deployment, rs256_baseline
from bench.postgres import Postgres, postgres

TITLE = (
    "Token endpoint against worker processes: refresh on SQLite and PostgreSQL, client_credentials"
)
WORKER_COUNTS = (1, 2)
CHAINS = 32
WIDE = 64
LOGIN_BATCH = 8  # password grants at once: argon2id on 2 busy cores
PATH = "/oauth/token"
# (name, what is measured, how it is judged, target)
GOALS: list[tuple[str, str, str, float]] = [
    ("refresh_token on SQLite, 1 worker", "refresh:sqlite:1", ">=", 0.85),
    ("refresh_token on SQLite, 2 workers", "refresh:sqlite:2", ">=", 0.75),
    ("refresh_token on PostgreSQL, 2 workers", "refresh:postgresql:2", ">=", 0.6),
    ("client_credentials, 1 worker", "cc:sqlite:1", ">=", 0.95),
    ("client_credentials, 2 workers", "cc:sqlite:2", ">=", 0.95),
    ("server CPU per refresh / per bare signature (SQLite, 1 worker)", "cpu:sqlite:1", "<=", 1.3),
    ("refresh p99 at 64 connections (SQLite, 1 worker)", "p99:sqlite:1", "<=", 1.5),
    ("refresh p99 at 64 connections (SQLite, 2 workers)", "p99:sqlite:2", "<=", 1.5),
    ("refresh p99 at 64 connections (PostgreSQL, 2 workers)", "p99:postgresql:2", "<=", 1.5),
]


def _logged_in(srv: Server, client_id: str, username: str, password: str) -> RefreshChains:
    """``WIDE`` chains, logged in ``LOGIN_BATCH`` at a time."""
    tokens: list[str] = []
    while len(tokens) < WIDE:
        batch = RefreshChains(srv, client_id, username, password, LOGIN_BATCH)
        batch.run(0.5)
        tokens += batch.tokens
    return RefreshChains(srv, client_id, username, password, WIDE, tokens=tokens)


def _chains(pool: RefreshChains, connections: int, duration: float) -> dict[str, Any]:
    """A closed-loop run of the first ``connections`` chains of ``pool``."""
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
    if result["errors"] > result["requests"] / 10:
        raise BenchError(f"{pool.srv.name}: errors under load: {result['error_kinds']}")
    return result  # a few 503s of an overloaded machine are kept in "errors", not hidden


def _wrk(srv: Server, script: Path, duration: float) -> dict[str, Any]:
    meter = CpuMeter(srv)
    result = wrk(srv.url(PATH), duration, script=script)
    if result.errors:
        raise BenchError(f"{srv.name}: {result.errors} errors under load on {PATH}")
    return {**result.as_dict(), **meter.stop(result.requests)}


def _with_db_cpu(pg: Postgres | None, measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``measure()`` plus the database server's CPU per request (PostgreSQL only)."""
    if pg is None:
        return measure()
    before = pg.cpu_seconds()
    result = measure()
    used = pg.cpu_seconds() - before
    return {**result, "db_cpu_us_per_request": round(1e6 * used / max(1, result["requests"]), 1)}


def _measure_workers(
    workers: int,
    deps: dict[str, Deployment],
    pg: Postgres | None,
    tmp: Path,
    logins: dict[str, tuple[str, str, str]],
    cc: tuple[str, str],
    duration: float,
    warmup: float,
    rounds: int,
) -> dict[str, dict[str, Any]]:
    """Every measurement at ``workers`` workers: ``{"refresh:sqlite": best run, ...}``."""
    cc_form = {
        "Content-Type": "application/x-www-form-urlencoded",
        "Authorization": basic_auth(*cc),
    }
    script = wrk_post_script(tmp, "cc.lua", "grant_type=client_credentials", cc_form)
    with contextlib.ExitStack() as stack:
        servers: dict[str, Server] = {}
        for backend, dep in deps.items():
            servers[backend] = stack.enter_context(
                dep.serve(
                    free_port(),
                    name=f"authority-{backend}-{workers}w",
                    AUTHORITY_WORKERS=str(workers),
                )
            )
        port = servers["sqlite"].port
        servers["baseline"] = stack.enter_context(rs256_baseline(tmp, port, cc[0], workers=workers))
        pools = {name: _logged_in(srv, *logins[name]) for name, srv in servers.items()}
        db = {name: pg if name == "postgresql" else None for name in servers}
        plan: list[tuple[str, Callable[[], dict[str, Any]]]] = []
        # Each of ours next to the baseline, so that a pair of a round is measured
        # seconds apart: sqlite, baseline, postgresql.
        order = [name for name in ("sqlite", "baseline", "postgresql") if name in servers]
        for name in order:
            plan.append(
                (
                    f"refresh:{name}",
                    lambda n=name: _with_db_cpu(db[n], lambda: _chains(pools[n], CHAINS, duration)),
                )
            )
        for name in ("sqlite", "baseline"):
            plan.append((f"cc:{name}", lambda n=name: _wrk(servers[n], script, duration)))
        for name in order:
            plan.append(
                (
                    f"wide:{name}",
                    lambda n=name: _with_db_cpu(db[n], lambda: _chains(pools[n], WIDE, duration)),
                )
            )
        for name in servers:  # warm-up: every worker, both kinds of request
            _chains(pools[name], WIDE, warmup)
        for name in ("sqlite", "baseline"):
            wrk(servers[name].url(PATH), warmup, script=script)
        runs: dict[str, list[dict[str, Any]]] = {key: [] for key, _ in plan}
        for i in range(rounds):
            for key, measure in plan if i % 2 == 0 else list(reversed(plan)):
                runs[key].append(measure())
    return {key: best_of(measured) for key, measured in runs.items()}


def goals(points: dict[str, dict[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """The issue's goals, each with the two figures compared and the verdict."""
    judged = []
    for label, what, op, target in GOALS:
        kind, backend, workers = what.split(":")
        at = points.get(workers, {})
        if kind in ("refresh", "cc"):
            ours, base, key = (
                at.get(f"{kind}:{backend}"),
                at.get(f"{kind}:baseline"),
                "requests_per_s",
            )
        elif kind == "cpu":
            ours, base, key = (
                at.get(f"refresh:{backend}"),
                at.get("refresh:baseline"),
                "cpu_us_per_request",
            )
        else:
            ours, base, key = at.get(f"wide:{backend}"), at.get("wide:baseline"), "p99_ms"
        if ours is None or base is None:
            judged.append({"goal": label, "op": op, "target": target, "skipped": True})
            continue
        paired = paired_ratios(ours, base, key)
        value = statistics.median(paired)
        met = value >= target if op == ">=" else value <= target
        judged.append(
            {
                "goal": label,
                "key": key,
                "ours": ours[key],
                "baseline": base[key],
                "ratio": round(value, 3),
                "rounds": [round(r, 3) for r in paired],
                "best_ratio": round(ours[key] / base[key], 3),
                "op": op,
                "target": target,
                "met": met,
            }
        )
    return judged


def paired_ratios(ours: dict[str, Any], base: dict[str, Any], key: str) -> list[float]:
    """ours / baseline of each round: the two runs of a round were measured minutes
    apart at most, so a slow spell of a shared machine weighs on both alike. Goals are
    judged on the median of these (the best runs' ratio is reported beside it)."""
    pairs = zip(ours.get("runs") or [ours], base.get("runs") or [base], strict=False)
    return [a[key] / b[key] for a, b in pairs]


def run(quick: bool) -> dict[str, Any]:
    # Many short rounds rather than a few long ones: other machines' load comes and
    # goes within seconds, and the median of many pairs measured seconds apart is
    # what it disturbs least.
    duration, warmup = (2, 1) if quick else (3, 2)
    rounds = 3 if quick else 12
    with workdir("bench-workers-") as tmp, contextlib.ExitStack() as stack:
        (tmp / "sqlite").mkdir()
        deps = {"sqlite": deployment(tmp / "sqlite")}
        username, password, public_id = deps["sqlite"].user_and_public_client()
        cc_id, cc_secret = deps["sqlite"].confidential_client()
        # the baseline checks nothing: the SQLite deployment's names do
        logins = {name: (public_id, username, password) for name in ("sqlite", "baseline")}
        pg: Postgres | None = None
        pg_version, skipped = None, None
        try:
            pg = stack.enter_context(postgres())
        except BenchError as exc:
            skipped = str(exc)
            print(f"bench: workers: PostgreSQL rows skipped: {skipped}", file=sys.stderr)
        if pg is not None:
            pg_version = pg.psql("SHOW server_version").strip()
            (tmp / "postgresql").mkdir()
            deps["postgresql"] = deployment(
                tmp / "postgresql", AUTHORITY_DATABASE_URL=pg.database("authority_bench")
            )
            user, secret, client = deps["postgresql"].user_and_public_client()
            logins["postgresql"] = (client, user, secret)
        points = {
            str(w): _measure_workers(
                w, deps, pg, tmp, logins, (cc_id, cc_secret), duration, warmup, rounds
            )
            for w in WORKER_COUNTS
        }
    return {
        "title": TITLE,
        "kind": "workers",
        "workers": list(WORKER_COUNTS),
        "points": points,
        "goals": goals(points),
        "postgres": {
            "version": pg_version,
            "skipped": skipped,
            "durability": "fsync, synchronous_commit, full_page_writes on",
        },
        "method": (
            f"refresh: Python load generator (bench/loadgen.py), {CHAINS} chains, and "
            f"{WIDE} for p99; client_credentials: wrk 1 thread, 32 connections; all "
            "servers of one worker count running, measured in turn"
        ),
        "setup": {"duration_s": duration, "warmup_s": warmup, "rounds": rounds},
    }
