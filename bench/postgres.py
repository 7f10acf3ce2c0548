"""A throwaway PostgreSQL server for the benchmarks, with default durability.

It is made by the functions of ``tests/pg_cluster.sh`` (a fresh cluster in a temporary
directory, on 127.0.0.1, as an unprivileged user when run as root), which switch
durability off for the tests' sake; here ``fsync``, ``synchronous_commit`` and
``full_page_writes`` are reset to PostgreSQL's defaults (all on) before anything is
measured, and checked. The cluster and its files are removed on the way out.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.harness import ROOT, BenchError, _cpu_seconds, _process_tree, clean_env

SCRIPT = ROOT / "tests" / "pg_cluster.sh"
STATE = ("_PG_CLUSTER_DIR", "_PG_CLUSTER_RUN_BINDIR", "_PG_CLUSTER_RUN_AS", "_PG_CLUSTER_URL")
DURABLE = ("fsync", "synchronous_commit", "full_page_writes")


def _bash(script: str, timeout: float = 90) -> str:
    env = {k: v for k, v in clean_env().items() if not k.startswith(("PG_CLUSTER_", "_PG_"))}
    env.pop("TEST_POSTGRES_URL", None)
    try:
        out = subprocess.run(
            ["bash", "-c", f"source {shlex.quote(str(SCRIPT))}\n{script}"],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"PostgreSQL did not start within {timeout:.0f} s") from None
    if out.returncode != 0:
        last = (out.stderr or out.stdout).strip().splitlines()[-1:] or ["no output"]
        raise BenchError(f"no PostgreSQL could be started: {last[0]}")
    return out.stdout


@dataclass
class Postgres:
    """A running cluster: its SQLAlchemy URL and the state ``pg_cluster.sh`` needs."""

    url: str
    state: dict[str, str]

    def run(self, script: str) -> str:
        restore = "".join(f"{k}={shlex.quote(v)}\n" for k, v in self.state.items())
        return _bash(restore + script)

    def psql(self, *commands: str) -> str:
        libpq = self.url.replace("postgresql+asyncpg://", "postgresql://", 1)
        args = " ".join(f"--command={shlex.quote(c)}" for c in commands)
        return self.run(
            '"$_PG_CLUSTER_RUN_BINDIR/psql" --no-psqlrc --quiet --tuples-only '
            f"--set=ON_ERROR_STOP=1 {shlex.quote(libpq)} {args}"
        )

    def cpu_seconds(self) -> float:
        """User + system CPU of the postmaster and every backend, live or exited."""
        pidfile = Path(self.state["_PG_CLUSTER_DIR"]) / "data" / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return 0.0
        # Backends and autovacuum workers come and go: the postmaster's reaped children
        # (cutime, cstime) keep what the exited ones used.
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            reaped = (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            reaped = 0.0
        return reaped + sum(_cpu_seconds(p) for p in _process_tree(pid))

    def database(self, name: str) -> str:
        """A new database ``name``; its URL."""
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url.rsplit("/", 1)[0] + f"/{name}"


@contextlib.contextmanager
def postgres() -> Iterator[Postgres]:
    """A fresh durable cluster (raises ``BenchError`` with one line when none can be
    started: no PostgreSQL installed, or it fails)."""
    out = _bash(
        "pg_cluster_start >&2 && " + " && ".join(f'printf "%s\\n" "${name}"' for name in STATE)
    )
    values = out.strip().split("\n")[-len(STATE) :]
    cluster = Postgres(values[-1], dict(zip(STATE, values, strict=True)))
    try:
        cluster.psql(*(f"ALTER SYSTEM RESET {name}" for name in DURABLE), "SELECT pg_reload_conf()")
        for _ in range(50):  # the reload reaches new backends a moment later
            shown = cluster.psql(*(f"SHOW {name}" for name in DURABLE)).split()
            if shown == ["on"] * len(DURABLE):
                break
            time.sleep(0.1)
        else:
            raise BenchError(
                f"PostgreSQL durability not restored: {dict(zip(DURABLE, shown, strict=False))}"
            )
        yield cluster
    finally:
        with contextlib.suppress(BenchError):
            cluster.run("pg_cluster_stop")
